"""The checks accept the real datasets of ``../shared/data`` as they are (no false alarm),
and the cleaned events give nilearn's design matrix bit for bit."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from nilearn.glm.first_level import make_first_level_design_matrix

from glmflow.core import validation as V

DATA = Path(
    os.environ.get(
        "GLMFLOW_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    )
)
RUNS = sorted(DATA.glob("*/sub-*/func/*_bold.nii.gz")) if DATA.is_dir() else []


@pytest.mark.skipif(not RUNS, reason=f"shared data not found at {DATA} (GLMFLOW_SHARED_DATA)")
@pytest.mark.parametrize("bold", RUNS, ids=[run.name for run in RUNS])
def test_real_runs_pass_without_warnings(bold):
    events_file = Path(str(bold).replace("_bold.nii.gz", "_events.tsv"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (img,) = V.check_bold_images([bold])
        n_scans = img.shape[3]
        t_r = V.check_t_r(round(float(img.header.get_zooms()[3]), 4))
        params = V.check_model_parameters(t_r=t_r, hrf_model="spm", n_scans=n_scans)
        events = V.check_events(events_file, n_scans=n_scans, t_r=t_r)
        for mask in bold.parent.glob("*mask.nii.gz"):
            V.check_mask(mask, bold)
    frame_times = np.arange(n_scans) * t_r
    raw = V._read_table(events_file, what="events", error=ValueError)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn's own notes (null durations)
        ours = make_first_level_design_matrix(frame_times, events, hrf_model="spm")
        theirs = make_first_level_design_matrix(frame_times, raw, hrf_model="spm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        design = V.check_design(ours, n_scans=n_scans)
    np.testing.assert_array_equal(design.to_numpy(), theirs.to_numpy())
    assert list(design.columns) == list(theirs.columns)
    assert params["noise_model"] == "ar1"
    assert V.design_rank(design) == design.shape[1]
