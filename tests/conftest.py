"""Shared fixtures: simulated runs on disk and the location of ../shared data."""

import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")

REPO = Path(__file__).resolve().parents[1]


def shared_path(kind):
    """``../shared/<kind>`` or the folder named by ``GLMFLOW_SHARED_<KIND>``."""
    env = os.environ.get(f"GLMFLOW_SHARED_{kind.upper()}")
    return Path(env) if env else (REPO.parent / "shared" / kind)


@pytest.fixture(scope="session")
def shared_data():
    path = shared_path("data")
    if not (path / "spm_auditory").is_dir():
        pytest.skip(f"real validation data not found at {path} (set GLMFLOW_SHARED_DATA)")
    return path


def simulate_study(folder, *, n_runs=2, n_scans=80, t_r=2.0, seed=0, shape=(12, 13, 10)):
    """Write small simulated runs with AR(1) noise and two conditions; return file lists."""
    from glmflow.core.simulate import Region, simulate_run

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    regions = (Region("A", "a", (4, 5, 4), 2.5, 3.0), Region("B", "b", (8, 8, 6), 2.5, 3.0))
    events = pd.DataFrame({
        "onset": [10, 40, 70, 100, 130],
        "duration": [10, 10, 10, 10, 10],
        "trial_type": ["a", "b", "a", "b", "a"],
    })
    bold, evs = [], []
    for run in range(n_runs):
        img, _ = simulate_run(events, shape=shape, n_scans=n_scans, t_r=t_r,
                              regions=regions, seed=seed + run, noise=2.0)
        bold.append(str(folder / f"run-{run + 1}_bold.nii.gz"))
        nib.save(img, bold[-1])
        evs.append(str(folder / f"run-{run + 1}_events.tsv"))
        events.to_csv(evs[-1], sep="\t", index=False)
    return bold, evs


@pytest.fixture
def study(tmp_path):
    bold, events = simulate_study(tmp_path / "data")
    return {"bold": bold, "events": events, "t_r": 2.0, "dir": tmp_path}


@pytest.fixture(autouse=True)
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        yield


def assert_maps_equal(ours, theirs, *, atol_z=1e-9, rtol=1e-9, what=""):
    """|Δ| < atol on z-like maps, relative to the map's scale on effect/variance."""
    a = np.asarray(ours, float)
    b = np.asarray(theirs, float)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    scale = max(np.abs(b).max(), 1e-300)
    diff = np.abs(a - b).max()
    assert diff <= max(atol_z, rtol * scale), f"{what}: max |Δ| = {diff:.3e} (scale {scale:.3e})"
