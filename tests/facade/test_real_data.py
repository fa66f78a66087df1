"""The facade on the real validation data in ../shared/data, against nilearn and the
README's known peaks."""

from __future__ import annotations

import numpy as np
import pytest
from nilearn.glm.first_level import FirstLevelModel as NilearnModel

from glmflow import FirstLevelModel

from .conftest import assert_same_maps, quiet


def test_haxby_twelve_runs_fixed_effects(data_dir):
    """12 runs, given mask, 'face - house' fixed effects: README peak z = -7.004."""
    func = data_dir / "haxby" / "sub-1" / "func"
    runs = sorted(str(p) for p in func.glob("*_bold.nii.gz"))
    events = [p.replace("_bold.nii.gz", "_events.tsv") for p in runs]
    mask = str(func / "sub-1_task-objectviewing_desc-brain_mask.nii.gz")
    assert len(runs) == 12
    kwargs = {"t_r": 2.5, "noise_model": "ar1", "hrf_model": "spm", "drift_model": "cosine",
              "high_pass": 0.01, "mask_img": mask}
    ours = quiet(FirstLevelModel(**kwargs).fit, runs, events)
    z = quiet(ours.compute_contrast, "face - house").get_fdata()
    assert ours.n_elements_ == 530
    assert z.min() == pytest.approx(-7.004, abs=5e-4)
    assert np.unravel_index(z.argmin(), z.shape) == (14, 15, 0)
    assert z.max() == pytest.approx(3.570, abs=5e-4)
    reference = quiet(NilearnModel(**kwargs).fit, runs, events)
    for definition, stat_type in (("face - house", None), ("face + house - 2*cat", "t"),
                                  (np.eye(3, 15), "F")):
        assert_same_maps(
            quiet(ours.compute_contrast, definition, stat_type, "all"),
            quiet(reference.compute_contrast, definition, stat_type, "all"))


@pytest.mark.slow
def test_spm_auditory_single_run(data_dir):
    """One 64^3 run, computed EPI mask: README peak z = 9.342 at (51, 29, 36)."""
    func = data_dir / "spm_auditory" / "sub-01" / "func"
    bold = str(func / "sub-01_task-auditory_bold.nii.gz")
    events = str(func / "sub-01_task-auditory_events.tsv")
    kwargs = {"t_r": 7.0, "noise_model": "ar1", "hrf_model": "spm", "drift_model": "cosine",
              "high_pass": 0.01}
    ours = quiet(FirstLevelModel(**kwargs).fit, bold, events)
    assert ours.n_elements_ == 61335
    got = quiet(ours.compute_contrast, "listening", output_type="all")
    z = got["z_score"].get_fdata()
    assert z.max() == pytest.approx(9.342, abs=5e-4)
    assert np.unravel_index(z.argmax(), z.shape) == (51, 29, 36)
    reference = quiet(NilearnModel(**kwargs).fit, bold, events)
    assert_same_maps(got, quiet(reference.compute_contrast, "listening", output_type="all"))
