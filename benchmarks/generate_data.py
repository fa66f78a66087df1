"""Seeded synthetic fMRIPrep-like runs for the benchmarks.

Each size gets, per run, a 4D float32 ``.nii.gz`` BOLD series (zero outside the brain, as
a masked fMRIPrep ``desc-preproc_bold`` in MNI space), an events TSV with two conditions,
and a confounds TSV with six motion parameters; plus one brain mask (an ellipsoid scaled
to hold the requested number of voxels, like fMRIPrep's ``desc-brain_mask``).

The in-brain signal is a baseline that varies smoothly in space, a slow drift, AR(1)
noise whose coefficient varies across voxels (so AR binning has real work to do), and
two task effects in a few blobs. Files are written as a stream (one volume at a time) and
cached: a size is regenerated only if its parameters change.

Usage::

    python benchmarks/generate_data.py --sizes small medium --out /tmp/glmflow-bench-data
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

try:  # faster gzip writing (and reading); plain gzip otherwise
    from isal import igzip as _gzip_writer
except ImportError:  # pragma: no cover - optional
    _gzip_writer = None

T_R = 2.0
CONDITIONS = ("audio", "visual")
CONTRASTS = {"audio_minus_visual": "audio - visual", "visual": "visual"}
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Size:
    """Grid, number of scans and target number of in-mask voxels of one benchmark size."""

    shape: tuple
    n_scans: int
    n_mask: int
    voxel_mm: float = 2.0


SIZES = {
    "tiny": Size((16, 18, 12), 60, 1200, 4.0),
    "small": Size((64, 64, 33), 200, 45000, 3.0),
    "medium": Size((79, 95, 79), 300, 120000, 2.5),
    "mni2mm": Size((97, 115, 97), 400, 235000, 2.0),
}


def ellipsoid_mask(shape, n_mask):
    """A centred ellipsoid holding close to ``n_mask`` voxels (bisection on its scale)."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius2 = sum(g**2 for g in grids)
    low, high = 0.0, 2.0
    for _ in range(60):
        scale = (low + high) / 2
        if (radius2 <= scale**2).sum() < n_mask:
            low = scale
        else:
            high = scale
    return radius2 <= high**2


def affine_for(size):
    """An MNI-like affine: RAS, isotropic voxels, origin near the centre."""
    affine = np.diag([size.voxel_mm] * 3 + [1.0])
    affine[:3, 3] = -np.array(size.shape) * size.voxel_mm / 2
    return affine


def make_events(n_scans, rng):
    """Alternating 12 s blocks of the two conditions with jittered gaps."""
    rows, onset, total = [], 10.0, n_scans * T_R - 20
    while onset < total:
        for name in CONDITIONS:
            rows.append((onset, 12.0, name))
            onset += 12.0 + rng.uniform(6.0, 14.0)
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])


def make_confounds(n_scans, rng):
    """Six motion parameters (random walks) with fMRIPrep's column names."""
    names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    walk = np.cumsum(rng.normal(0, 0.02, (n_scans, 6)), axis=0)
    return pd.DataFrame(walk, columns=names)


def _regressors(events, n_scans):
    """Block regressors convolved with a simple gamma HRF (for the simulated signal only)."""
    frame_times = np.arange(n_scans) * T_R
    hrf_t = np.arange(0, 30, T_R)
    hrf = hrf_t**5 * np.exp(-hrf_t) / 120.0
    out = []
    for name in CONDITIONS:
        box = np.zeros(n_scans)
        for onset, duration, trial in events.itertuples(index=False):
            if trial == name:
                box[(frame_times >= onset) & (frame_times < onset + duration)] = 1.0
        out.append(np.convolve(box, hrf)[:n_scans])
    return np.array(out)  # (2, n_scans)


def simulate_series(size, mask, events, confounds, rng):
    """The in-mask time series, (n_scans, n_voxels) float32."""
    n_scans = size.n_scans
    coords = np.argwhere(mask).astype(np.float64) / np.array(size.shape)
    n_vox = coords.shape[0]
    baseline = 700 + 300 * np.sin(3 * coords[:, 0]) * np.cos(2 * coords[:, 1]) + 80 * coords[:, 2]
    rho = 0.05 + 0.45 * coords[:, 1]  # AR(1) coefficient varies smoothly (0.05..0.5)
    sigma = 8 + 4 * coords[:, 0]
    data = np.empty((n_scans, n_vox))
    noise = rng.standard_normal(n_vox) * sigma
    regs = _regressors(events, n_scans)
    blobs = [(np.array([0.3, 0.5, 0.5]), 0), (np.array([0.7, 0.5, 0.5]), 1),
             (np.array([0.5, 0.3, 0.6]), 0), (np.array([0.5, 0.7, 0.4]), 1)]
    effects = np.zeros((2, n_vox))
    for centre, cond in blobs:
        effects[cond] += 25 * np.exp(-np.sum((coords - centre) ** 2, axis=1) / 0.01)
    drift = np.linspace(-1, 1, n_scans)
    motion = confounds.to_numpy()
    motion_gain = rng.normal(0, 2, (6, n_vox))
    for t in range(n_scans):
        if t:
            noise = rho * noise + np.sqrt(1 - rho**2) * rng.standard_normal(n_vox) * sigma
        data[t] = baseline * (1 + 0.01 * drift[t]) + noise + regs[:, t] @ effects
        data[t] += motion[t] @ motion_gain
    return data.astype(np.float32)


