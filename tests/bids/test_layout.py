"""BIDS file-name parsing, run discovery in raw + fMRIPrep trees, metadata inheritance."""

import json

import pytest

from glmflow.bids.layout import (
    build_name,
    collect_runs,
    find_associated,
    parse_bids_filename,
    parse_space,
    timing_from_metadata,
)
from glmflow.core.errors import InputFileError, ParameterError

from .conftest import SPACE, make_tree


def test_parse_and_build_roundtrip():
    name = "sub-01_ses-2_task-rest_run-03_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz"
    parsed = parse_bids_filename(f"/x/{name}")
    assert parsed.entities == {"sub": "01", "ses": "2", "task": "rest", "run": "03",
                               "space": "MNI152NLin2009cAsym", "res": "2", "desc": "preproc"}
    assert parsed.suffix == "bold" and parsed.extension == ".nii.gz"
    # canonical order, whatever the dict order
    shuffled = dict(reversed(list(parsed.entities.items())))
    assert build_name(shuffled, "bold", ".nii.gz") == name


@pytest.mark.parametrize("bad", ["bold.nii.gz", "sub-01_task_bold.nii", "sub-01_sub-02_bold.nii",
                                 "sub-0_1_task-a_bold.nii"])
def test_parse_rejects_non_bids(bad):
    with pytest.raises(InputFileError, match="BIDS|repeats"):
        parse_bids_filename(bad)


def test_parse_space():
    assert parse_space("MNI152NLin2009cAsym:res-2") == ("MNI152NLin2009cAsym", "2")
    assert parse_space("T1w") == ("T1w", None)
    with pytest.raises(ParameterError, match="res-"):
        parse_space("MNI:den-91k")


def test_collect_runs_auditory(auditory_tree):
    runs = collect_runs(auditory_tree["raw"], auditory_tree["deriv"], space=SPACE)
    assert len(runs) == 1
    run = runs[0]
    assert run.entities == {"sub": "01", "task": "auditory"}
    assert run.bold.name == f"sub-01_task-auditory_space-{SPACE}_desc-preproc_bold.nii.gz"
    assert run.mask.name == f"sub-01_task-auditory_space-{SPACE}_desc-brain_mask.nii.gz"
    assert run.confounds.name == "sub-01_task-auditory_desc-confounds_timeseries.tsv"
    assert run.events.name == "sub-01_task-auditory_events.tsv"
    # TR inherited from the top-level task-auditory_bold.json
    assert run.metadata["RepetitionTime"] == 7.0
    assert run.metadata["NumberOfVolumesDiscardedByUser"] == 12
    assert run.metadata_files[0].endswith("task-auditory_bold.json")


def test_collect_runs_filters_and_empty_query(localizer_tree):
    raw, deriv = localizer_tree["raw"], localizer_tree["deriv"]
    assert [r.subject for r in collect_runs(raw, deriv)] == ["01", "02"]
    assert [r.subject for r in collect_runs(raw, deriv, participant_label=["sub-02"])] == ["02"]
    with pytest.raises(InputFileError) as info:
        collect_runs(raw, deriv, participant_label="03", task="localizer")
    message = str(info.value)
    assert "sub=03" in message and "task=localizer" in message and SPACE in message
    with pytest.raises(InputFileError, match=r"Found instead: space-MNI152NLin2009cAsym"):
        collect_runs(raw, deriv, space="T1w")


def test_specific_sidecar_overrides_top_level(tmp_path, data_dir):
    raw, deriv, _ = make_tree(tmp_path, data_dir, "spm_auditory")
    (raw / "sub-01" / "func" / "sub-01_task-auditory_bold.json").write_text(
        json.dumps({"RepetitionTime": 3.5, "SliceTiming": [0.0, 1.0, 2.0, 3.0]})
    )
    run = collect_runs(raw, deriv)[0]
    assert run.metadata["RepetitionTime"] == 3.5
    t_r, ref, note = timing_from_metadata(run.metadata)
    assert (t_r, ref) == (3.5, pytest.approx(1.5 / 3.5))
    assert "SliceTiming" in note
    found = find_associated(raw, run.entities, "bold", ".json", start=run.events.parent)
    assert [p.name for p in found] == ["task-auditory_bold.json", "sub-01_task-auditory_bold.json"]


