"""The facade's estimator API, validation, execution options and caching."""

from __future__ import annotations

import inspect
import os
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import FirstLevelModel as NilearnModel
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from glmflow import FirstLevelModel
from glmflow.core.errors import GLMFlowError

from . import simulate as sim
from .conftest import assert_same_maps, quiet

NILEARN_PARAMETERS = [
    "t_r", "slice_time_ref", "hrf_model", "drift_model", "high_pass", "drift_order",
    "fir_delays", "min_onset", "mask_img", "target_affine", "target_shape", "smoothing_fwhm",
    "memory", "memory_level", "standardize", "signal_scaling", "noise_model", "verbose",
    "n_jobs", "minimize_memory", "subject_label", "random_state", "reports",
]


@pytest.fixture(scope="module")
def run():
    events = sim.events(40, 60)
    return sim.bold(40, 60, events_df=events), events


@pytest.fixture(scope="module")
def fitted(run):
    img, events = run
    return quiet(FirstLevelModel(t_r=2.0).fit, img, events)


def test_constructor_matches_nilearn_signature():
    ours = inspect.signature(FirstLevelModel.__init__).parameters
    theirs = inspect.signature(NilearnModel.__init__).parameters
    positional = [n for n, p in ours.items() if n != "self" and p.kind == p.POSITIONAL_OR_KEYWORD]
    assert positional == NILEARN_PARAMETERS == [n for n in theirs if n != "self"]
    for name in NILEARN_PARAMETERS:
        assert ours[name].default == theirs[name].default, name
    keyword_only = {n: p.default for n, p in ours.items() if p.kind == p.KEYWORD_ONLY}
    assert keyword_only == {"plugin": "Linear", "plugin_args": None, "base_dir": None}
    fit = inspect.signature(FirstLevelModel.fit).parameters
    assert list(fit) == list(inspect.signature(NilearnModel.fit).parameters)
    contrast = inspect.signature(FirstLevelModel.compute_contrast).parameters
    assert list(contrast) == list(inspect.signature(NilearnModel.compute_contrast).parameters)
    report = inspect.signature(FirstLevelModel.generate_report).parameters
    assert list(report) == list(inspect.signature(NilearnModel.generate_report).parameters)


def test_sklearn_get_set_params_and_clone():
    model = FirstLevelModel(t_r=2.5, noise_model="ols", plugin="MultiProc",
                            plugin_args={"n_procs": 2}, base_dir="/tmp/x")
    params = model.get_params()
    assert set(params) == {*NILEARN_PARAMETERS, "plugin", "plugin_args", "base_dir"}
    assert params["t_r"] == 2.5 and params["plugin"] == "MultiProc"
    assert params["plugin_args"] == {"n_procs": 2} and params["base_dir"] == "/tmp/x"
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    copy.set_params(noise_model="ar2", plugin="Linear", base_dir=None)
    assert copy.noise_model == "ar2" and copy.plugin == "Linear" and copy.base_dir is None
    assert model.noise_model == "ols"  # the original is untouched
    assert "plugin='MultiProc'" in repr(model)


def test_fit_does_not_change_parameters(run):
    img, events = run
    model = FirstLevelModel(t_r=2.0, mask_img=False)
    before = model.get_params()
    quiet(model.fit, img, events)
    assert model.get_params() == before  # nilearn replaces mask_img=False by an image


def test_unfitted_model_raises():
    model = FirstLevelModel(t_r=2.0)
    with pytest.raises(NotFittedError):
        model.compute_contrast("a")
    with pytest.raises(NotFittedError):
        model.mask_img_  # noqa: B018


def test_fitted_attributes(fitted, run):
    img, events = run
    assert fitted.fir_delays_ == [0]
    assert fitted.standardize_ is None
    assert len(fitted.models_) == 1 and len(fitted.labels_) == 1
    assert fitted.n_elements_ == int(fitted.mask_img_.get_fdata().sum()) > 50
    assert fitted.masker_.mask_img_ is fitted.mask_img_ or np.array_equal(
        fitted.masker_.mask_img_.get_fdata(), fitted.mask_img_.get_fdata())
    # the masker is usable as nilearn's
    data = fitted.masker_.transform(img)
    assert data.shape == (60, fitted.n_elements_)
    assert "First Level Model" == str(fitted)
    assert "audio" in fitted.methods_text or "glmflow" in fitted.methods_text
    with pytest.raises(AttributeError, match="minimize_memory"):
        fitted.residuals_  # noqa: B018


