"""Fitted models for the report tests.

The report only needs design matrices, z maps, a mask and contrast weights, so the models
here are nilearn's own ``FirstLevelModel`` (the reference glmflow matches): one run of the
real SPM auditory data and a simulated three-run model with known activations.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

#: Where the simulated activations are (world mm) and which condition drives them.
SIM_BLOBS = {"a": (-48.0, -24.0, 12.0), "b": (36.0, -72.0, 0.0)}
SIM_T_R = 2.0
SIM_SCANS = 80
SIM_RUNS = 3


def shared_data() -> Path:
    env = os.environ.get("GLMFLOW_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return path.resolve()


@pytest.fixture(scope="session")
def spm_auditory_model():
    """nilearn's fit of the SPM auditory run (the settings of the data README)."""
    from nilearn.glm.first_level import FirstLevelModel

    func = shared_data() / "spm_auditory" / "sub-01" / "func"
    bold = func / "sub-01_task-auditory_bold.nii.gz"
    if not bold.exists():
        pytest.skip(f"SPM auditory data not found at {bold} (set GLMFLOW_SHARED_DATA)")
    events = pd.read_csv(func / "sub-01_task-auditory_events.tsv", sep="\t")
    model = FirstLevelModel(t_r=7.0, noise_model="ar1", hrf_model="spm",
                            drift_model="cosine", high_pass=0.01)
    return model.fit(str(bold), events=events)


def _sim_events(run, rng):
    onsets = np.arange(8.0, SIM_SCANS * SIM_T_R - 20.0, 16.0)
    kinds = np.array(["a", "b"] * len(onsets))[: len(onsets)]
    rng.shuffle(kinds)
    return pd.DataFrame({"onset": onsets + run, "duration": 6.0, "trial_type": kinds})


@pytest.fixture(scope="session")
def simulated_study():
    """Three runs on a 6 mm grid placed over MNI space, two conditions, two blobs.

    Condition ``a`` drives a blob around ``SIM_BLOBS['a']``, ``b`` one around
    ``SIM_BLOBS['b']``; white noise elsewhere. Returns a dict with ``runs`` (4D images),
    ``events`` (DataFrames) and ``mask`` (image).
    """
    from nilearn.glm.first_level import make_first_level_design_matrix

    rng = np.random.default_rng(0)
    shape = (30, 36, 30)
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    affine[:3, 3] = (-87.0, -123.0, -72.0)
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    brain = (((xyz[:, 0]) / 66) ** 2 + ((xyz[:, 1] + 18) / 90) ** 2
             + ((xyz[:, 2] - 12) / 66) ** 2) <= 1
    mask = nib.Nifti1Image(brain.reshape(shape).astype(np.uint8), affine)
    runs, events = [], []
    frame_times = np.arange(SIM_SCANS) * SIM_T_R
    for run in range(SIM_RUNS):
        run_events = _sim_events(run, rng)
        design = make_first_level_design_matrix(frame_times, run_events, hrf_model="spm",
                                                drift_model=None)
        data = 100.0 + rng.standard_normal((len(xyz), SIM_SCANS))
        for condition, centre in SIM_BLOBS.items():
            weight = np.exp(-np.sum((xyz - centre) ** 2, axis=1) / (2 * 8.0**2))
            data += 4.0 * weight[:, None] * design[condition].to_numpy()[None, :]
        data[~brain] = 0.0
        runs.append(nib.Nifti1Image(data.reshape(*shape, SIM_SCANS).astype(np.float32),
                                    affine))
        events.append(run_events)
    return {"runs": runs, "events": events, "mask": mask, "t_r": SIM_T_R}


@pytest.fixture(scope="session")
def simulated_model(simulated_study):
    """nilearn's fit of the simulated study; returns ``(model, mask_img)``."""
    import warnings

    from nilearn.glm.first_level import FirstLevelModel

    model = FirstLevelModel(t_r=SIM_T_R, hrf_model="spm", noise_model="ar1",
                            drift_model="cosine", high_pass=0.01,
                            mask_img=simulated_study["mask"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "a mask was given at masker creation"
        model.fit(simulated_study["runs"], events=simulated_study["events"])
    return model, simulated_study["mask"]


@pytest.fixture
def chromium_path():
    """The Chromium executable, or skip with the reason."""
    from .chromium import find_chromium

    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("headless Chromium not installed (apt-get install -y chromium)")
    return path
