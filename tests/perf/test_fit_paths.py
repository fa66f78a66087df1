"""The fast paths of the AR(1) fit give nilearn's numbers.

* One pass with the global residual mean corrected afterwards (designs with an
  intercept), two passes without an intercept, and the refit of voxels whose AR bin the
  correction moves.
* Residual sums of squares from the projection onto the whitened design, with nilearn's
  direct sum for near-perfect fits, where the projection would lose digits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import make_first_level_design_matrix, run_glm

from glmflow.core import glm

N_SCANS = 120
T_R = 2.0


def _design(rng, intercept=True):
    events = pd.DataFrame({"onset": np.arange(10, N_SCANS * T_R - 20, 18.0)})
    events["duration"] = 6.0
    events["trial_type"] = np.where(np.arange(len(events)) % 2, "a", "b")
    design = make_first_level_design_matrix(np.arange(N_SCANS) * T_R, events,
                                            drift_model="cosine")
    design["motion"] = np.cumsum(rng.normal(0, 0.05, N_SCANS))
    return design if intercept else design.drop(columns="constant")


def _series(rng, design, n_voxels, noise_scale=5.0, offset=500.0):
    rho = rng.uniform(0.0, 0.6, n_voxels)
    noise = np.zeros((N_SCANS, n_voxels))
    noise[0] = rng.standard_normal(n_voxels)
    for t in range(1, N_SCANS):
        noise[t] = rho * noise[t - 1] + rng.standard_normal(n_voxels)
    effects = rng.normal(0, 3, (design.shape[1], n_voxels))
    return offset + design.to_numpy() @ effects + noise_scale * noise


def _nilearn_fit(Y, design):
    """nilearn's per-voxel effects and residual variance (its ``run_glm``)."""
    labels, results = run_glm(Y, design.to_numpy(), noise_model="ar1")
    betas = np.zeros((design.shape[1], Y.shape[1]))
    dispersion = np.zeros(Y.shape[1])
    for label, result in results.items():
        voxels = labels == label
        betas[:, voxels] = result.theta
        dispersion[voxels] = result.dispersion
    return betas, dispersion


def _fit(Y, design, chunk_size=64):
    model, _ = glm.fit_glm(Y, design, mask_img=np.ones(Y.shape[1], bool), noise_model="ar1",
                           signal_scaling=False, chunk_size=chunk_size)
    return model


def _assert_close(model, betas, dispersion):
    scale = np.abs(betas).max()
    assert np.max(np.abs(model.betas - betas)) < 1e-9 * scale
    assert np.max(np.abs(model.dispersion - dispersion) / dispersion) < 1e-9


@pytest.mark.parametrize("intercept", [True, False], ids=["one-pass", "two-pass"])
def test_ar1_equals_nilearn_with_and_without_intercept(intercept):
    rng = np.random.default_rng(3)
    design = _design(rng, intercept)
    assert glm._has_intercept(design.to_numpy()) is intercept
    # Without an intercept an offset would dominate every residual (one AR group).
    Y = _series(rng, design, 500, offset=500.0 if intercept else 0.0)
    model = _fit(Y, design)
    _assert_close(model, *_nilearn_fit(Y, design))
    assert len(model.labels) > 20  # many AR groups, spread over the chunks


def test_voxels_whose_bin_moves_are_refitted(monkeypatch):
    """Without an intercept the residual mean is far from zero, so correcting the
    coefficients after a one-pass fit moves many voxels to another bin: forced onto that
    path, the fit must still equal nilearn's, through the refits."""
    rng = np.random.default_rng(4)
    design = _design(rng, intercept=False)
    Y = _series(rng, design, 400)
    refitted = []
    fit_groups = glm._fit_groups

    def counting(voxels, *args, **kwargs):
        refitted.append(len(voxels))
        return fit_groups(voxels, *args, **kwargs)

    monkeypatch.setattr(glm, "_has_intercept", lambda X: True)
    monkeypatch.setattr(glm, "_fit_groups", counting)
    model = _fit(Y, design)
    assert sum(refitted) > Y.shape[1] + 20  # voxels did move, and were fitted again
    _assert_close(model, *_nilearn_fit(Y, design))


def test_residual_moments_give_yule_walker_for_any_mean():
    rng = np.random.default_rng(5)
    resid = rng.normal(0, 1, (300, N_SCANS)) + rng.normal(0, 0.3, (300, 1))
    moments = glm._ResidualMoments(300, N_SCANS)
    at_zero = moments.record(slice(0, 300), resid.copy())
    assert np.array_equal(at_zero, glm._yule_walker(resid.copy(), 1, 0.0))
    assert np.array_equal(moments.coefficients(0.0), at_zero)
    for mean in (1e-16, 0.01, 0.25):
        expected = glm._yule_walker(resid.copy(), 1, mean)
        np.testing.assert_allclose(moments.coefficients(mean), expected, rtol=1e-12, atol=0)


def test_near_perfect_fit_residual_variance_is_exact():
    """Series the design explains almost entirely (1 - R^2 of a few 1e-9): the projection
    |wy|^2 - |c|^2 would cancel to noise; the direct sum keeps nilearn's variance."""
    rng = np.random.default_rng(6)
    design = _design(rng)
    Y = _series(rng, design, 300, noise_scale=0.02)
    model = _fit(Y, design)
    betas, dispersion = _nilearn_fit(Y, design)
    _assert_close(model, betas, dispersion)


def test_saved_model_is_remembered_until_the_file_changes(tmp_path):
    """A process reads back the model it just wrote without reading the file; the model
    equals the file's, field for field, and a rewritten file is read anew."""
    rng = np.random.default_rng(7)
    design = _design(rng)
    model = _fit(_series(rng, design, 50), design)
    path = tmp_path / "model.npz"
    glm.save_model(model, path)
    remembered = glm.load_model(path)
    glm._LAST_SAVED.clear()
    from_disk = glm.load_model(path)
    for field in ("betas", "dispersion", "label_index", "label_cov", "mask", "degenerate",
                  "affine"):
        got, expected = getattr(remembered, field), getattr(from_disk, field)
        if expected is None:
            assert got is None
            continue
        assert got.dtype == expected.dtype and np.array_equal(got, expected), field
        assert not got.flags.writeable, field
    for field in ("labels", "columns", "df_residuals", "meta", "geometry", "geometry_info"):
        assert getattr(remembered, field) == getattr(from_disk, field), field
    assert remembered.meta is not glm.load_model(path).meta  # callers may edit meta

    glm.save_model(model, path)
    other = _fit(_series(rng, design, 50), design)
    np.savez(tmp_path / "other.npz", x=1)
    (tmp_path / "other.npz").replace(path)  # another process replaced the file
    with pytest.raises(glm.ModelFileError):
        glm.load_model(path)
    glm.save_model(other, tmp_path / "b.npz")  # only the last model is kept
    glm.save_model(model, path)
    assert np.array_equal(glm.load_model(path).betas, model.betas)
    assert len(glm._LAST_SAVED) == 1
