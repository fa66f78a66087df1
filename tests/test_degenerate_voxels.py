"""Constant and non-finite voxels: zero statistics, never NaN, for every noise model."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from glmflow.core.contrasts import compute_contrast
from glmflow.core.design import make_design_matrix
from glmflow.core.glm import fit_glm


@pytest.mark.parametrize("noise_model", ["ols", "ar1", "ar2", "ar3"])
@pytest.mark.parametrize("signal_scaling", [False, 0])
def test_degenerate_voxels_get_zero_statistics(noise_model, signal_scaling):
    rng = np.random.default_rng(0)
    n_scans = 60
    data = (rng.standard_normal((n_scans, 50)) * 10 + 100).astype(np.float32)
    data[:, 3] = 100.0  # constant
    data[:, 7] = 0.0  # constant zero
    data[5, 11] = np.nan  # not finite
    mask = nib.Nifti1Image(np.ones((5, 10, 1), np.uint8), np.eye(4))
    events = pd.DataFrame({"onset": [10, 50, 90], "duration": [10, 10, 10],
                           "trial_type": ["a"] * 3})
    design = make_design_matrix(n_scans, t_r=2.0, events=events)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = fit_glm(data, design, mask_img=mask, noise_model=noise_model, t_r=2.0,
                           signal_scaling=signal_scaling, random_state=0)
    assert any("constant or non-finite" in str(w.message) for w in caught)
    assert np.flatnonzero(model.degenerate).tolist() == [3, 7, 11]
    maps = compute_contrast(model, "a").maps
    for key, values in maps.items():
        assert np.isfinite(values).all(), key
    assert (maps["z_score"][[3, 7, 11]] == 0).all()
    assert (maps["effect_size"][[3, 7, 11]] == 0).all()
    assert np.abs(maps["z_score"][model.degenerate == 0]).max() > 0