def test_missing_mask_and_events_are_named(tmp_path, data_dir):
    raw, deriv, runs = make_tree(tmp_path, data_dir, "spm_auditory")
    runs[0]["events"].unlink()
    with pytest.raises(InputFileError, match="No events file.*sub-01_task-auditory_events.tsv"):
        collect_runs(raw, deriv)
    runs[0]["mask"].unlink()
    with pytest.raises(InputFileError, match="desc-brain_mask"):
        collect_runs(raw, deriv)


def test_timing_rules():
    assert timing_from_metadata({"RepetitionTime": 2.0})[:2] == (2.0, 0.0)
    t_r, ref, note = timing_from_metadata({"RepetitionTime": 2.0, "StartTime": 0.5,
                                           "SliceTiming": [0, 1.5]})
    assert ref == 0.25 and "StartTime" in note
    assert timing_from_metadata({"RepetitionTime": 2.0, "SliceTiming": [0, 1.5],
                                 "SliceTimingCorrected": False})[1] == 0.0
    assert timing_from_metadata({"RepetitionTime": 2.0}, slice_time_ref=0.5)[1] == 0.5
    with pytest.raises(InputFileError, match="RepetitionTime"):
        timing_from_metadata({})
    with pytest.raises(InputFileError, match="StartTime"):
        timing_from_metadata({"RepetitionTime": 2.0, "StartTime": 2.5})


def _touch(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_sessions_runs_and_resolutions(tmp_path):
    """Names only (no image is read): sessions, run-1 vs run-01, res- ambiguity, legacy names."""
    raw, deriv = tmp_path / "raw", tmp_path / "deriv"
    _touch(raw / "task-nback_bold.json", json.dumps({"RepetitionTime": 2.0}))
    _touch(raw / "sub-01" / "sub-01_task-nback_bold.json", json.dumps({"SliceTiming": [0, 1]}))
    for ses in ("1", "2"):
        for run in ("1", "2"):
            stem = f"sub-01_ses-{ses}_task-nback_run-{run}"
            func = raw / "sub-01" / f"ses-{ses}" / "func"
            _touch(func / f"{stem}_events.tsv", "onset\tduration\n")
            out = deriv / "sub-01" / f"ses-{ses}" / "func"
            for res in ("1", "2"):
                prefix = f"sub-01_ses-{ses}_task-nback_run-{run}_space-MNI_res-{res}"
                _touch(out / f"{prefix}_desc-preproc_bold.nii.gz")
                _touch(out / f"{prefix}_desc-brain_mask.nii.gz")
            _touch(out / f"{stem}_desc-confounds_regressors.tsv")  # fMRIPrep < 20.2 name
    with pytest.raises(InputFileError, match="Several resolutions.*MNI:res-<label>"):
        collect_runs(raw, deriv, space="MNI")
    runs = collect_runs(raw, deriv, space="MNI:res-2", session="ses-2", run="01")
    assert len(runs) == 1
    run = runs[0]
    assert run.entities == {"sub": "01", "ses": "2", "task": "nback", "run": "1"}
    assert run.res == "2" and run.space == "MNI"
    assert run.confounds.name.endswith("_desc-confounds_regressors.tsv")
    assert run.label == "sub-01_ses-2_task-nback_run-1"
    # subject-level sidecar (SliceTiming) merged over the top-level one (RepetitionTime)
    assert run.metadata == {"RepetitionTime": 2.0, "SliceTiming": [0, 1]}
    assert len(collect_runs(raw, deriv, space="MNI:res-1")) == 4


def test_bids_package_does_not_import_nipype():
    """Like glmflow.core: the BIDS logic is usable (and fast to import) without nipype."""
    import subprocess
    import sys

    code = ("import sys, glmflow.bids.layout, glmflow.bids.stats_model, glmflow.bids.confounds,"
            " glmflow.bids.run, glmflow.bids.outputs;"
            " print(sorted(m for m in sys.modules if m.split('.')[0] == 'nipype'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
