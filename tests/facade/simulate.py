"""Small simulated fMRI runs for the facade tests (fast, deterministic)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.glm.first_level import make_first_level_design_matrix

SHAPE = (10, 12, 9)
T_R = 2.0


def affine(voxel=3.0):
    aff = np.diag([voxel, voxel, voxel, 1.0])
    aff[:3, 3] = [-15.0, -18.0, -12.0]
    return aff


def brain_mask(shape=SHAPE):
    """An ellipsoid filling most of the box: voxels outside are near-zero background."""
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    radii = np.array(shape) / 2.4
    dist = sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3))
    return dist <= 1.0


def events(seed=0, n_scans=80, t_r=T_R, conditions=("audio", "video", "motor")):
    """A random event-related design with three conditions and a modulation column."""
    rng = np.random.default_rng(seed)
    duration = n_scans * t_r
    onsets = np.sort(rng.uniform(4, duration - 12, size=18))
    trial_type = [conditions[i % len(conditions)] for i in range(len(onsets))]
    return pd.DataFrame({
        "onset": np.round(onsets, 2),
        "duration": rng.choice([0.0, 1.0, 2.5], size=len(onsets)),
        "trial_type": trial_type,
        "modulation": np.round(rng.uniform(0.5, 1.5, size=len(onsets)), 3),
    })


def confounds(seed=0, n_scans=80, n=3):
    rng = np.random.default_rng(seed + 100)
    data = np.cumsum(rng.normal(0, 0.1, size=(n_scans, n)), axis=0)
    return pd.DataFrame(data, columns=[f"motion_{i}" for i in range(n)])


def bold(seed=0, n_scans=80, t_r=T_R, shape=SHAPE, events_df=None, ar=0.35, dtype=np.float32,
         voxel=3.0):
    """A 4D image: baseline ~1000 inside an ellipsoid, event responses, AR(1) noise."""
    rng = np.random.default_rng(seed)
    mask = brain_mask(shape)
    if events_df is None:
        events_df = events(seed, n_scans, t_r)
    frame_times = np.arange(n_scans) * t_r
    design = make_first_level_design_matrix(frame_times, events_df, drift_model=None)
    regressors = design.drop(columns="constant").to_numpy()
    n_vox = int(np.prod(shape))
    betas = rng.normal(0, 1, size=(regressors.shape[1], n_vox))
    betas[:, :n_vox // 3] *= 8  # some strongly active voxels
    noise = rng.normal(0, 4.0, size=(n_scans, n_vox))
    for t in range(1, n_scans):
        noise[t] += ar * noise[t - 1]
    base = rng.uniform(800, 1200, size=n_vox)
    drift = np.linspace(0, 1, n_scans)[:, None] * rng.normal(0, 5, size=n_vox)
    data = base + regressors @ betas * 10 + noise + drift
    data = data.T.reshape(*shape, n_scans)
    data[~mask] = rng.uniform(0, 5, size=(int((~mask).sum()), n_scans))
    return nib.Nifti1Image(data.astype(dtype), affine(voxel))