def test_fit_twice_resets(run):
    img, events = run
    model = FirstLevelModel(t_r=2.0, noise_model="ols")
    quiet(model.fit, [img, img], [events, events])
    assert len(model.design_matrices_) == 2
    quiet(model.fit, img, events)
    assert len(model.design_matrices_) == 1 and len(model.results_) == 1


# ------------------------------------------------------------------------ validation
def _both_raise(model_kwargs, fit_args, fit_kwargs, match):
    """nilearn and glmflow both refuse the input; glmflow with a ValueError or OSError that
    says what is wrong (nilearn sometimes with an IndexError or TypeError)."""
    with pytest.raises((ValueError, TypeError, OSError, IndexError)):
        quiet(NilearnModel(**model_kwargs).fit, *fit_args, **fit_kwargs)
    with pytest.raises(GLMFlowError, match=match) as info:
        quiet(FirstLevelModel(**model_kwargs).fit, *fit_args, **fit_kwargs)
    assert isinstance(info.value, (ValueError, OSError))
    return info.value


def test_validation_errors_like_nilearn(run, tmp_path):
    img, events = run
    three_d = nib.Nifti1Image(img.get_fdata()[..., 0], img.affine)
    _both_raise({"t_r": 2.0}, (img,), {}, "events or design matrices must be provided")
    _both_raise({}, (img, events), {}, "t_r")
    _both_raise({"t_r": -1.0}, (img, events), {}, "t_r must be a positive")
    _both_raise({"t_r": 2.0, "slice_time_ref": 1.5}, (img, events), {}, "slice_time_ref")
    _both_raise({"t_r": 2.0}, ([img, img], [events]), {}, "len\\(run_imgs\\) 2")
    _both_raise({"t_r": 2.0}, (three_d, events), {}, "4D")
    _both_raise({"t_r": 2.0}, (img, events), {"confounds": np.ones((50, 2))}, "50 rows")
    _both_raise({"t_r": 2.0, "noise_model": "arx"}, (img, events), {}, "noise_model")
    _both_raise({"t_r": 2.0, "signal_scaling": 2}, (img, events), {}, "signal_scaling")
    _both_raise({"t_r": 2.0}, (img, events), {"sample_masks": [np.r_[0:70]]}, "out of range")
    _both_raise({"t_r": 2.0}, (img, str(tmp_path / "missing.tsv")), {}, "does not exist")
    moved = nib.Nifti1Image(img.get_fdata(), img.affine + np.diag([0, 0, 0, 0]) + 5)
    _both_raise({"t_r": 2.0}, ([img, moved], [events, events]), {}, "grid")
    _both_raise({"t_r": 2.0}, (img, events), {"sample_masks": [np.r_[0:30], np.r_[0:30]]},
                "Number of sample_mask")


def test_validation_better_than_nilearn(run, tmp_path):
    img, events = run
    # nilearn repeats scans silently; glmflow refuses duplicated or unsorted indices
    with pytest.raises(ValueError, match="increasing order"):
        quiet(FirstLevelModel(t_r=2.0).fit, img, events, sample_masks=np.r_[0:30, 5, 31:60])
    # a comma-separated .tsv events file
    path = tmp_path / "events.tsv"
    events.to_csv(path, index=False)
    with pytest.raises(ValueError, match="not separated by tabs"):
        quiet(FirstLevelModel(t_r=2.0).fit, img, str(path))
    with pytest.raises(ValueError, match="plugin must be one of"):
        quiet(FirstLevelModel(t_r=2.0, plugin="Condor").fit, img, events)
    with pytest.raises(ValueError, match="random_state must be None or an int"):
        quiet(FirstLevelModel(t_r=2.0, random_state=np.random.RandomState(0)).fit, img,
              events)
    with pytest.raises(ValueError, match="target_shape needs a 4x4 target_affine"):
        quiet(FirstLevelModel(t_r=2.0, target_shape=(5, 5, 5)).fit, img, events)
    with pytest.raises(ValueError, match="must be fitted"):
        from nilearn.maskers import NiftiMasker

        quiet(FirstLevelModel(t_r=2.0, mask_img=NiftiMasker()).fit, img, events)
    with pytest.raises(ValueError, match="detrend=True"):
        masker = NiftiMasker(mask_img=nib.Nifti1Image(sim.brain_mask().astype("uint8"),
                                                       img.affine), detrend=True).fit()
        quiet(FirstLevelModel(t_r=2.0, mask_img=masker).fit, img, events)


