"""A given mask is read as nilearn's ``load_mask_img`` reads it, without importing nilearn."""

import subprocess
import sys
import warnings

import nibabel as nib
import numpy as np
import pytest

from glmflow.core.data import binary_mask_data


def _image(values):
    data = np.zeros((4, 5, 3), dtype=np.asarray(values).dtype)
    data.flat[: len(values)] = values
    return nib.Nifti1Image(data, np.eye(4))


def _nilearn_load(img):
    from nilearn.masking import load_mask_img

    return load_mask_img(img)[0]


def _messages(caught):
    return sorted(str(w.message) for w in caught if issubclass(w.category, UserWarning))


@pytest.mark.parametrize("values", [
    np.array([1, 1, 0, 1], np.uint8),
    np.array([0.0, 2.0, 2.0], np.float32),
    np.array([np.nan, 1.0, 0.0, np.inf], np.float64),  # non-finite -> 0, with a warning
    np.array([-1, 0, -1], np.int8),  # two values, one of them 0
    np.ones(60, np.int16),  # one non-zero value everywhere: a full mask
], ids=["uint8", "zero-two", "non-finite", "negative", "full"])
def test_mask_values_equal_nilearn(values):
    # One image each: nilearn replaces non-finite values in the image's cached data.
    with warnings.catch_warnings(record=True) as theirs_caught:
        warnings.simplefilter("always")
        theirs = _nilearn_load(_image(values))
    with warnings.catch_warnings(record=True) as ours_caught:
        warnings.simplefilter("always")
        ours = binary_mask_data(_image(values))
    assert ours.dtype == theirs.dtype == bool
    assert np.array_equal(ours, theirs)
    assert _messages(ours_caught) == _messages(theirs_caught)


@pytest.mark.parametrize("values", [
    np.zeros(3, np.uint8),  # empty
    np.array([0, 1, 2], np.uint8),  # three values
    np.full(60, 3.0),  # fine: a full mask (one value) -- control case
    np.concatenate([np.full(30, 1.0), np.full(30, 2.0)]),  # two values, no background
], ids=["empty", "three-values", "one-value", "no-background"])
def test_mask_errors_equal_nilearn(values):
    img = _image(values)
    try:
        _nilearn_load(img)
    except ValueError as exc:
        with pytest.raises(ValueError) as ours:
            binary_mask_data(img)
        assert str(ours.value) == str(exc)
    else:
        assert np.array_equal(binary_mask_data(img), _nilearn_load(img))


def test_reading_a_mask_imports_no_nilearn():
    code = ("import sys, numpy as np, nibabel as nib\n"
            "from glmflow.core.data import binary_mask_data\n"
            "binary_mask_data(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)))\n"
            "print([m for m in sys.modules if m.split('.')[0] in ('nilearn', 'sklearn')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
