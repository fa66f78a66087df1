"""glmflow.FirstLevelModel on SurfaceImage runs: nilearn's API and numbers, SurfaceImage maps."""

import warnings

import numpy as np
import pytest

from .conftest import EVENTS, T_R, surface_image

OUTPUTS = ("z_score", "stat", "p_value", "effect_size", "effect_variance")


@pytest.fixture(scope="module")
def fitted(fsaverage5, surface_study):
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    from glmflow.model import FirstLevelModel

    imgs = [surface_image(fsaverage5, run) for run in surface_study["runs"]]
    mask = surface_image(fsaverage5, surface_study["mask"])
    kwargs = {"t_r": T_R, "mask_img": mask, "smoothing_fwhm": 8.0, "minimize_memory": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = FirstLevelModel(**kwargs).fit(imgs, events=[EVENTS, EVENTS])
        theirs = NilearnModel(**kwargs).fit(imgs, events=[EVENTS, EVENTS])
    return ours, theirs


def test_facade_contrasts_are_surface_images_equal_to_nilearn(fitted):
    from nilearn.surface import SurfaceImage

    ours, theirs = fitted
    assert ours.n_elements_ == theirs.n_elements_
    for definition, stat_type in (("a - b", None), (np.eye(2), "F")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = ours.compute_contrast(definition, stat_type=stat_type, output_type="all")
            expected = theirs.compute_contrast(definition, stat_type=stat_type,
                                               output_type="all")
        for key in OUTPUTS:
            assert isinstance(got[key], SurfaceImage)
            for hemi in ("left", "right"):
                a = np.asarray(got[key].data.parts[hemi])
                b = np.asarray(expected[key].data.parts[hemi])
                assert a.shape == b.shape, (key, hemi)
                scale = max(1.0, np.abs(b).max())
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * scale,
                                           err_msg=f"{stat_type} {key} {hemi}")


def test_facade_r_square_equals_nilearn(fitted):
    ours, theirs = fitted
    for got, expected in zip(ours.r_square_, theirs.r_square_, strict=True):
        for hemi in ("left", "right"):
            np.testing.assert_allclose(np.asarray(got.data.parts[hemi]),
                                       np.asarray(expected.data.parts[hemi]),
                                       rtol=0, atol=1e-9, err_msg=hemi)


def test_facade_ols_residuals_and_default_mask(fsaverage5, surface_study):
    """OLS residuals/predicted equal nilearn's (glmflow's differ under AR by design).

    Without a mask both use nilearn's rule (finite vertices), medial wall included; the
    medial wall's constant series get zero statistics in glmflow, so only the others are
    compared there.
    """
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    from glmflow.model import FirstLevelModel

    img = surface_image(fsaverage5, surface_study["runs"][0])
    kwargs = {"t_r": T_R, "noise_model": "ols", "minimize_memory": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = FirstLevelModel(**kwargs).fit(img, events=EVENTS)
        theirs = NilearnModel(**kwargs).fit(img, events=EVENTS)
        z_ours = ours.compute_contrast("a - b")
        z_theirs = theirs.compute_contrast("a - b")
    assert ours.n_elements_ == theirs.n_elements_ == 20484
    for hemi in ("left", "right"):
        cortex = surface_study["mask"][hemi]
        np.testing.assert_allclose(np.asarray(z_ours.data.parts[hemi])[cortex],
                                   np.asarray(z_theirs.data.parts[hemi])[cortex],
                                   rtol=0, atol=1e-9)
        assert not np.asarray(z_ours.data.parts[hemi])[~cortex].any()
        for name in ("residuals_", "predicted_"):
            got = np.asarray(getattr(ours, name)[0].data.parts[hemi])
            expected = np.asarray(getattr(theirs, name)[0].data.parts[hemi])
            np.testing.assert_allclose(got[cortex], expected[cortex], rtol=0, atol=1e-9,
                                       err_msg=f"{name} {hemi}")
