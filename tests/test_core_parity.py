"""glmflow.core against nilearn's FirstLevelModel on the same inputs."""

import warnings

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_maps_equal, simulate_study
from nilearn.glm.first_level import FirstLevelModel

from glmflow.core.contrasts import compute_contrast
from glmflow.core.data import compute_mask, load_masked_run
from glmflow.core.design import make_design_matrix
from glmflow.core.glm import fit_glm, load_model, save_model

OUTPUTS = ("z_score", "stat", "p_value", "effect_size", "effect_variance")


def fit_core(bold_files, events_files, *, t_r, noise_model, mask=None, **kw):
    mask_img = compute_mask(bold_files, mask)
    models = []
    for bold, events in zip(bold_files, events_files, strict=True):
        n_scans = nib.load(bold).shape[3]
        design = make_design_matrix(n_scans, t_r=t_r, events=events, **kw)
        raw = load_masked_run(bold, mask_img)
        model, _ = fit_glm(raw, design, mask_img=mask_img, noise_model=noise_model, t_r=t_r,
                           random_state=0)
        models.append(model)
    return mask_img, models


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    return simulate_study(tmp_path_factory.mktemp("sim"), n_runs=3)


@pytest.mark.parametrize("noise_model", ["ols", "ar1", "ar2"])
@pytest.mark.parametrize("n_runs", [1, 3])
def test_simulated_matches_nilearn(three_runs, noise_model, n_runs):
    bold, events = three_runs[0][:n_runs], three_runs[1][:n_runs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FirstLevelModel(t_r=2.0, noise_model=noise_model, random_state=0).fit(
            bold, events=events)
    mask_img, models = fit_core(bold, events, t_r=2.0, noise_model=noise_model)
    assert np.array_equal(np.asarray(mask_img.dataobj) > 0,
                          ref.masker_.mask_img_.get_fdata() > 0)
    n_cols = models[0].betas.shape[0]
    f_matrix = np.eye(n_cols)[:2]
    for definition, stat_type in [("a - b", None), ("2*a - b", "t"), (f_matrix, "F")]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = ref.compute_contrast(definition, stat_type=stat_type, output_type="all")
        result = compute_contrast(models, definition, stat_type)
        ours = result.to_images(models[0].mask, models[0].affine)
        for key in OUTPUTS:
            assert_maps_equal(ours[key].get_fdata(), theirs[key].get_fdata(),
                              what=f"{noise_model} {n_runs} runs {definition!r} {key}")


def test_model_file_round_trip(three_runs, tmp_path):
    _, models = fit_core(three_runs[0][:1], three_runs[1][:1], t_r=2.0, noise_model="ar1")
    path = save_model(models[0], tmp_path / "model.npz")
    loaded = load_model(path)
    assert loaded.columns == models[0].columns
    assert loaded.labels == models[0].labels
    np.testing.assert_array_equal(loaded.betas, models[0].betas)
    a = compute_contrast(models, "a - b").maps["z_score"]
    b = compute_contrast([loaded], "a - b").maps["z_score"]
    np.testing.assert_array_equal(a, b)


def test_spm_auditory_matches_nilearn_and_known_peaks(shared_data):
    bold = str(shared_data / "spm_auditory/sub-01/func/sub-01_task-auditory_bold.nii.gz")
    events = str(shared_data / "spm_auditory/sub-01/func/sub-01_task-auditory_events.tsv")
    kw = {"hrf_model": "spm", "drift_model": "cosine", "high_pass": 0.01}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FirstLevelModel(t_r=7.0, noise_model="ar1", **kw).fit(bold, events=events)
        theirs = ref.compute_contrast("listening", output_type="all")
    mask_img, models = fit_core([bold], [events], t_r=7.0, noise_model="ar1", **kw)
    ours = compute_contrast(models, "listening").to_images(models[0].mask, models[0].affine)
    for key in OUTPUTS:
        assert_maps_equal(ours[key].get_fdata(), theirs[key].get_fdata(), what=key)
    z = ours["z_score"].get_fdata()
    # ../shared/data/README.md: left peak 9.342 at (51, 29, 36), right 8.739 at (11, 31, 34).
    assert np.unravel_index(np.argmax(z), z.shape) == (51, 29, 36)
    assert z.max() == pytest.approx(9.342, abs=0.0005)
    right = z[: z.shape[0] // 2]
    assert np.unravel_index(np.argmax(right), right.shape) == (11, 31, 34)
    assert right.max() == pytest.approx(8.739, abs=0.0005)
    assert int((np.asarray(mask_img.dataobj) > 0).sum()) == 61335
