"""One run's design, sample mask and provenance, checked against nilearn's design matrix."""

import numpy as np
import pandas as pd
from nilearn.glm.first_level import make_first_level_design_matrix
from nilearn.interfaces.fmriprep import load_confounds, load_confounds_strategy

from glmflow.bids.confounds import parse_strategy
from glmflow.bids.layout import collect_runs
from glmflow.bids.run import prepare_run
from glmflow.bids.stats_model import default_model


def _prepare(tree, strategy, sub="01"):
    run = next(r for r in collect_runs(tree["raw"], tree["deriv"]) if r.subject == sub)
    return run, prepare_run(bold_file=run.bold, events_file=run.events,
                            confounds_file=run.confounds, metadata=run.metadata,
                            model=default_model(hrf_model="spm"),
                            confounds_spec=parse_strategy(strategy))


def test_design_with_start_time_equals_nilearn(localizer_tree):
    run, (design, sample_mask, contrasts, provenance) = _prepare(localizer_tree,
                                                                 "motion,motion=basic")
    assert provenance["SliceTimeRef"] == 0.5  # StartTime 1.2 s / TR 2.4 s
    confounds, ref_mask = load_confounds(str(run.bold), strategy=("motion",), motion="basic")
    np.testing.assert_array_equal(sample_mask, ref_mask)  # two non-steady-state volumes
    frame_times = np.arange(125) * 2.4 + 1.2
    expected = make_first_level_design_matrix(
        frame_times, pd.read_csv(run.events, sep="\t"), hrf_model="spm", drift_model="cosine",
        high_pass=0.01, add_regs=confounds.to_numpy(), add_reg_names=list(confounds.columns))
    assert list(design.columns) == list(expected.columns)
    np.testing.assert_allclose(design.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    assert [c["name"] for c in contrasts] == sorted(pd.read_csv(run.events, sep="\t")
                                                    ["trial_type"].unique())
    assert provenance["VolumesExcluded"] == [0, 1]


def test_fmriprep_cosines_replace_the_drift_model(auditory_tree):
    run, (design, _, _, provenance) = _prepare(auditory_tree, "simple")
    confounds, _ = load_confounds_strategy(str(run.bold), denoise_strategy="simple")
    assert not [c for c in design.columns if c.startswith("drift_")]
    assert {c for c in confounds.columns if c.startswith("cosine")} <= set(design.columns)
    assert provenance["DriftModel"] is None
    assert "cosine regressors" in provenance["DriftModelNote"]
