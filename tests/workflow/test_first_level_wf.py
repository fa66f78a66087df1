"""init_first_level_wf end to end: parity with nilearn, plugins, caching, early errors."""

import filecmp
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import assert_maps_equal
from nilearn.glm.first_level import FirstLevelModel

from glmflow.core.errors import ConfoundsError, ContrastError, EventsError, ImageError
from glmflow.execution import run_workflow
from glmflow.workflows import init_first_level_wf
from glmflow.workflows.outputs import collect_outputs

CONTRASTS = {"a - b": "a - b", "effects": {"def": [[1, 0], [0, 1]], "stat_type": "F"}}
FIELDS = {"effect_files": "effect_size", "variance_files": "effect_variance",
          "stat_files": "stat", "z_files": "z_score", "p_files": "p_value"}


def run(study, base_dir, *, plugin="Linear", contrasts=CONTRASTS, confounds=None, **kw):
    kw.setdefault("report", False)  # the report has its own tests (tests/report)
    wf = init_first_level_wf(t_r=study["t_r"], contrasts=contrasts, **kw)
    wf.inputs.inputnode.bold_files = study["bold"]
    wf.inputs.inputnode.events_files = study["events"]
    if confounds is not None:
        wf.inputs.inputnode.confounds_files = confounds
    plugin_args = {"n_procs": 2} if plugin == "MultiProc" else None
    graph = run_workflow(wf, plugin=plugin, plugin_args=plugin_args, base_dir=base_dir)
    return collect_outputs(wf, graph)


@pytest.fixture(scope="module")
def study3(tmp_path_factory):
    from conftest import simulate_study

    folder = tmp_path_factory.mktemp("three_runs")
    bold, events = simulate_study(folder / "data", n_runs=3, seed=7)
    return {"bold": bold, "events": events, "t_r": 2.0, "dir": folder}


