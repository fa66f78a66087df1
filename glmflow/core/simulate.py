"""Seeded simulated fMRI runs with known activations, for the demo, tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd

from glmflow.core.hrf import compute_regressor


@dataclass
class Region:
    """A spherical activated region.

    Attributes
    ----------
    name : str
    condition : str
        The trial type that activates it.
    centre : tuple of int
        Voxel indices of the centre.
    radius : float
        Radius in voxels.
    amplitude : float
        Signal change in percent of the baseline.
    """

    name: str
    condition: str
    centre: tuple
    radius: float
    amplitude: float

    def mask(self, shape):
        grid = np.indices(shape)
        dist2 = sum((g - c) ** 2 for g, c in zip(grid, self.centre, strict=True))
        return dist2 <= self.radius**2


DEMO_REGIONS = (
    Region("left auditory", "audio", (8, 18, 12), 3.0, 2.0),
    Region("right auditory", "audio", (31, 18, 12), 3.0, 2.0),
    Region("visual", "visual", (20, 5, 10), 3.5, 2.5),
)


def brain_mask(shape):
    """An ellipsoid filling most of the field of view: the simulated brain."""
    grid = np.indices(shape).astype(float)
    centre = (np.asarray(shape) - 1) / 2
    radii = np.asarray(shape) * 0.46
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
    return dist <= 1.0


def block_events(n_scans, t_r, *, conditions=("audio", "visual"), seed=0):
    """Alternating blocks of the conditions with jittered rests, within the run."""
    rng = np.random.default_rng(seed)
    duration = n_scans * t_r
    rows = []
    onset = 6.0
    index = 0
    while onset + 12 < duration - 10:
        rows.append((onset, 12.0, conditions[index % len(conditions)]))
        onset += 12.0 + rng.uniform(8, 14)
        index += 1
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])


def simulate_run(
    events,
    *,
    shape=(40, 36, 24),
    n_scans=120,
    t_r=2.0,
    regions=DEMO_REGIONS,
    noise=1.0,
    ar=0.3,
    baseline=800.0,
    seed=0,
    voxel_size=3.0,
    dtype=np.float32,
):
    """Simulate one BOLD run.

    Baseline intensity inside an ellipsoidal brain, HRF-convolved responses (glover) in the
    given regions, AR(1) noise and a slow drift.

    Returns
    -------
    img : Nifti1Image
        4D image with TR in the header.
    brain : ndarray of bool
        The brain mask.
    """
    rng = np.random.default_rng(seed)
    brain = brain_mask(shape)
    frame_times = np.arange(n_scans) * t_r
    data = np.zeros((*shape, n_scans), dtype=np.float64)
    data[brain] = baseline
    for region in regions:
        rows = events[events["trial_type"] == region.condition]
        if rows.empty:
            continue
        cond = np.vstack([rows["onset"], rows["duration"], np.ones(len(rows))])
        signal, _ = compute_regressor(cond, "glover", frame_times)
        signal = signal[:, 0] / np.abs(signal).max()
        where = region.mask(shape) & brain
        data[where] += baseline * region.amplitude / 100 * signal
    innovations = rng.standard_normal((int(brain.sum()), n_scans)) * noise * baseline / 100
    series = np.empty_like(innovations)
    series[:, 0] = innovations[:, 0]
    for t in range(1, n_scans):
        series[:, t] = ar * series[:, t - 1] + innovations[:, t]
    drift = 0.5 * baseline / 100 * np.cos(np.pi * frame_times / frame_times[-1])
    data[brain] += series + drift
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = -np.asarray(shape) * voxel_size / 2
    img = nib.Nifti1Image(data.astype(dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = t_r
    return img, brain
