"""mapped_zeros: zero-filled arrays in their own private memory maps."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest

from glmflow.core.buffers import mapped_zeros


def _memory_owner(array):
    while isinstance(array, np.ndarray):
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


@pytest.mark.parametrize("shape, dtype", [((25, 1000), np.float64), ((3, 7, 5), np.float32),
                                          ((4,), np.int32)])
def test_mapped_zeros_is_a_zero_array_on_its_own_map(shape, dtype):
    array = mapped_zeros(shape, dtype)
    assert array.shape == shape and array.dtype == dtype and array.flags.writeable
    assert not array.any()
    assert isinstance(_memory_owner(array), mmap.mmap)  # not numpy's allocator (no huge-page advice)
    array[...] = 3
    assert (array == 3).all()


def test_empty_arrays_fall_back_to_numpy():
    array = mapped_zeros((0, 5))
    assert array.shape == (0, 5) and array.dtype == np.float64


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_map_is_private_to_the_process():
    array = mapped_zeros((1000,))
    pid = os.fork()
    if pid == 0:  # the child writes; a shared map would show it in the parent
        array[:] = 1
        os._exit(0)
    os.waitpid(pid, 0)
    assert not array.any()
