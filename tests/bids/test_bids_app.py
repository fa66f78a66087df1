"""The ``glmflow`` BIDS app end to end on fMRIPrep-style trees around the real data.

Each command run is compared with nilearn's FirstLevelModel fitted on the same files
(|Δz| < 1e-9) and with the embeddable workflow run directly.
"""

import contextlib
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import FirstLevelModel
from nilearn.interfaces.fmriprep import load_confounds

from glmflow.cli.bids_app import build_parser, main, parse_plugin_args

from .conftest import SPACE

pytestmark = pytest.mark.slow

PREFIX = f"sub-01_task-auditory_space-{SPACE}"
STATS = ("effect", "variance", "t", "z", "p")


@pytest.fixture(scope="module")
def auditory_run(auditory_tree, tmp_path_factory):
    """The command with its defaults (model maps and report included), on Linear."""
    out = tmp_path_factory.mktemp("auditory_out") / "glmflow"
    work = tmp_path_factory.mktemp("auditory_work")
    argv = [str(auditory_tree["raw"]), str(out), "participant",
            "--derivatives", str(auditory_tree["deriv"]), "--plugin", "Linear", "-w", str(work)]
    return out, argv


@pytest.fixture(scope="module")
def auditory_result(auditory_run):
    out, argv = auditory_run
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    return out, code, buffer.getvalue()


@pytest.fixture(scope="module")
def auditory_nilearn(auditory_tree):
    run = auditory_tree["runs"][0]
    confounds, sample_mask = load_confounds(str(run["bold"]), strategy=("motion", "wm_csf"))
    events = pd.read_csv(run["events"], sep="\t")
    model = FirstLevelModel(t_r=7.0, mask_img=str(run["mask"]), noise_model="ar1",
                            hrf_model="glover", drift_model="cosine", high_pass=0.01)
    model.fit(str(run["bold"]), events=events, confounds=confounds, sample_masks=sample_mask)
    return model, model.compute_contrast("listening", output_type="all"), sample_mask


def test_outputs_are_named_like_nilearn(auditory_result):
    out, code, _ = auditory_result
    assert code == 0
    func = out / "sub-01" / "func"
    expected = {f"{PREFIX}_contrast-listening_stat-{s}_statmap.{e}" for s in STATS
                for e in ("nii.gz", "json")}
    expected |= {f"{PREFIX}_contrast-listening_clusters.tsv",
                 f"{PREFIX}_contrast-listening_clusters.json",
                 f"{PREFIX}_design.tsv", f"{PREFIX}_design.json", f"{PREFIX}_mask.nii.gz",
                 f"{PREFIX}_stat-rsquared_statmap.nii.gz", f"{PREFIX}_stat-errorts_statmap.nii.gz",
                 f"{PREFIX}_report.html"}
    assert {p.name for p in func.iterdir()} == expected
    # atomic writes leave no temporary file behind
    assert not [p for p in out.rglob(".*")]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "glmflow"
    assert "participant" in description["GeneratedBy"][0]["CommandLine"]
    urls = [d["URL"] for d in description["SourceDatasets"]]
    assert urls[0].endswith("/raw") and urls[1].endswith("/fmriprep")


def test_values_equal_nilearn(auditory_result, auditory_nilearn):
    out, _, _ = auditory_result
    model, maps, _ = auditory_nilearn
    func = out / "sub-01" / "func"
    for key, stat in [("z_score", "z"), ("stat", "t"), ("effect_size", "effect"),
                      ("effect_variance", "variance"), ("p_value", "p")]:
        ours = nib.load(func / f"{PREFIX}_contrast-listening_stat-{stat}_statmap.nii.gz")
        diff = np.abs(ours.get_fdata() - maps[key].get_fdata()).max()
        limit = 1e-9 * max(1.0, np.abs(maps[key].get_fdata()).max())
        assert diff < limit, (stat, diff)
    z = nib.load(func / f"{PREFIX}_contrast-listening_stat-z_statmap.nii.gz").get_fdata()
    # the auditory cortex peak of the data README (left STG, z 9.34 without confounds)
    assert z.max() > 7.5


