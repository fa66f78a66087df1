"""glmflow.FirstLevelModel against nilearn's over a broad parameter matrix.

Every case fits the same inputs with both classes and compares, for a t expression, a t
vector and an F matrix: all five output maps (|Δz| < 1e-9, relative 1e-9 on effect,
variance, stat and p), ``design_matrices_``, the mask and the noise-model labels.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import FirstLevelModel as NilearnModel
from nilearn.maskers import NiftiMasker

from glmflow import FirstLevelModel

from . import simulate as sim
from .conftest import assert_same_maps, quiet


def _runs(n_runs=1, n_scans=80, seed=0, **kwargs):
    events = [sim.events(seed + r, n_scans) for r in range(n_runs)]
    imgs = [sim.bold(seed + r, n_scans, events_df=events[r], **kwargs) for r in range(n_runs)]
    return imgs, events


def _mask_img():
    return nib.Nifti1Image(sim.brain_mask().astype(np.uint8), sim.affine())


def _case_default(tmp_path):
    imgs, events = _runs()
    return {"t_r": 2.0}, {"run_imgs": imgs[0], "events": events[0]}


def _noise(model, **extra):
    def case(tmp_path):
        imgs, events = _runs(n_scans=70, seed=3)
        return {"t_r": 2.0, "noise_model": model, **extra}, {"run_imgs": imgs, "events": events}
    return case


def _hrf(model, seed=5, **extra):
    def case(tmp_path):
        imgs, events = _runs(n_scans=64, seed=seed)
        return {"t_r": 2.0, "hrf_model": model, **extra}, {"run_imgs": imgs, "events": events}
    return case


def _params(n_scans=72, seed=7, n_runs=1, **params):
    def case(tmp_path):
        imgs, events = _runs(n_runs=n_runs, n_scans=n_scans, seed=seed)
        return {"t_r": 2.0, **params}, {"run_imgs": imgs, "events": events}
    return case


def _case_given_mask(tmp_path):
    imgs, events = _runs(seed=11)
    return {"t_r": 2.0, "mask_img": _mask_img()}, {"run_imgs": imgs, "events": events}


def _case_mask_path(tmp_path):
    imgs, events = _runs(seed=12, n_scans=60)
    path = tmp_path / "mask.nii.gz"
    _mask_img().to_filename(path)
    return ({"t_r": 2.0, "mask_img": str(path), "noise_model": "ols"},
            {"run_imgs": imgs, "events": events})


def _case_no_mask(tmp_path):
    imgs, events = _runs(seed=13, n_scans=60)
    return {"t_r": 2.0, "mask_img": False}, {"run_imgs": imgs, "events": events}


def _case_masker(tmp_path):
    imgs, events = _runs(seed=14, n_scans=60)
    masker = NiftiMasker(mask_img=_mask_img(), smoothing_fwhm=5.0).fit()
    return {"t_r": 2.0, "mask_img": masker}, {"run_imgs": imgs, "events": events}


def _case_resample_4x4(tmp_path):
    imgs, events = _runs(seed=15, n_scans=60)
    target = np.diag([4.0, 4.0, 4.0, 1.0])
    target[:3, 3] = [-14.0, -17.0, -11.0]
    return ({"t_r": 2.0, "target_affine": target, "target_shape": (8, 9, 7)},
            {"run_imgs": imgs, "events": events})


def _case_resample_3x3_mask(tmp_path):
    imgs, events = _runs(seed=16, n_scans=60)
    return ({"t_r": 2.0, "target_affine": np.diag([4.5, 4.5, 4.5]), "mask_img": _mask_img(),
             "noise_model": "ols"},
            {"run_imgs": imgs, "events": events})


def _case_confounds_frame(tmp_path):
    imgs, events = _runs(seed=17)
    return {"t_r": 2.0}, {"run_imgs": imgs, "events": events, "confounds": sim.confounds(17)}


def _case_confounds_array(tmp_path):
    imgs, events = _runs(seed=18, n_scans=64)
    return ({"t_r": 2.0, "noise_model": "ols"},
            {"run_imgs": imgs, "events": events,
             "confounds": [sim.confounds(18, 64).to_numpy()]})


def _case_confounds_paths(tmp_path):
    imgs, events = _runs(n_runs=2, seed=19, n_scans=60)
    paths = []
    for run in range(2):
        path = tmp_path / f"confounds_{run}.tsv"
        sim.confounds(19 + run, 60).to_csv(path, sep="\t", index=False)
        paths.append(str(path))
    return {"t_r": 2.0}, {"run_imgs": imgs, "events": events, "confounds": paths}


def _case_sample_mask(tmp_path):
    imgs, events = _runs(seed=20)
    keep = np.r_[3:30, 34:80]
    return {"t_r": 2.0}, {"run_imgs": imgs, "events": events, "sample_masks": keep}


def _case_sample_mask_bool_runs(tmp_path):
    imgs, events = _runs(n_runs=2, seed=21, n_scans=64)
    masks = []
    for run in range(2):
        keep = np.ones(64, bool)
        keep[run * 5:run * 5 + 4] = False
        masks.append(keep)
    return ({"t_r": 2.0, "noise_model": "ols"},
            {"run_imgs": imgs, "events": events, "sample_masks": masks,
             "confounds": [sim.confounds(21 + r, 64) for r in range(2)]})


def _case_design_frames(tmp_path):
    imgs, events = _runs(n_runs=2, seed=22, n_scans=60)
    designs = [NilearnModel(t_r=2.0, hrf_model="spm", drift_model="polynomial",
                            drift_order=2).fit(imgs[r], events[r]).design_matrices_[0]
               for r in range(2)]
    return {}, {"run_imgs": imgs, "design_matrices": designs}


def _case_design_paths_sample_mask(tmp_path):
    imgs, events = _runs(seed=23, n_scans=60)
    design = quiet(lambda: NilearnModel(t_r=2.0).fit(imgs, events).design_matrices_[0])
    path = tmp_path / "design.tsv"
    design.to_csv(path, sep="\t", index=False)
    return ({"noise_model": "ar1"},
            {"run_imgs": imgs, "design_matrices": [str(path)],
             "sample_masks": [np.r_[0:25, 28:60]]})


def _case_paths_int16(tmp_path):
    """Runs and events as files; int16 data with a scale factor (read as nilearn reads it)."""
    imgs, events = _runs(n_runs=2, seed=24, n_scans=60)
    run_paths, event_paths = [], []
    for run, (img, ev) in enumerate(zip(imgs, events, strict=True)):
        out = nib.Nifti1Image(img.get_fdata(), img.affine)
        out.set_data_dtype(np.int16)
        run_paths.append(str(tmp_path / f"run-{run}_bold.nii.gz"))
        out.to_filename(run_paths[-1])
        event_paths.append(str(tmp_path / f"run-{run}_events.tsv"))
        ev.to_csv(event_paths[-1], sep="\t", index=False)
    return {"t_r": 2.0}, {"run_imgs": run_paths, "events": event_paths}


def _case_float64_min_onset(tmp_path):
    imgs, events = _runs(seed=25, n_scans=60, dtype=np.float64)
    # Events before t=0 but after min_onset are modelled (events before min_onset are
    # dropped by glmflow, where nilearn moves them to min_onset: a documented difference).
    early = pd.DataFrame({"onset": [-8.0, -4.0], "duration": [2.0, 2.0],
                          "trial_type": ["audio", "video"], "modulation": [1.0, 1.0]})
    return ({"t_r": 2.0, "min_onset": -10},
            {"run_imgs": imgs, "events": [pd.concat([early, events[0]], ignore_index=True)]})


def _case_multirun_combo(tmp_path):
    imgs, events = _runs(n_runs=3, seed=26, n_scans=60)
    return ({"t_r": 2.0, "smoothing_fwhm": 4.0, "hrf_model": "spm + derivative",
             "slice_time_ref": 0.5, "noise_model": "ar2", "random_state": 3},
            {"run_imgs": imgs, "events": events,
             "confounds": [sim.confounds(26 + r, 60) for r in range(3)]})


def _case_resample_smoothing(tmp_path):
    imgs, events = _runs(seed=27, n_scans=60)
    target = np.diag([3.5, 3.5, 3.5, 1.0])
    target[:3, 3] = [-13.0, -16.0, -10.0]
    return ({"t_r": 2.0, "target_affine": target, "target_shape": (9, 10, 8),
             "smoothing_fwhm": 5.0},
            {"run_imgs": imgs, "events": events})


def _case_ar2_sample_masks(tmp_path):
    imgs, events = _runs(n_runs=2, seed=28, n_scans=64)
    return ({"t_r": 2.0, "noise_model": "ar2", "random_state": 0},
            {"run_imgs": imgs, "events": events,
             "sample_masks": [np.r_[4:64], np.r_[0:40, 44:64]]})


CASES = {
    "default": _case_default,
    "ols": _noise("ols"),
    "ar1": _noise("ar1"),
    "ar2": _noise("ar2", random_state=0),
    "ar3": _noise("ar3", random_state=1),
    "hrf-spm": _hrf("spm"),
    "hrf-glover-derivative": _hrf("glover + derivative"),
    "hrf-spm-derivative-dispersion": _hrf("spm + derivative + dispersion"),
    "hrf-fir": _hrf("fir", fir_delays=[0, 1, 2, 3]),
    "hrf-none": _hrf(None, seed=6, noise_model="ols"),  # seed 5: rank-deficient
    "drift-polynomial": _params(drift_model="polynomial", drift_order=3),
    "drift-none": _params(drift_model=None),
    "high-pass": _params(high_pass=0.025),
    "slice-time-ref": _params(slice_time_ref=0.5),
    "scaling-false": _params(signal_scaling=False),
    "scaling-grand-mean": _params(signal_scaling=(0, 1)),
    "standardize-ignored-with-scaling": _params(standardize="zscore_sample"),
    "smoothing": _params(smoothing_fwhm=6.0),
    "given-mask": _case_given_mask,
    "mask-path-ols": _case_mask_path,
    "mask-false": _case_no_mask,
    "niftimasker": _case_masker,
    "resample-4x4": _case_resample_4x4,
    "resample-3x3-given-mask": _case_resample_3x3_mask,
    "confounds-frame": _case_confounds_frame,
    "confounds-array": _case_confounds_array,
    "confounds-paths-2runs": _case_confounds_paths,
    "sample-mask": _case_sample_mask,
    "sample-mask-bool-2runs": _case_sample_mask_bool_runs,
    "design-frames-2runs": _case_design_frames,
    "design-path-sample-mask": _case_design_paths_sample_mask,
    "paths-int16-2runs": _case_paths_int16,
    "float64-min-onset": _case_float64_min_onset,
    "multirun-ar2-combo": _case_multirun_combo,
    "multirun-ols": _params(n_runs=2, noise_model="ols", n_scans=60),
    "resample-smoothing-ar1": _case_resample_smoothing,
    "multirun-ar2-sample-masks": _case_ar2_sample_masks,
    "fir-polynomial-ols": _hrf("fir", seed=8, fir_delays=[1, 2], drift_model="polynomial",
                               drift_order=2, noise_model="ols"),
}


def _contrasts(design):
    """A t expression, a t vector and an F matrix over the first condition columns."""
    columns = list(design.columns)
    conditions = [c for c in columns if not c.startswith(("drift", "constant", "confound",
                                                          "motion"))][:3]
    t_expr = f"{conditions[0]} - {conditions[1]}" if len(conditions) > 1 else conditions[0]
    vector = np.zeros(len(columns))
    vector[columns.index(conditions[-1])] = 1.0
    f_matrix = np.zeros((len(conditions), len(columns)))
    for row, name in enumerate(conditions):
        f_matrix[row, columns.index(name)] = 1.0
    return [(t_expr, None), (vector, None), (f_matrix, "F")]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_parity_with_nilearn(case, tmp_path):
    model_kwargs, fit_kwargs = CASES[case](tmp_path)
    reference = quiet(NilearnModel(**model_kwargs).fit, **fit_kwargs)
    ours = quiet(FirstLevelModel(**model_kwargs).fit, **fit_kwargs)

    assert len(ours.design_matrices_) == len(reference.design_matrices_)
    for mine, theirs in zip(ours.design_matrices_, reference.design_matrices_, strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
    ref_mask = reference.masker_.mask_img_
    np.testing.assert_array_equal(ours.mask_img_.get_fdata(), ref_mask.get_fdata())
    np.testing.assert_allclose(ours.mask_img_.affine, ref_mask.affine, rtol=0, atol=1e-12)
    assert ours.n_elements_ == reference.n_elements_
    for mine, theirs in zip(ours.labels_, reference.labels_, strict=True):
        np.testing.assert_array_equal(mine, theirs)

    for definition, stat_type in _contrasts(reference.design_matrices_[0]):
        expected = quiet(reference.compute_contrast, definition, stat_type=stat_type,
                         output_type="all")
        got = quiet(ours.compute_contrast, definition, stat_type=stat_type, output_type="all")
        assert set(got) == set(expected)
        assert_same_maps(got, expected)
        for key in got:
            assert got[key].header["descrip"] == expected[key].header["descrip"]


def test_parity_per_run_contrasts_and_single_outputs():
    """A list with one definition per run, and each output_type requested alone."""
    imgs, events = _runs(n_runs=2, seed=30, n_scans=60)
    reference = quiet(NilearnModel(t_r=2.0).fit, imgs, events)
    ours = quiet(FirstLevelModel(t_r=2.0).fit, imgs, events)
    columns = reference.design_matrices_[1].columns
    per_run = ["audio - video", np.asarray(columns == "audio", float) * 2]
    for output_type in ("z_score", "stat", "p_value", "effect_size", "effect_variance"):
        expected = reference.compute_contrast(list(per_run), output_type=output_type)
        got = ours.compute_contrast(list(per_run), output_type=output_type)
        np.testing.assert_allclose(got.get_fdata(), expected.get_fdata(), rtol=1e-9,
                                   atol=1e-12 * np.abs(expected.get_fdata()).max())
        assert got.header["descrip"] == expected.header["descrip"]
    # a per-run F contrast as a list of matrices
    f_per_run = [np.eye(2, len(columns)), np.eye(2, len(columns))]
    expected = reference.compute_contrast(list(f_per_run), output_type="all")
    got = ours.compute_contrast(list(f_per_run), output_type="all")
    assert_same_maps(got, expected)


def test_results_usable_by_nilearn_contrast_code():
    """``labels_``/``results_`` work with nilearn's own fixed-effects contrast function."""
    from nilearn.glm.contrasts import compute_fixed_effect_contrast

    imgs, events = _runs(n_runs=2, seed=31, n_scans=60)
    for noise_model in ("ols", "ar1"):
        reference = quiet(NilearnModel(t_r=2.0, noise_model=noise_model).fit, imgs, events)
        ours = quiet(FirstLevelModel(t_r=2.0, noise_model=noise_model).fit, imgs, events)
        assert [sorted(r) for r in ours.results_] == [sorted(r) for r in reference.results_]
        vector = np.zeros(reference.design_matrices_[0].shape[1])
        vector[0] = 1
        mine = compute_fixed_effect_contrast(ours.labels_, ours.results_, [vector] * 2)
        theirs = compute_fixed_effect_contrast(reference.labels_, reference.results_,
                                               [vector] * 2)
        assert np.abs(mine.z_score() - theirs.z_score()).max() < 1e-9
        for label, result in ours.results_[0].items():
            expected = reference.results_[0][label]
            np.testing.assert_allclose(result.theta, expected.theta, rtol=1e-9, atol=1e-12)
            assert result.df_residuals == expected.df_residuals


