"""Large work arrays on plain memory pages.

numpy advises the kernel to back every array of 4 MiB or more with transparent huge pages
(``madvise(MADV_HUGEPAGE)``). Where the kernel compacts memory for such pages at first
touch (``/sys/kernel/mm/transparent_hugepage/defrag`` set to ``madvise``, the kernel's
default), a fresh array may wait for that compaction: on the benchmark machine a new 47 MB
array took 0.16–0.39 s to fill in 2 of 8 processes and 0.005 s in the others, against
0.022–0.029 s every time on 4 KiB pages. The few large arrays a fit allocates once (the
spill buffer, the coefficient matrix) take the steady cost instead.
"""

from __future__ import annotations

import mmap

import numpy as np


def mapped_zeros(shape, dtype=np.float64):
    """A zero-filled array in a private anonymous memory map of its own.

    The pages are ordinary 4 KiB pages, mapped at first touch and returned to the system
    with the array's last reference. Where ``mmap`` has no private anonymous maps (not
    Linux or macOS), or the array is empty, this is ``np.zeros``.
    """
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    flags = getattr(mmap, "MAP_PRIVATE", None)
    if n_bytes == 0 or flags is None or not hasattr(mmap, "MAP_ANONYMOUS"):
        return np.zeros(shape, dtype)
    memory = mmap.mmap(-1, n_bytes, flags=flags | mmap.MAP_ANONYMOUS)
    return np.frombuffer(memory, dtype).reshape(shape)