def test_design_and_sidecars(auditory_result, auditory_nilearn):
    out, _, _ = auditory_result
    model, _, sample_mask = auditory_nilearn
    func = out / "sub-01" / "func"
    design = pd.read_csv(func / f"{PREFIX}_design.tsv", sep="\t")
    assert len(design) == 84  # every volume; the excluded ones are listed in the sidecar
    np.testing.assert_allclose(design.iloc[sample_mask].to_numpy(),
                               model.design_matrices_[0].to_numpy(), rtol=0, atol=1e-12)
    assert list(design.columns) == list(model.design_matrices_[0].columns)
    design_meta = json.loads((func / f"{PREFIX}_design.json").read_text())
    assert design_meta["RepetitionTime"] == 7.0
    assert design_meta["VolumesExcluded"] == [0]  # fMRIPrep's non-steady-state volume
    assert len(design_meta["FrameTimes"]) == 84

    meta = json.loads((func / f"{PREFIX}_contrast-listening_stat-t_statmap.json").read_text())
    assert meta["StatisticType"] == "t"
    rank = np.linalg.matrix_rank(model.design_matrices_[0].to_numpy())
    assert meta["DegreesOfFreedom"] == len(sample_mask) - rank
    assert meta["Contrast"]["Name"] == "listening"
    assert meta["Contrast"]["ConditionList"] == ["listening"]
    row = meta["Contrast"]["ContrastMatrix"][0]
    assert row[design.columns.get_loc("listening")] == 1 and sum(map(abs, row)) == 1
    assert meta["SliceTimeRef"] == 0.0
    assert "no StartTime or SliceTiming" in meta["SliceTimeRefSource"]
    assert meta["Confounds"]["Strategy"]["strategy"] == ["motion", "wm_csf"]
    assert len(meta["Confounds"]["Columns"]) == 26
    assert meta["Model"]["Name"] == "default"
    assert meta["Software"]["nilearn"] == "0.14.1"
    assert meta["NoiseModel"] == "ar1"
    assert meta["Sources"]["bold"].endswith("desc-preproc_bold.nii.gz")


def test_model_maps_and_report(auditory_result):
    out, _, _ = auditory_result
    func = out / "sub-01" / "func"
    mask = nib.load(func / f"{PREFIX}_mask.nii.gz").get_fdata() > 0
    r2 = nib.load(func / f"{PREFIX}_stat-rsquared_statmap.nii.gz").get_fdata()[mask]
    assert 0 <= r2.min() and r2.max() <= 1 and r2.mean() > 0.05
    errorts = nib.load(func / f"{PREFIX}_stat-errorts_statmap.nii.gz")
    assert errorts.shape[3] == 83  # the kept volumes
    assert "listening" in (func / f"{PREFIX}_report.html").read_text()
    clusters = pd.read_csv(func / f"{PREFIX}_contrast-listening_clusters.tsv", sep="\t")
    assert clusters["Peak Stat"].max() > 7.5


def test_progress_and_summary(auditory_result):
    _, _, stdout = auditory_result
    assert "1 run(s) of 1 participant(s) (sub-01)" in stdout
    assert "start sub-01_task-auditory: fit" in stdout
    assert "0 left" in stdout
    assert "glmflow: done in" in stdout
    assert "listening: z from" in stdout


def test_rerun_is_cached_and_refuses_to_overwrite(auditory_result, auditory_run, capsys):
    out, argv = auditory_run
    # the same command again: everything from the cache, identical files accepted
    assert main([*argv, "-q"]) == 0
    # a different analysis into the same folder is refused without --overwrite
    code = main([*argv, "-q", *SCRUB_ARGS])
    assert code == 1
    assert "refusing to overwrite" in capsys.readouterr().err


SCRUB_ARGS = ["--confounds", "motion,scrub,scrub=0,fd_threshold=0.5", "--no-report",
              "--no-model-maps"]


def test_scrubbing_flows_into_the_fit(auditory_tree, auditory_run, tmp_path):
    """Volumes with high framewise displacement are censored exactly as nilearn does."""
    _, argv = auditory_run
    out = tmp_path / "scrubbed"
    argv = [argv[0], str(out), *argv[2:]]  # same work folder: the fit may be cached
    assert main([*argv, "-q", *SCRUB_ARGS]) == 0
    run = auditory_tree["runs"][0]
    confounds, sample_mask = load_confounds(str(run["bold"]), strategy=("motion", "scrub"),
                                            scrub=0, fd_threshold=0.5)
    assert sorted(set(range(84)) - set(sample_mask)) == [0, 30, 31]
    events = pd.read_csv(run["events"], sep="\t")
    reference = FirstLevelModel(t_r=7.0, mask_img=str(run["mask"]), noise_model="ar1")
    reference.fit(str(run["bold"]), events=events, confounds=confounds,
                  sample_masks=sample_mask)
    ref_z = reference.compute_contrast("listening").get_fdata()
    func = out / "sub-01" / "func"
    z = nib.load(func / f"{PREFIX}_contrast-listening_stat-z_statmap.nii.gz").get_fdata()
    assert np.abs(z - ref_z).max() < 1e-9
    meta = json.loads((func / f"{PREFIX}_contrast-listening_stat-z_statmap.json").read_text())
    assert meta["VolumesExcluded"] == [0, 30, 31]
    assert meta["DegreesOfFreedom"] == 81 - np.linalg.matrix_rank(
        reference.design_matrices_[0].to_numpy())


