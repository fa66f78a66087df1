"""MaskedMapWriter writes the bytes nibabel writes for the whole volume."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from glmflow.core import maps
from glmflow.core.contrasts import ContrastResult
from glmflow.core.maps import MaskedMapWriter

SHAPE = (9, 7, 5)


@pytest.fixture
def mask_affine():
    rng = np.random.default_rng(3)
    mask = rng.random(SHAPE) < 0.4
    mask[0, 0, 0] = mask[-1, -1, -1] = True  # the volume's first and last voxels
    affine = np.array([[-2.0, 0, 0, 90], [0, 2.1, 0, -126], [0, 0, 2.5, -72], [0, 0, 0, 1]])
    return mask, affine


def _reference_bytes(values, mask, affine, tmp_path):
    """What glmflow wrote before: the whole float64 volume through nib.save."""
    result = ContrastResult(maps={"m": values}, stat_type="t", dof=1.0, dim=1, weights=[])
    path = tmp_path / "reference.nii"
    nib.save(result.to_images(mask, affine)["m"], path)
    return path.read_bytes()


def _values(mask, rows):
    rng = np.random.default_rng(rows)
    shape = (mask.sum(),) if rows == 0 else (rows, mask.sum())
    values = rng.standard_normal(shape)
    values[..., :3] = [np.nan, np.inf, -0.0]  # kept bit for bit, as nibabel keeps them
    return values


@pytest.mark.parametrize("rows", [0, 1, 3], ids=["3D", "F-1-row", "F-3-rows"])
@pytest.mark.parametrize("slab", [4, 13, 2**17], ids=["slab-4", "slab-13", "slab-default"])
def test_maps_equal_whole_volume_nifti(mask_affine, tmp_path, monkeypatch, rows, slab):
    mask, affine = mask_affine
    monkeypatch.setattr(maps, "SLAB_ELEMENTS", slab)  # slabs cut rows and volumes anywhere
    values = _values(mask, rows)
    expected = _reference_bytes(values, mask, affine, tmp_path)
    writer = MaskedMapWriter(mask, affine)

    plain = writer.write(values, tmp_path / "map.nii")
    compressed = writer.write(values, tmp_path / "map.nii.gz")

    assert open(plain, "rb").read() == expected
    with gzip.open(compressed) as fobj:
        assert fobj.read() == expected
    img = nib.load(compressed)
    assert img.shape == (SHAPE if rows == 0 else (*SHAPE, rows))
    np.testing.assert_allclose(img.affine, affine, rtol=1e-6)  # stored as float32


def test_values_land_on_their_voxels(mask_affine, tmp_path):
    mask, affine = mask_affine
    values = np.arange(1, mask.sum() + 1, dtype=float)  # the mask-order index, plus one
    data = nib.load(MaskedMapWriter(mask, affine).write(values, tmp_path / "m.nii.gz")).get_fdata()
    np.testing.assert_array_equal(data[mask], values)
    assert not data[~mask].any()


def test_rewrite_is_byte_identical_and_leaves_no_temporary(mask_affine, tmp_path):
    mask, affine = mask_affine
    writer = MaskedMapWriter(mask, affine)
    path = tmp_path / "m.nii.gz"
    writer.write(_values(mask, 0), path)
    first = path.read_bytes()
    writer.write(_values(mask, 0), path)
    assert path.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["m.nii.gz"]