def test_design_matrices_warnings_like_nilearn(run):
    img, events = run
    design = quiet(NilearnModel(t_r=2.0).fit, img, events).design_matrices_[0]
    with pytest.warns(UserWarning, match="events will be ignored"):
        FirstLevelModel().fit(img, events=events, design_matrices=design)
    with pytest.warns(UserWarning, match=r"\[hrf_model, t_r\] will be ignored"):
        FirstLevelModel(t_r=2.0, hrf_model="spm").fit(img, design_matrices=[design])
    with pytest.raises(ValueError, match="rows"):
        quiet(FirstLevelModel().fit, img, design_matrices=design.iloc[:50])


def test_contrast_validation(fitted):
    with pytest.raises(ValueError, match="output_type"):
        fitted.compute_contrast("audio", output_type="t_map")
    with pytest.raises(ValueError, match="nope"):
        fitted.compute_contrast("audio - nope")
    with pytest.raises(ValueError, match="2 contrasts given, while there are 1 runs"):
        fitted.compute_contrast(["audio", "video"])
    with pytest.raises(ValueError, match="contrast_def must be"):
        fitted.compute_contrast({"audio": 1})
    with pytest.raises(ValueError, match="t contrast has one row"):
        fitted.compute_contrast(np.eye(2, fitted.design_matrices_[0].shape[1]), stat_type="t")
    with pytest.raises(ValueError, match="stat_type"):
        fitted.compute_contrast("audio", stat_type="z")
    with pytest.raises(ValueError, match="null"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted.compute_contrast(np.zeros(fitted.design_matrices_[0].shape[1]))


def test_plain_list_of_weights_is_one_vector(fitted):
    """nilearn fails on ``[1, 0, -1, ...]`` (each number taken as one run's contrast)."""
    weights = [1, 0, -1] + [0] * (fitted.design_matrices_[0].shape[1] - 3)
    by_list = fitted.compute_contrast(weights, output_type="all")
    by_array = fitted.compute_contrast(np.asarray(weights, float), output_type="all")
    assert_same_maps(by_list, by_array, z_tol=1e-15, rtol=0)


def test_one_contrast_for_several_runs_warns_like_nilearn(run):
    img, events = run
    model = quiet(FirstLevelModel(t_r=2.0, noise_model="ols").fit, [img, img], [events, events])
    with pytest.warns(RuntimeWarning, match="same contrast will be used for all 2 runs"):
        model.compute_contrast("audio")


def test_fixed_effects_of_identical_runs(run):
    """Two identical runs: same effect, half the variance, doubled dof (analytic)."""
    img, events = run
    one = quiet(FirstLevelModel(t_r=2.0, noise_model="ols").fit, img, events)
    two = quiet(FirstLevelModel(t_r=2.0, noise_model="ols").fit, [img, img], [events, events])
    a = one.compute_contrast("audio", output_type="all")
    b = quiet(two.compute_contrast, "audio", output_type="all")
    mask = one.mask_img_.get_fdata() > 0
    np.testing.assert_allclose(b["effect_size"].get_fdata()[mask],
                               a["effect_size"].get_fdata()[mask], rtol=1e-12)
    np.testing.assert_allclose(b["effect_variance"].get_fdata()[mask],
                               a["effect_variance"].get_fdata()[mask] / 2, rtol=1e-12)
    np.testing.assert_allclose(b["stat"].get_fdata()[mask],
                               a["stat"].get_fdata()[mask] * np.sqrt(2), rtol=1e-12)


# ------------------------------------------------------------------- execution options
def test_n_jobs_runs_on_multiproc_with_same_numbers(run, monkeypatch):
    import glmflow.execution as execution

    img, events = run
    seen = {}
    original = execution.run_workflow

    def spy(workflow, **kwargs):
        seen.update(kwargs)
        return original(workflow, **kwargs)

    monkeypatch.setattr(execution, "run_workflow", spy)
    imgs, evs = [img, img], [events, events]
    linear = quiet(FirstLevelModel(t_r=2.0).fit, imgs, evs)
    assert seen["plugin"] == "Linear"
    parallel = quiet(FirstLevelModel(t_r=2.0, n_jobs=2).fit, imgs, evs)
    assert seen["plugin"] == "MultiProc" and seen["plugin_args"]["n_procs"] == 2
    assert_same_maps(quiet(parallel.compute_contrast, "audio - video", output_type="all"),
                     quiet(linear.compute_contrast, "audio - video", output_type="all"),
                     z_tol=1e-15, rtol=0)


def test_n_jobs_mapping():
    def plugin(**kwargs):
        params = FirstLevelModel(t_r=2.0, **kwargs)._check_parameters()
        return params["plugin"], params["plugin_args"]

    assert plugin() == ("Linear", {})
    assert plugin(n_jobs=3) == ("MultiProc", {"n_procs": 3})
    assert plugin(n_jobs=-1) == ("MultiProc", {"n_procs": os.cpu_count()}) or os.cpu_count() == 1
    # plugin_args win over n_jobs; n_jobs is ignored on batch schedulers
    assert plugin(n_jobs=-1, plugin="MultiProc", plugin_args={"n_procs": 1}) == (
        "MultiProc", {"n_procs": 1})
    assert plugin(n_jobs=4, plugin="SLURM", plugin_args={"sbatch_args": "-p debug"}) == (
        "SLURM", {"sbatch_args": "-p debug"})
    with pytest.raises(ValueError, match="n_jobs"):
        plugin(n_jobs=0)


def test_memory_is_a_nipype_cache(run, tmp_path):
    img, events = run
    first = quiet(FirstLevelModel(t_r=2.0, memory=str(tmp_path)).fit, img, events)
    model_file = first.model_files_[0]
    assert os.path.isfile(model_file) and str(tmp_path) in model_file
    stamp = os.stat(model_file).st_mtime_ns
    second = quiet(FirstLevelModel(t_r=2.0, memory=str(tmp_path)).fit, img, events)
    assert second.model_files_ == first.model_files_
    assert os.stat(model_file).st_mtime_ns == stamp  # served from the cache, not refitted
    changed = quiet(FirstLevelModel(t_r=2.0, memory=str(tmp_path), noise_model="ols").fit,
                    img, events)
    assert changed.models_[0].meta["noise_model"] == "ols"
    from joblib import Memory

    by_joblib = quiet(FirstLevelModel(t_r=2.0, memory=Memory(str(tmp_path))).fit, img, events)
    assert by_joblib.model_files_ == first.model_files_


def test_base_dir_keeps_files_and_temporary_dir_is_removed(run, tmp_path):
    img, events = run
    kept = quiet(FirstLevelModel(t_r=2.0, base_dir=tmp_path / "work").fit, img, events)
    assert all(os.path.isfile(f) for f in kept.model_files_)
    assert any((tmp_path / "work" / "inputs").iterdir())
    temporary = quiet(FirstLevelModel(t_r=2.0).fit, img, events)
    assert not any(os.path.exists(f) for f in temporary.model_files_)
    # the fitted model stays usable after its files are gone
    z = temporary.compute_contrast("audio")
    assert np.isfinite(z.get_fdata()).all()


def test_file_backed_images_are_not_copied(run, tmp_path):
    img, events = run
    path = tmp_path / "bold.nii.gz"
    img.to_filename(path)
    loaded = nib.load(path)
    model = quiet(FirstLevelModel(t_r=2.0, base_dir=tmp_path / "work").fit, loaded, events)
    written = [p.name for p in (tmp_path / "work" / "inputs").iterdir()]
    assert not any("bold" in name for name in written), written
    reference = quiet(FirstLevelModel(t_r=2.0).fit, img, events)
    assert_same_maps(model.compute_contrast("audio", output_type="all"),
                     reference.compute_contrast("audio", output_type="all"), z_tol=1e-15,
                     rtol=0)


def test_verbose_levels(run, capsys):
    img, events = run
    quiet(FirstLevelModel(t_r=2.0, verbose=0).fit, img, events)
    out = capsys.readouterr()
    assert "[FirstLevelModel.fit]" not in out.out and "[Node]" not in out.out + out.err
    quiet(FirstLevelModel(t_r=2.0, verbose=1).fit, img, events)
    out = capsys.readouterr().out
    assert "[FirstLevelModel.fit] Fitting 1 run(s) with plugin Linear" in out
    assert "done in" in out


def test_subject_label_and_report_parameters(run):
    img, events = run
    model = quiet(FirstLevelModel(t_r=2.0, subject_label="01", drift_model="polynomial").fit,
                  img, events)
    params = model.report_parameters()
    assert params["subject_label"] == "01" and params["drift_order"] == 1
    assert "high_pass" not in params


def test_generate_report(fitted):
    pytest.importorskip("glmflow.core.report")
    report = fitted.generate_report(contrasts={"audio_vs_video": "audio - video"},
                                    bg_img=None)
    html = report.get_html() if hasattr(report, "get_html") else str(report)
    assert "audio_vs_video" in html or "audio - video" in html


def test_dataframe_events_and_tsv_events_agree(run, tmp_path):
    img, events = run
    path = tmp_path / "events.tsv"
    events.to_csv(path, sep="\t", index=False)
    a = quiet(FirstLevelModel(t_r=2.0, noise_model="ols").fit, img, str(path))
    b = quiet(FirstLevelModel(t_r=2.0, noise_model="ols").fit, img, events)
    pd.testing.assert_frame_equal(a.design_matrices_[0], b.design_matrices_[0])


def test_bins(run):
    """fit(bins=...) as nilearn when the FitGLM node takes it; a clear error otherwise."""
    from glmflow.interfaces import FitGLM

    img, events = run
    if "bins" not in FitGLM().inputs.copyable_trait_names():
        with pytest.raises(ValueError, match="bins=50"):
            quiet(FirstLevelModel(t_r=2.0).fit, img, events, bins=50)
        return
    reference = quiet(NilearnModel(t_r=2.0).fit, img, events, bins=10)
    ours = quiet(FirstLevelModel(t_r=2.0).fit, img, events, bins=10)
    assert len(ours.results_[0]) == len(reference.results_[0]) <= 10
    assert_same_maps(ours.compute_contrast("audio", output_type="all"),
                     reference.compute_contrast("audio", output_type="all"))


def test_fitted_model_pickles(fitted):
    import pickle

    copy = pickle.loads(pickle.dumps(fitted))
    assert_same_maps(copy.compute_contrast("audio - video", output_type="all"),
                     fitted.compute_contrast("audio - video", output_type="all"), z_tol=1e-15,
                     rtol=0)


def test_temporary_folder_cleanup(run, tmp_path, monkeypatch):
    """Input errors leave nothing behind; a failed workflow keeps its folder (crash files)."""
    import tempfile

    img, events = run
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(OSError, match="does not exist"):
        quiet(FirstLevelModel(t_r=2.0, mask_img=str(tmp_path / "no_mask.nii.gz")).fit,
              img, events)
    assert not list(tmp_path.glob("glmflow_*"))
    # a design without residual degrees of freedom is refused before any work
    design = pd.DataFrame(np.random.default_rng(0).normal(size=(60, 60)))
    with pytest.raises(ValueError, match="rank|columns"):
        quiet(FirstLevelModel().fit, img, design_matrices=design)
    assert not list(tmp_path.glob("glmflow_*"))
    # a node that fails inside the workflow: its folder and crash file are kept
    from glmflow.core.run_errors import WorkflowError

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr("glmflow.core.glm.fit_glm", broken)
    monkeypatch.setattr("glmflow.interfaces.fit.fit_glm", broken, raising=False)
    with pytest.raises(WorkflowError, match="simulated failure"):
        quiet(FirstLevelModel(t_r=2.0).fit, img, events)
    kept = list(tmp_path.glob("glmflow_*"))
    assert kept and any(kept[0].rglob("crash-*"))