@pytest.mark.parametrize("n_runs", [1, 3])
@pytest.mark.parametrize("noise_model", ["ols", "ar1", "ar2"])
def test_workflow_matches_nilearn(study3, noise_model, n_runs, tmp_path):
    study = {**study3, "bold": study3["bold"][:n_runs], "events": study3["events"][:n_runs]}
    out = run(study, tmp_path / "work", noise_model=noise_model, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FirstLevelModel(t_r=study["t_r"], noise_model=noise_model, random_state=0).fit(
            study["bold"], events=study["events"])
    assert out["contrast_names"] == list(CONTRASTS)
    assert out["stat_types"] == ["t", "F"]
    for index, (definition, stat_type) in enumerate([("a - b", None), (np.eye(2), "F")]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = ref.compute_contrast(definition, stat_type=stat_type, output_type="all")
        for field, key in FIELDS.items():
            ours = nib.load(out[field][index]).get_fdata()
            assert_maps_equal(ours, theirs[key].get_fdata(), what=f"{field}[{index}]")
    for path, design in zip(out["design_files"], ref.design_matrices_, strict=True):
        ours = pd.read_csv(path, sep="\t", index_col=0)
        assert list(ours.columns) == list(design.columns)
        np.testing.assert_allclose(ours.to_numpy(), design.to_numpy(), rtol=0, atol=1e-15)


def test_linear_and_multiproc_give_identical_files(study):
    linear = run(study, study["dir"] / "linear")
    multi = run(study, study["dir"] / "multi", plugin="MultiProc")
    for field in ("design_files", "model_files", *FIELDS):
        for a, b in zip(linear[field], multi[field], strict=True):
            assert filecmp.cmp(a, b, shallow=False), f"{field}: {a} != {b}"


def _mtimes(paths):
    return [os.stat(p).st_mtime_ns for p in paths]


def test_rerun_uses_cache_and_recomputes_only_what_changed(study):
    base = study["dir"] / "cache"
    first = run(study, base)
    design_t, model_t, z_t = (_mtimes(first["design_files"]), _mtimes(first["model_files"]),
                              _mtimes(first["z_files"]))
    z_ar1 = nib.load(first["z_files"][0]).get_fdata()
    second = run(study, base)
    assert _mtimes(second["model_files"]) == model_t  # nothing recomputed
    assert _mtimes(second["z_files"]) == z_t
    third = run(study, base, noise_model="ols")  # only the fit (and contrasts) depend on it
    assert _mtimes(third["design_files"]) == design_t
    assert _mtimes(third["model_files"]) != model_t
    z_ols = nib.load(third["z_files"][0]).get_fdata()
    assert np.abs(z_ar1 - z_ols).max() > 1e-3  # really refitted


def test_changed_input_file_content_is_not_served_from_cache(study):
    base = study["dir"] / "content"
    first = run(study, base)
    z_before = nib.load(first["z_files"][0]).get_fdata()
    events = pd.read_csv(study["events"][0], sep="\t")
    events.loc[0, "onset"] += 4.0  # same path, new content
    events.to_csv(study["events"][0], sep="\t", index=False)
    second = run(study, base)
    assert np.abs(nib.load(second["z_files"][0]).get_fdata() - z_before).max() > 1e-6


def _failure(study, tmp_path, **kw):
    from glmflow.core.run_errors import WorkflowError

    with pytest.raises(WorkflowError) as info:
        run(study, tmp_path / "fail", **kw)
    text = str(info.value)
    # failed before any fit ran
    assert not list((tmp_path / "fail").rglob("model.npz"))
    return text


def test_missing_events_column_fails_early(study, tmp_path):
    bad = tmp_path / "bad_events.tsv"
    pd.read_csv(study["events"][0], sep="\t").drop(columns="onset").to_csv(bad, sep="\t",
                                                                          index=False)
    study = {**study, "events": [str(bad), study["events"][1]]}
    text = _failure(study, tmp_path)
    assert "onset" in text and "bad_events.tsv" in text
    assert "inputs: " in text and "events_file=" in text  # what the failing node was given


def test_confounds_with_wrong_rows_fail_early(study, tmp_path):
    paths = []
    for n in (79, 80):
        path = tmp_path / f"conf{n}.tsv"
        pd.DataFrame({"motion": np.arange(n, dtype=float)}).to_csv(path, sep="\t", index=False)
        paths.append(str(path))
    text = _failure(study, tmp_path, confounds=paths)
    assert "79 rows" in text and "80 scans" in text


def test_confounds_with_nan_fail_early(study, tmp_path):
    paths = []
    for run_index in range(2):
        path = tmp_path / f"conf_nan{run_index}.tsv"
        values = np.random.default_rng(run_index).standard_normal(80)
        values[0] = np.nan  # leading n/a (fMRIPrep derivatives): filled, documented rule
        values[40] = np.nan  # a gap in the middle: an error
        pd.DataFrame({"trans_x_derivative1": values}).to_csv(path, sep="\t", index=False,
                                                             na_rep="n/a")
        paths.append(str(path))
    text = _failure(study, tmp_path, confounds=paths)
    assert "trans_x_derivative1" in text and "n/a" in text and "40" in text


def test_unknown_contrast_column_fails_before_fitting(study, tmp_path):
    text = _failure(study, tmp_path, contrasts={"oops": "a - c"})
    assert "'c'" in text or "c" in text.split("token")[-1]
    assert "a" in text and "b" in text  # the available columns are listed


def test_3d_image_fails_early(study, tmp_path):
    img = nib.load(study["bold"][0])
    path = tmp_path / "vol3d.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[..., 0], img.affine), path)
    study = {**study, "bold": [str(path), study["bold"][1]]}
    text = _failure(study, tmp_path)
    assert "vol3d.nii.gz" in text and "4D" in text


def test_error_classes_in_core():
    from glmflow.core.design import make_design_matrix

    with pytest.raises(ConfoundsError, match="rows"):
        make_design_matrix(10, t_r=2.0, confounds=np.zeros((9, 1)))
    with pytest.raises(ContrastError):
        from glmflow.core.contrasts import contrast_weights
        contrast_weights("x - y", ["a", "b"])
    assert issubclass(ImageError, ValueError) and issubclass(EventsError, ValueError)
    assert Path(__file__).exists()


def test_spm_auditory_workflow_matches_nilearn_and_known_peak(shared_data, tmp_path):
    func = shared_data / "spm_auditory" / "sub-01" / "func"
    study = {"bold": [str(func / "sub-01_task-auditory_bold.nii.gz")],
             "events": [str(func / "sub-01_task-auditory_events.tsv")], "t_r": 7.0}
    contrasts = {"listening": "listening",
                 "listening F": {"def": [[1, 0, 0, 0, 0, 0, 0, 0]], "stat_type": "F"}}
    out = run(study, tmp_path / "work", contrasts=contrasts, hrf_model="spm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FirstLevelModel(t_r=7.0, hrf_model="spm").fit(study["bold"],
                                                             events=study["events"])
        theirs = [ref.compute_contrast("listening", output_type="all"),
                  ref.compute_contrast(np.eye(1, 8), stat_type="F", output_type="all")]
    for index in range(2):
        for field, key in FIELDS.items():
            ours = nib.load(out[field][index]).get_fdata()
            assert_maps_equal(ours, theirs[index][key].get_fdata(), what=f"{field}[{index}]")
    z = nib.load(out["z_files"][0]).get_fdata()
    # ../shared/data/README.md: peak z 9.342 at voxel (51, 29, 36)
    assert np.unravel_index(np.argmax(z), z.shape) == (51, 29, 36)
    assert z.max() == pytest.approx(9.342, abs=5e-4)


def test_fit_threads_and_chunk_size_change_neither_results_nor_cache(study, tmp_path,
                                                                     monkeypatch):
    """The fit honours ``chunk_mb`` (the spilled run is stored and read in those blocks) and
    the plugin's ``fit_threads``. Threads change no byte of the outputs and are not part
    of the cache key (a rerun with another count is served cached); another chunk size
    only moves the last bits (BLAS kernels depend on the block width)."""
    import glmflow.interfaces.fit as fit_module

    blocks = []
    real_load = fit_module.load_masked_run

    def recording_load(*args, **kwargs):
        blocks.append(kwargs.get("block_size"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(fit_module, "load_masked_run", recording_load)

    def fit_with(work, chunk_mb=None, threads=1):
        wf = init_first_level_wf(t_r=study["t_r"], contrasts=CONTRASTS, report=False)
        wf.inputs.inputnode.bold_files = study["bold"]
        wf.inputs.inputnode.events_files = study["events"]
        if chunk_mb is not None:
            wf.get_node("fit").inputs.chunk_mb = chunk_mb
        graph = run_workflow(wf, base_dir=work, plugin_args={"fit_threads": threads})
        (fit,) = [n for n in graph.nodes() if n.name == "fit"]
        return collect_outputs(wf, graph), fit

    default, _ = fit_with(tmp_path / "a")
    one, _ = fit_with(tmp_path / "b", chunk_mb=0.1)
    three, fit = fit_with(tmp_path / "c", chunk_mb=0.1, threads=3)
    n_runs = len(study["bold"])
    assert len(blocks) == 3 * n_runs
    assert set(blocks[n_runs:]) == {64} and blocks[0] > 64  # 0.1 MB: the 64-voxel floor
    assert fit.n_procs == 3
    for field in ("z_files", "effect_files", "variance_files"):
        for a, b, c in zip(default[field], one[field], three[field], strict=True):
            assert filecmp.cmp(b, c, shallow=False), field
            diff = np.abs(nib.load(a).get_fdata() - nib.load(b).get_fdata()).max()
            assert diff < 1e-9, (field, diff)
    n_loads = len(blocks)
    fit_with(tmp_path / "c", chunk_mb=0.1, threads=1)  # rerun: cached despite 1 thread
    assert len(blocks) == n_loads
