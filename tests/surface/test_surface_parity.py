"""Surface GLMs against nilearn's FirstLevelModel on the same SurfaceImage runs (fsaverage5)."""

import numpy as np
import pytest

from glmflow.core.contrasts import compute_contrast
from glmflow.core.design import make_design_matrix
from glmflow.core.surface import (
    HEMIS,
    compute_surface_mask,
    fit_surface_run,
    load_masked_surface_run,
    to_surface_image,
    unmask,
)

from .conftest import EVENTS, T_R, surface_image

OUTPUTS = ("z_score", "stat", "effect_size", "effect_variance", "p_value")
CONTRASTS = {"a - b": None, "F": {"def": [[1, 0], [0, 1]], "stat_type": "F"}}


def nilearn_fit(mesh, study, *, smoothing_fwhm=None, noise_model="ar1"):
    from nilearn.glm.first_level import FirstLevelModel

    imgs = [surface_image(mesh, run) for run in study["runs"]]
    model = FirstLevelModel(
        t_r=T_R, mask_img=surface_image(mesh, study["mask"]), smoothing_fwhm=smoothing_fwhm,
        noise_model=noise_model, minimize_memory=True,
    )
    return model.fit(imgs, events=[EVENTS, EVENTS]), imgs


def glmflow_fit(imgs, mask, *, smoothing_fwhm=None, noise_model="ar1"):
    geometry = compute_surface_mask(imgs, mask)
    models = []
    for img in imgs:
        design = make_design_matrix(img.shape[1], t_r=T_R, events=EVENTS)
        model, _ = fit_surface_run(img, design, geometry, smoothing_fwhm=smoothing_fwhm,
                                   noise_model=noise_model, t_r=T_R)
        models.append(model)
    return geometry, models


def nilearn_maps(model, definition, stat_type=None):
    maps = model.compute_contrast(definition, stat_type=stat_type, output_type="all")
    return {key: np.concatenate([np.asarray(maps[key].data.parts[h]) for h in HEMIS], axis=0)
            for key in OUTPUTS}


def glmflow_maps(models, geometry, definition, stat_type=None):
    result = compute_contrast(models, definition, stat_type)
    return {key: np.concatenate([unmask(result.maps[key], geometry)[h] for h in HEMIS], axis=0)
            for key in OUTPUTS}


@pytest.mark.parametrize("smoothing_fwhm", [None, 8.0])
def test_masked_data_equal_surface_masker(fsaverage5, surface_study, smoothing_fwhm):
    """Values, dtype and layout are SurfaceMasker's, bit for bit, smoothed or not."""
    from nilearn.maskers import SurfaceMasker

    img = surface_image(fsaverage5, surface_study["runs"][0])
    mask = surface_image(fsaverage5, surface_study["mask"])
    expected = SurfaceMasker(mask_img=mask, smoothing_fwhm=smoothing_fwhm).fit().transform(img)
    got = load_masked_surface_run(img, compute_surface_mask([img], mask),
                                  smoothing_fwhm=smoothing_fwhm)
    assert got.dtype == expected.dtype == np.float64
    assert got.shape == expected.shape == (80, int(sum(m.sum() for m in
                                                       surface_study["mask"].values())))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("smoothing_fwhm", [None, 8.0])