def test_model_on_localizer_equals_nilearn(localizer_tree, tmp_path):
    """A BIDS Stats Model (Factor, Convolve, X with confounds, t and F contrasts), StartTime."""
    model = {
        "Name": "localizer", "BIDSModelVersion": "1.0.0", "Input": {"task": ["localizer"]},
        "Nodes": [{
            "Level": "Run", "Name": "run",
            "Transformations": {"Transformer": "pybids-transforms-v1", "Instructions": [
                {"Name": "Factor", "Input": ["trial_type"]},
                {"Name": "Convolve", "Input": ["trial_type.*"], "Model": "spm"},
            ]},
            "Model": {"Type": "glm", "X": ["trial_type.*", "trans_?", "rot_?", 1],
                      "Options": {"HighPassFilterCutoffHz": 0.008}},
            "Contrasts": [
                {"Name": "audio_vs_video",
                 "ConditionList": ["trial_type.calculaudio", "trial_type.phraseaudio",
                                   "trial_type.calculvideo", "trial_type.phrasevideo"],
                 "Weights": [1, 1, -1, -1], "Test": "t"},
                {"Name": "checkerboards",
                 "ConditionList": ["trial_type.damier_H", "trial_type.damier_V"],
                 "Weights": [[1, 0], [0, 1]], "Test": "F"},
            ],
        }],
    }
    model_file = tmp_path / "model.json"
    model_file.write_text(json.dumps(model))
    out = tmp_path / "out"
    code = main([str(localizer_tree["raw"]), str(out), "participant",
                 "--derivatives", str(localizer_tree["deriv"]), "--participant-label", "sub-02",
                 "--model", str(model_file), "--confounds", "scrub,scrub=0,fd_threshold=0.5",
                 "--no-report", "--no-model-maps", "--plugin", "MultiProc",
                 "--plugin-args", "n_procs=2", "-q", "-w", str(tmp_path / "work")])
    assert code == 0
    assert not (out / "sub-01").exists()
    run = next(r for r in localizer_tree["runs"] if r["sub"] == "02")

    # nilearn on the same inputs
    events = pd.read_csv(run["events"], sep="\t")
    events = events.assign(trial_type="trial_type_" + events["trial_type"])
    table = pd.read_csv(run["confounds"], sep="\t", na_values="n/a")
    motion = table[["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]].copy()
    motion.iloc[0] = motion.iloc[0].fillna(motion.iloc[1])
    _, sample_mask = load_confounds(str(run["bold"]), strategy=("scrub",), scrub=0,
                                    fd_threshold=0.5)
    assert sorted(set(range(128)) - set(sample_mask)) == [0, 1]  # the non-steady-state volumes
    reference = FirstLevelModel(t_r=2.4, slice_time_ref=0.5, hrf_model="spm",
                                drift_model="cosine", high_pass=0.008, noise_model="ar1",
                                mask_img=str(run["mask"]))
    reference.fit(str(run["bold"]), events=events, confounds=motion, sample_masks=sample_mask)
    design = reference.design_matrices_[0]
    prefix = f"sub-02_task-localizer_space-{SPACE}"
    func = out / "sub-02" / "func"
    ours_design = pd.read_csv(func / f"{prefix}_design.tsv", sep="\t")
    assert sorted(ours_design.columns) == sorted(design.columns)

    audio = ("trial_type_calculaudio + trial_type_phraseaudio - trial_type_calculvideo"
             " - trial_type_phrasevideo")
    ref_t = reference.compute_contrast(audio, output_type="z_score").get_fdata()
    z = nib.load(func / f"{prefix}_contrast-audioVsVideo_stat-z_statmap.nii.gz").get_fdata()
    assert np.abs(z - ref_t).max() < 1e-9
    assert z.max() > 6  # bilateral temporal cortex

    f_matrix = np.zeros((2, design.shape[1]))
    f_matrix[0, design.columns.get_loc("trial_type_damier_H")] = 1
    f_matrix[1, design.columns.get_loc("trial_type_damier_V")] = 1
    ref_f = reference.compute_contrast(f_matrix, stat_type="F", output_type="all")
    ours_f = nib.load(func / f"{prefix}_contrast-checkerboards_stat-F_statmap.nii.gz")
    assert np.abs(ours_f.get_fdata() - ref_f["stat"].get_fdata()).max() < 1e-9 * max(
        1, ref_f["stat"].get_fdata().max())
    ours_fz = nib.load(func / f"{prefix}_contrast-checkerboards_stat-z_statmap.nii.gz")
    assert np.abs(ours_fz.get_fdata() - ref_f["z_score"].get_fdata()).max() < 1e-9

    meta = json.loads((func / f"{prefix}_contrast-checkerboards_stat-F_statmap.json").read_text())
    assert meta["SliceTimeRef"] == 0.5 and "StartTime" in meta["SliceTimeRefSource"]
    assert meta["Contrast"]["Test"] == "F"
    assert meta["Contrast"]["Weights"] == [[1.0, 0.0], [0.0, 1.0]]
    assert meta["HRF"] == "spm"
    assert meta["Model"]["HighPassFilterCutoffHz"] == 0.008
    assert meta["VolumesExcluded"] == [0, 1]
    assert meta["Model"]["ModelFile"] == str(model_file.resolve())


def test_empty_query_says_what_was_searched(auditory_tree, tmp_path, capsys):
    code = main([str(auditory_tree["raw"]), str(tmp_path / "out"), "participant",
                 "--derivatives", str(auditory_tree["deriv"]), "--participant-label", "07",
                 "--task", "rest"])
    assert code == 1
    err = capsys.readouterr().err
    assert "sub=07" in err and "task=rest" in err and SPACE in err
    assert "Found instead: space-MNI152NLin2009cAsym task-auditory" in err


def test_bad_options_are_reported(auditory_tree, tmp_path, capsys):
    base = [str(auditory_tree["raw"]), str(tmp_path / "out"), "participant",
            "--derivatives", str(auditory_tree["deriv"])]
    assert main([*base, "--confounds", "motoin"]) == 1
    assert "unknown strategy 'motoin'" in capsys.readouterr().err
    assert main([*base, "--slice-time-ref", "2"]) == 1
    assert "--slice-time-ref" in capsys.readouterr().err
    (tmp_path / "m.json").write_text("{}")
    assert main([*base, "--model", str(tmp_path / "m.json")]) == 1
    assert "Nodes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base[:2], "group", *base[3:]])


def test_help_explains_every_option():
    parser = build_parser()
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, action.dest
        for flag in action.option_strings:
            assert flag in text
    for word in ("scrubbing", "framewise", "non_steady_state", "BIDS inheritance",
                 "StartTime", "save_glm_to_bids"):
        assert word in text


def test_parse_plugin_args():
    assert parse_plugin_args(["n_procs=2", "sbatch_args=-p short"]) == {
        "n_procs": 2, "sbatch_args": "-p short"}
    assert parse_plugin_args(['{"n_procs": 3}']) == {"n_procs": 3}
    assert parse_plugin_args(None) == {}


def _readme():
    return Path(__file__).resolve().parents[2] / "README.md"


MARKER = "<!-- glmflow-embedding-example -->"


def _embedding_code():
    """The Python block after the marker in the README: the example users copy."""
    text = _readme().read_text()
    assert MARKER in text, "README.md lost its embedding example"
    return text.split(MARKER, 1)[1].split("```python", 1)[1].split("```", 1)[0]


def test_embedding_example_equals_the_command(auditory_tree, auditory_result, tmp_path):
    """The README example (MultiProc) writes the same files and numbers as the command."""
    cli_out, code, _ = auditory_result
    assert code == 0
    code_text = _embedding_code()
    output_dir = tmp_path / "embedded"
    namespace = {"bids_dir": str(auditory_tree["raw"]), "fmriprep_dir": str(auditory_tree["deriv"]),
                 "output_dir": str(output_dir), "work_dir": str(tmp_path / "work")}
    exec(compile(code_text, "embedding-example", "exec"), namespace)
    ours = sorted(p.relative_to(output_dir) for p in output_dir.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(cli_out) for p in cli_out.rglob("*") if p.is_file())
    assert ours == theirs
    for rel in ours:
        if rel.name.endswith(".nii.gz"):
            a = np.asanyarray(nib.load(output_dir / rel).dataobj)
            b = np.asanyarray(nib.load(cli_out / rel).dataobj)
            # Linear (threaded BLAS) vs MultiProc (one BLAS thread per worker): rounding only
            scale = max(1.0, float(np.abs(b).max()))
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * scale, err_msg=str(rel))
        elif rel.suffix == ".tsv":
            pd.testing.assert_frame_equal(pd.read_csv(output_dir / rel, sep="\t"),
                                          pd.read_csv(cli_out / rel, sep="\t"),
                                          check_exact=False, rtol=1e-9)
        elif rel.suffix == ".json" and "statmap" in rel.name:
            a, b = (json.loads((root / rel).read_text()) for root in (output_dir, cli_out))
            for key in ("Contrast", "DegreesOfFreedom", "RepetitionTime", "SliceTimeRef",
                        "Confounds", "Model", "VolumesExcluded", "HRF"):
                assert a[key] == b[key], (rel, key)
