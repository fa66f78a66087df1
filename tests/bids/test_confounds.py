"""Confound strategies: the ``--confounds`` grammar and nilearn's selection on fMRIPrep tables."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest
from nilearn.interfaces.fmriprep import load_confounds, load_confounds_strategy

from glmflow.bids.confounds import load_run_confounds, parse_strategy
from glmflow.core.errors import ConfoundsError, ParameterError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("simple", {"preset": "simple"}),
        ("scrubbing,fd_threshold=0.3", {"preset": "scrubbing", "fd_threshold": 0.3}),
        ("none", {"strategy": ()}),
        ("motion,wm_csf", {"strategy": ("motion", "wm_csf")}),
        ("motion,motion=6", {"strategy": ("motion",), "motion": "basic"}),
        ("motion,motion=12,global_signal,global_signal=full",
         {"strategy": ("motion", "global_signal"), "motion": "derivatives",
          "global_signal": "full"}),
        ("motion,scrub,scrub=0,std_dvars_threshold=2",
         {"strategy": ("motion", "scrub"), "scrub": 0, "std_dvars_threshold": 2.0}),
        ("compcor,n_compcor=3", {"preset": "compcor", "n_compcor": 3}),
    ],
)
def test_parse_strategy(text, expected):
    assert parse_strategy(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "empty"), ("moton", "unknown strategy"), ("simple,motion", "preset"),
     ("motion,fd=1", "unknown parameter"), ("scrub,fd_threshold=high", "not a valid value")],
)
def test_parse_strategy_errors(text, match):
    with pytest.raises(ParameterError, match=match):
        parse_strategy(text)


def _nilearn(run, **kwargs):
    return load_confounds(str(run["bold"]), **kwargs)


@pytest.mark.parametrize(
    "text",
    ["motion,wm_csf", "motion,motion=basic", "motion,motion=derivatives,global_signal",
     "motion,wm_csf,scrub,scrub=0", "compcor,n_compcor=2", "scrubbing", "none"],
)
def test_selection_equals_nilearn(auditory_tree, text):
    run = auditory_tree["runs"][0]
    spec = parse_strategy(text)
    confounds, sample_mask = load_run_confounds(run["bold"], run["confounds"], spec)
    kwargs = dict(spec)
    if "preset" in kwargs:
        ref_conf, ref_mask = load_confounds_strategy(str(run["bold"]), kwargs.pop("preset"),
                                                     **kwargs)
    else:
        ref_conf, ref_mask = _nilearn(run, **kwargs)
    if ref_conf is None or ref_conf.shape[1] == 0:
        assert confounds is None
    else:
        pd.testing.assert_frame_equal(confounds, ref_conf)
    np.testing.assert_array_equal(sample_mask, ref_mask)


def test_sample_mask_drops_nonsteady_and_high_motion(auditory_tree):
    run = auditory_tree["runs"][0]
    table = pd.read_csv(run["confounds"], sep="\t", na_values="n/a")
    # the fixture puts a 0.8 mm jump at volumes 30 and 31, and volume 0 is non-steady-state
    high = set(np.flatnonzero(table["framewise_displacement"].to_numpy() > 0.5).tolist())
    assert high == {30, 31}
    _, mask = load_run_confounds(run["bold"], run["confounds"],
                                 parse_strategy("motion,scrub,scrub=0"))
    assert sorted(set(range(len(table))) - set(mask.tolist())) == [0, 30, 31]
    _, mask = load_run_confounds(run["bold"], run["confounds"], parse_strategy("none"))
    assert sorted(set(range(len(table))) - set(mask.tolist())) == [0]
    # scrub=5 (nilearn's default) also removes segments shorter than 5 volumes around them
    _, mask = load_run_confounds(run["bold"], run["confounds"], parse_strategy("motion,scrub"))
    assert {0, 30, 31} <= set(range(len(table))) - set(mask.tolist())


def test_files_with_other_names_are_staged(auditory_tree, tmp_path):
    # e.g. an fMRIPrep node's working folder: names nilearn cannot map to each other
    run = auditory_tree["runs"][0]
    bold = tmp_path / "bold.nii.gz"
    conf = tmp_path / "regressors.tsv"
    os.symlink(run["bold"], bold)
    shutil.copy(run["confounds"], conf)
    spec = parse_strategy("compcor,n_compcor=2")
    with pytest.raises(ConfoundsError, match="CompCor|json|compcor"):
        load_run_confounds(bold, conf, spec)  # no JSON sidecar next to it
    shutil.copy(run["confounds"].with_suffix(".json"), conf.with_suffix(".json"))
    got, _ = load_run_confounds(bold, conf, spec)
    ref, _ = load_run_confounds(run["bold"], run["confounds"], spec)
    pd.testing.assert_frame_equal(got, ref)


def test_missing_column_is_a_confounds_error(auditory_tree, tmp_path):
    run = auditory_tree["runs"][0]
    table = pd.read_csv(run["confounds"], sep="\t").drop(columns=["csf"])
    conf = tmp_path / "sub-01_task-auditory_desc-confounds_timeseries.tsv"
    table.to_csv(conf, sep="\t", index=False)
    with pytest.raises(ConfoundsError, match="csf"):
        load_run_confounds(run["bold"], conf, parse_strategy("motion,wm_csf"))