def test_contrasts_equal_nilearn(fsaverage5, surface_study, smoothing_fwhm):
    """Two runs, AR(1), t and F contrasts: every map within 1e-9 of nilearn's."""
    reference, imgs = nilearn_fit(fsaverage5, surface_study, smoothing_fwhm=smoothing_fwhm)
    mask = surface_image(fsaverage5, surface_study["mask"])
    geometry, models = glmflow_fit(imgs, mask, smoothing_fwhm=smoothing_fwhm)
    assert models[0].geometry == "surface"
    assert models[0].geometry_info["parts"] == {"left": 10242, "right": 10242}
    for name, definition in CONTRASTS.items():
        stat_type = None
        if isinstance(definition, dict):
            definition, stat_type = np.asarray(definition["def"], float), definition["stat_type"]
        else:
            definition = name
        expected = nilearn_maps(reference, definition, stat_type)
        got = glmflow_maps(models, geometry, definition, stat_type)
        for key in OUTPUTS:
            assert got[key].shape == expected[key].shape, (name, key)
            scale = max(1.0, np.abs(expected[key]).max())
            np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-9 * scale,
                                       err_msg=f"{name} {key}")
        # The medial wall is outside the mask: zero there, as nilearn's inverse_transform.
        outside = ~np.concatenate([surface_study["mask"][h] for h in HEMIS])
        assert not got["z_score"][outside].any()
    # Activation recovered where it was simulated (sanity, not parity).
    z = glmflow_maps(models, geometry, "a - b")["z_score"]
    truth = np.concatenate([surface_study["truth"]["left"], surface_study["truth"]["right"]])
    left = np.arange(z.size) < 10242
    assert np.median(z[truth & left]) > 3 and np.median(z[truth & ~left]) < -3


def test_ols_and_surface_image_output(fsaverage5, surface_study):
    """OLS parity, and maps returned as a SurfaceImage on the runs' mesh."""
    reference, imgs = nilearn_fit(fsaverage5, surface_study, noise_model="ols")
    mask = surface_image(fsaverage5, surface_study["mask"])
    geometry, models = glmflow_fit(imgs, mask, noise_model="ols")
    expected = reference.compute_contrast("a", output_type="z_score")
    result = compute_contrast(models, "a")
    img = to_surface_image(result.maps["z_score"], geometry, fsaverage5)
    for hemi in HEMIS:
        assert img.data.parts[hemi].shape == expected.data.parts[hemi].shape
        np.testing.assert_allclose(img.data.parts[hemi], expected.data.parts[hemi],
                                   rtol=0, atol=1e-9)


def test_sample_mask_equals_nilearn(fsaverage5, surface_study):
    """Scrubbed scans (sample_masks) on surfaces: AR(1) z within 1e-9 of nilearn's."""
    from nilearn.glm.first_level import FirstLevelModel

    img = surface_image(fsaverage5, surface_study["runs"][0])
    mask = surface_image(fsaverage5, surface_study["mask"])
    keep = np.setdiff1d(np.arange(80), [0, 1, 2, 30, 31, 55])
    reference = FirstLevelModel(t_r=T_R, mask_img=mask).fit(img, events=EVENTS,
                                                            sample_masks=[keep])
    expected = reference.compute_contrast("a - b", output_type="z_score")
    geometry = compute_surface_mask([img], mask)
    design = make_design_matrix(80, t_r=T_R, events=EVENTS)
    model, _ = fit_surface_run(img, design, geometry, t_r=T_R, sample_mask=keep)
    got = unmask(compute_contrast(model, "a - b").maps["z_score"], geometry)
    assert model.meta["n_scans"] == keep.size
    for hemi in HEMIS:
        np.testing.assert_allclose(got[hemi], expected.data.parts[hemi], rtol=0, atol=1e-9)


@pytest.mark.parametrize("options", [{"signal_scaling": False, "standardize": True},
                                     {"signal_scaling": (0, 1)}])
def test_scaling_options_equal_nilearn(fsaverage5, surface_study, options):
    """Standardisation (nilearn's clean on the SurfaceMasker output) and grand-mean scaling."""
    from nilearn.glm.first_level import FirstLevelModel

    img = surface_image(fsaverage5, surface_study["runs"][1])
    mask = surface_image(fsaverage5, surface_study["mask"])
    reference = FirstLevelModel(t_r=T_R, mask_img=mask, **options).fit(img, events=EVENTS)
    expected = reference.compute_contrast("a - b", output_type="z_score")
    geometry = compute_surface_mask([img], mask)
    design = make_design_matrix(80, t_r=T_R, events=EVENTS)
    model, _ = fit_surface_run(img, design, geometry, t_r=T_R, **options)
    got = unmask(compute_contrast(model, "a - b").maps["z_score"], geometry)
    for hemi in HEMIS:
        np.testing.assert_allclose(got[hemi], expected.data.parts[hemi], rtol=0, atol=1e-9)