def test_voxelwise_outputs_ols_match_nilearn():
    # float64 data: nilearn computes R-square's variance of float32 data in float32 (see
    # test_r_square_float32_is_computed_in_float64).
    imgs, events = _runs(n_runs=2, seed=32, n_scans=60, dtype=np.float64)
    kwargs = {"t_r": 2.0, "noise_model": "ols", "minimize_memory": False}
    reference = quiet(NilearnModel(**kwargs).fit, imgs, events,
                      sample_masks=[np.r_[2:60], np.r_[0:60]])
    ours = quiet(FirstLevelModel(**kwargs).fit, imgs, events,
                 sample_masks=[np.r_[2:60], np.r_[0:60]])
    for name in ("predicted_", "residuals_", "r_square_"):
        for mine, theirs in zip(getattr(ours, name), getattr(reference, name), strict=True):
            assert mine.shape == theirs.shape, name
            a, b = mine.get_fdata(), theirs.get_fdata()
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(b).max(),
                                       err_msg=name)
    with pytest.warns(FutureWarning, match="deprecated"):
        old = ours.residuals
    np.testing.assert_array_equal(old[0].get_fdata(), ours.residuals_[0].get_fdata())


def test_voxelwise_outputs_ar1_are_x_beta():
    """Under AR(1): predicted = X @ beta (unwhitened design), residuals = Y - predicted,
    r_square = nilearn's pseudo-R2 (identical to nilearn's)."""
    from nilearn.glm.first_level.first_level import mean_scaling

    imgs, events = _runs(seed=33, n_scans=70)
    kwargs = {"t_r": 2.0, "noise_model": "ar1", "minimize_memory": False}
    reference = quiet(NilearnModel(**kwargs).fit, imgs, events)
    ours = quiet(FirstLevelModel(**kwargs).fit, imgs, events)
    design = ours.design_matrices_[0].to_numpy()
    betas = np.zeros((design.shape[1], ours.n_elements_))
    for label, result in ours.results_[0].items():
        betas[:, ours.labels_[0] == label] = result.theta
    masker = reference.masker_
    data, _ = mean_scaling(masker.transform(imgs[0]), 0)
    predicted = masker.transform(ours.predicted_[0])
    residuals = masker.transform(ours.residuals_[0])
    np.testing.assert_allclose(predicted, design @ betas, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(residuals, data - design @ betas, rtol=1e-9, atol=1e-9)
    r2_ours = ours.r_square_[0].get_fdata()
    r2_ref = reference.r_square_[0].get_fdata()
    np.testing.assert_allclose(r2_ours, r2_ref, rtol=1e-9, atol=1e-12)
    # nilearn's AR "predicted" is the *whitened* design times beta: it differs from ours.
    assert np.abs(reference.predicted_[0].get_fdata() - ours.predicted_[0].get_fdata()
                  ).max() > 1e-3


def test_signal_scaling_1_scales_each_scan():
    """nilearn raises a broadcasting error for signal_scaling=1; glmflow scales each scan by
    its mean over the mask. Reference: nilearn without scaling on data scaled by hand."""
    imgs, events = _runs(seed=34, n_scans=60)
    mask = _mask_img()
    with pytest.raises(ValueError):
        quiet(NilearnModel(t_r=2.0, mask_img=mask, signal_scaling=1).fit, imgs, events)
    masker = NiftiMasker(mask_img=mask).fit()
    data = masker.transform(imgs[0])  # float32, as the fit reads it
    scan_mean = np.maximum(data.mean(axis=1), 1)[:, None]
    scaled = masker.inverse_transform(100 * (data / scan_mean - 1))
    reference = quiet(NilearnModel(t_r=2.0, mask_img=mask, signal_scaling=False).fit,
                      scaled, events)
    ours = quiet(FirstLevelModel(t_r=2.0, mask_img=mask, signal_scaling=1).fit, imgs, events)
    for definition, stat_type in _contrasts(reference.design_matrices_[0]):
        assert_same_maps(ours.compute_contrast(definition, stat_type, "all"),
                         reference.compute_contrast(definition, stat_type, "all"))


def test_r_square_float32_is_computed_in_float64():
    """Under OLS nilearn takes the variance of float32 data in float32; glmflow in float64.
    The two agree to float32 precision; glmflow's equals the float64 formula exactly."""
    imgs, events = _runs(seed=36, n_scans=60)
    kwargs = {"t_r": 2.0, "noise_model": "ols", "minimize_memory": False}
    reference = quiet(NilearnModel(**kwargs).fit, imgs, events)
    ours = quiet(FirstLevelModel(**kwargs).fit, imgs, events)
    masker = reference.masker_
    r2_ref = masker.transform(reference.r_square_[0])[0]
    r2_ours = masker.transform(ours.r_square_[0])[0]
    np.testing.assert_allclose(r2_ours, r2_ref, rtol=1e-5)
    predicted = masker.transform(ours.predicted_[0]).astype(np.float64)
    residuals = masker.transform(ours.residuals_[0]).astype(np.float64)
    data = predicted + residuals
    np.testing.assert_allclose(r2_ours, predicted.var(0) / data.var(0), rtol=1e-9)


@pytest.mark.parametrize("standardize", [True, "zscore_sample", "psc"])
def test_standardize_without_scaling_is_applied(standardize):
    """nilearn 0.14.1 never standardizes in FirstLevelModel (``False in [0, 1, (0, 1)]`` is
    True, so ``standardize_`` is always None). glmflow standardizes when signal_scaling is
    False. Reference: nilearn on data standardized by nilearn's own masker."""
    imgs, events = _runs(seed=37, n_scans=60)
    mask = _mask_img()
    kwargs = {"t_r": 2.0, "mask_img": mask, "signal_scaling": False}
    ignored = quiet(NilearnModel(standardize=standardize, **kwargs).fit, imgs, events)
    assert ignored.standardize_ is None  # the nilearn bug
    name = "zscore_sample" if standardize is True else standardize
    masker = NiftiMasker(mask_img=mask, t_r=2.0, standardize=name).fit()
    clean = masker.inverse_transform(masker.transform(imgs[0]))
    reference = quiet(NilearnModel(**kwargs).fit, clean, events)
    ours = quiet(FirstLevelModel(standardize=standardize, **kwargs).fit, imgs, events)
    assert ours.standardize_ == name
    for definition, stat_type in _contrasts(reference.design_matrices_[0]):
        assert_same_maps(ours.compute_contrast(definition, stat_type, "all"),
                         reference.compute_contrast(definition, stat_type, "all"))
    # nilearn's effect sizes are those of the unstandardized data: they differ from ours.
    effect = "audio - video"
    assert not np.allclose(ours.compute_contrast(effect, output_type="effect_size").get_fdata(),
                           ignored.compute_contrast(effect, output_type="effect_size")
                           .get_fdata())


def test_standardize_with_scaling_warns_and_matches_nilearn():
    """nilearn ignores standardize silently when signal_scaling is not False; glmflow warns
    (and computes the same numbers)."""
    imgs, events = _runs(seed=35, n_scans=60)
    reference = quiet(NilearnModel(t_r=2.0, standardize=True).fit, imgs, events)
    with pytest.warns(UserWarning, match="standardize=True is ignored"):
        ours = FirstLevelModel(t_r=2.0, standardize=True).fit(imgs, events)
    assert ours.standardize_ is None and reference.standardize_ is None
    assert_same_maps(quiet(ours.compute_contrast, "audio - video", output_type="all"),
                     quiet(reference.compute_contrast, "audio - video", output_type="all"))


def test_rank_deficient_design_variance_uses_rank():
    """Documented difference: nilearn divides the residual variance by n - n_columns but
    uses n - rank as degrees of freedom; glmflow uses n - rank for both. Effects agree;
    variances differ by exactly (n - n_columns) / (n - rank)."""
    imgs, events = _runs(n_scans=64, seed=5)  # hrf_model=None makes this design rank 5 of 6
    kwargs = {"t_r": 2.0, "hrf_model": None, "noise_model": "ols"}
    reference = quiet(NilearnModel(**kwargs).fit, imgs, events)
    ours = quiet(FirstLevelModel(**kwargs).fit, imgs, events)
    design = reference.design_matrices_[0].to_numpy()
    n, p = design.shape
    rank = np.linalg.matrix_rank(design)
    assert rank == p - 1
    got = ours.compute_contrast("audio - video", output_type="all")
    expected = reference.compute_contrast("audio - video", output_type="all")
    b = expected["effect_size"].get_fdata()
    np.testing.assert_allclose(got["effect_size"].get_fdata(), b, rtol=1e-9,
                               atol=1e-12 * np.abs(b).max())
    v = expected["effect_variance"].get_fdata() * (n - p) / (n - rank)
    np.testing.assert_allclose(got["effect_variance"].get_fdata(), v, rtol=1e-9,
                               atol=1e-12 * np.abs(v).max())
