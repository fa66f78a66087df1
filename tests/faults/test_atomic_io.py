"""Atomic writes: nothing half-written, nothing silently replaced."""

import errno

import nibabel as nib
import numpy as np
import pytest

from glmflow.core.errors import OutputError
from glmflow.core.io import atomic_path, save_img, save_json


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "z.nii.gz"
    with pytest.raises(OutputError, match="No space left"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_different_result_is_not_overwritten(tmp_path):
    target = tmp_path / "sidecar.json"
    save_json({"dof": 80}, target, overwrite=False)
    save_json({"dof": 80}, target, overwrite=False)  # the same result again is fine
    with pytest.raises(OutputError, match="different result"):
        save_json({"dof": 79}, target, overwrite=False)
    assert '"dof": 80' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["sidecar.json"]


def test_images_are_byte_identical_on_rewrite(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=float).reshape(2, 3, 4), np.eye(4))
    first = save_img(img, tmp_path / "a.nii.gz")
    data = open(first, "rb").read()
    save_img(img, tmp_path / "a.nii.gz", overwrite=False)  # deterministic gzip: no conflict
    assert open(first, "rb").read() == data


def test_unusable_output_folder_is_named(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(OutputError, match="results"):
        save_json({}, blocker / "sub-01" / "x.json")


def test_outputs_get_the_umask_mode(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = save_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