def _nifti_header(size, affine):
    header = nib.Nifti1Header()
    header.set_data_shape((*size.shape, size.n_scans))
    header.set_data_dtype(np.float32)
    header.set_xyzt_units("mm", "sec")
    header["pixdim"][4] = T_R
    header.set_qform(affine, code=4)
    header.set_sform(affine, code=4)
    return header


def write_bold(path, size, mask, series, affine):
    """Stream a 4D float32 NIfTI (gzip level 1) one volume at a time."""
    header = _nifti_header(size, affine)
    opener = _gzip_writer.open if _gzip_writer is not None else gzip.open
    tmp = path.with_name(path.name + ".part")
    with opener(tmp, "wb", compresslevel=1) as fobj:
        header.write_to(fobj)
        fobj.write(b"\0" * (int(header["vox_offset"]) - 352))
        volume = np.zeros(size.shape, np.float32)
        for t in range(size.n_scans):
            volume[mask] = series[t]
            fobj.write(volume.tobytes(order="F"))
    tmp.replace(path)


def generate(name, out_dir, *, n_runs=4, seed=0, log=print):
    """Create (or reuse) the data of one size; return a dict of its file paths."""
    size = SIZES[name]
    root = Path(out_dir) / name
    # Through JSON so that the comparison with the stored stamp sees the same types.
    stamp = json.loads(json.dumps(
        {"version": GENERATOR_VERSION, "size": asdict(size), "seed": seed}))
    stamp_file = root / "stamp.json"
    files = {
        "mask": str(root / "sub-01_space-MNI_desc-brain_mask.nii.gz"),
        "bold": [str(root / f"sub-01_task-bench_run-{r + 1}_desc-preproc_bold.nii.gz")
                 for r in range(n_runs)],
        "events": [str(root / f"sub-01_task-bench_run-{r + 1}_events.tsv")
                   for r in range(n_runs)],
        "confounds": [str(root / f"sub-01_task-bench_run-{r + 1}_desc-confounds_timeseries.tsv")
                      for r in range(n_runs)],
        "t_r": T_R,
        "contrasts": CONTRASTS,
        "shape": list(size.shape),
        "n_scans": size.n_scans,
    }
    # Runs are seeded independently: reuse what exists, generate only missing runs.
    done = json.loads(stamp_file.read_text()) if stamp_file.is_file() else {}
    have = done.pop("runs", []) if done == {**stamp, "runs": done.get("runs", [])} else []
    missing = [r for r in range(n_runs) if r not in have]
    if not missing:
        return files
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    mask = ellipsoid_mask(size.shape, size.n_mask)
    affine = affine_for(size)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), files["mask"])
    for run in missing:
        rng = np.random.default_rng([seed, run, size.n_scans])
        events = make_events(size.n_scans, rng)
        confounds = make_confounds(size.n_scans, rng)
        events.to_csv(files["events"][run], sep="\t", index=False)
        confounds.to_csv(files["confounds"][run], sep="\t", index=False)
        series = simulate_series(size, mask, events, confounds, rng)
        write_bold(Path(files["bold"][run]), size, mask, series, affine)
        del series
        have = sorted({*have, run})
        stamp_file.write_text(json.dumps({**stamp, "runs": have}))
    log(f"generated {name}: grid {size.shape} x {size.n_scans} scans, {int(mask.sum())} "
        f"in-mask voxels, runs {[r + 1 for r in missing]} in {time.perf_counter() - start:.1f} s "
        f"-> {root}")
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["small"], choices=list(SIZES))
    parser.add_argument("--out", default="/tmp/glmflow-bench-data")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="print only what was generated")
    args = parser.parse_args(argv)
    for name in args.sizes:
        files = generate(name, args.out, n_runs=args.runs, seed=args.seed)
        # The file list for this number of runs, read by run_benchmarks.py.
        listing = Path(args.out) / name / f"files-{args.runs}.json"
        listing.write_text(json.dumps(files, indent=1))
        if not args.quiet:
            print(listing.read_text())


if __name__ == "__main__":
    main()
