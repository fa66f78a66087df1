"""Fixtures: a raw BIDS dataset + an fMRIPrep-style derivatives tree around the real data.

The BOLD series are the real ones from ``../shared/data`` (linked, not copied), presented as
fMRIPrep's ``space-MNI152NLin2009cAsym_desc-preproc_bold``; the brain mask is computed from
them with nilearn; the confounds table is synthetic but has fMRIPrep's columns and quirks
(``n/a`` in the first row of derivatives, FD and DVARS, CompCor with its JSON metadata,
non-steady-state one-hot columns, DCT cosines).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

SPACE = "MNI152NLin2009cAsym"


def shared_data() -> Path:
    env = os.environ.get("GLMFLOW_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return path.resolve()


@pytest.fixture(scope="session")
def data_dir():
    path = shared_data()
    if not (path / "spm_auditory").is_dir():
        pytest.skip(f"real test data not found at {path} (set GLMFLOW_SHARED_DATA)")
    return path


def fmriprep_confounds(n_scans, *, t_r, seed=0, n_nonsteady=1, spikes=(), global_signal=None):
    """A realistic fMRIPrep ``desc-confounds_timeseries`` table."""
    rng = np.random.default_rng(seed)
    frame = {}
    motion = np.cumsum(rng.normal(0, 0.02, (n_scans, 6)), axis=0)
    motion[:, 3:] *= 0.01  # rotations in radians
    for index, spike in enumerate(spikes):
        motion[spike:, index % 6] += 0.8 if index % 6 < 3 else 0.016
    names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    for j, name in enumerate(names):
        values = motion[:, j]
        deriv = np.r_[np.nan, np.diff(values)]
        frame[name] = values
        frame[f"{name}_derivative1"] = deriv
        frame[f"{name}_power2"] = values**2
        frame[f"{name}_derivative1_power2"] = deriv**2
    frame["csf"] = 800 + rng.normal(0, 5, n_scans)
    frame["csf_derivative1"] = np.r_[np.nan, np.diff(frame["csf"])]
    frame["white_matter"] = 600 + rng.normal(0, 3, n_scans)
    frame["white_matter_derivative1"] = np.r_[np.nan, np.diff(frame["white_matter"])]
    gs = global_signal if global_signal is not None else 700 + rng.normal(0, 2, n_scans)
    frame["global_signal"] = gs
    frame["global_signal_derivative1"] = np.r_[np.nan, np.diff(gs)]
    for base in ("csf", "white_matter", "global_signal"):
        frame[f"{base}_power2"] = frame[base] ** 2
        frame[f"{base}_derivative1_power2"] = frame[f"{base}_derivative1"] ** 2
    diffs = np.abs(np.diff(motion, axis=0))
    fd = diffs[:, :3].sum(axis=1) + 50 * diffs[:, 3:].sum(axis=1)  # Power et al., 50 mm sphere
    frame["framewise_displacement"] = np.r_[np.nan, fd]
    dvars = 20 + rng.normal(0, 1, n_scans - 1) + 40 * (fd > 0.5)
    frame["dvars"] = np.r_[np.nan, dvars]
    frame["std_dvars"] = np.r_[np.nan, dvars / 20]
    frame["rmsd"] = np.r_[np.nan, fd / 2]
    for i in range(6):
        frame[f"a_comp_cor_{i:02d}"] = rng.normal(0, 0.05, n_scans)
    for i in range(3):
        frame[f"t_comp_cor_{i:02d}"] = rng.normal(0, 0.05, n_scans)
    # DCT-II basis with a 128 s cut-off, as fMRIPrep writes it.
    n_cos = int(np.floor(2 * n_scans * t_r / 128.0))
    times = np.arange(n_scans)
    for k in range(1, max(n_cos, 1)):
        frame[f"cosine{k - 1:02d}"] = np.sqrt(2.0 / n_scans) * np.cos(
            np.pi * (2 * times + 1) * k / (2 * n_scans)
        )
    for i in range(n_nonsteady):
        column = np.zeros(n_scans)
        column[i] = 1
        frame[f"non_steady_state_outlier{i:02d}"] = column
    return pd.DataFrame(frame)


def confounds_json(table: pd.DataFrame) -> dict:
    meta = {}
    for column in table.columns:
        if column.startswith("a_comp_cor_"):
            index = int(column[-2:])
            meta[column] = {
                "Method": "aCompCor",
                "Mask": "combined" if index < 4 else ("CSF" if index == 4 else "WM"),
                "Retained": True,
                "VarianceExplained": 0.1,
                "CumulativeVarianceExplained": 0.1 * (index + 1),
                "SingularValue": 10.0,
            }
        elif column.startswith("t_comp_cor_"):
            meta[column] = {"Method": "tCompCor", "Retained": True}
    return meta


def make_tree(root: Path, data_dir: Path, dataset: str, *, subjects=None, space=SPACE,
              n_nonsteady=1, spikes=(), start_time=None, top_level_json=True):
    """Build ``root/raw`` and ``root/fmriprep`` for one of the shared datasets."""
    from nilearn.masking import compute_epi_mask

    source = data_dir / dataset
    raw = root / "raw"
    deriv = root / "fmriprep"
    raw.mkdir(parents=True)
    deriv.mkdir(parents=True)
    shutil.copy(source / "dataset_description.json", raw / "dataset_description.json")
    task_json = next(source.glob("task-*_bold.json"))
    task = task_json.name.split("_")[0].removeprefix("task-")
    if top_level_json:
        shutil.copy(task_json, raw / task_json.name)
    meta = json.loads(task_json.read_text())
    (deriv / "dataset_description.json").write_text(json.dumps({
        "Name": "fMRIPrep - fMRI PREProcessing workflow", "BIDSVersion": "1.4.0",
        "DatasetType": "derivatives",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.0"}],
    }))
    runs = []
    for sub_dir in sorted(source.glob("sub-*")):
        sub = sub_dir.name.removeprefix("sub-")
        if subjects is not None and sub not in subjects:
            continue
        for bold in sorted((sub_dir / "func").glob("*_bold.nii.gz")):
            stem = bold.name.removesuffix("_bold.nii.gz")
            raw_func = raw / f"sub-{sub}" / "func"
            raw_func.mkdir(parents=True, exist_ok=True)
            os.symlink(bold, raw_func / bold.name)
            shutil.copy(sub_dir / "func" / f"{stem}_events.tsv", raw_func / f"{stem}_events.tsv")
            if not top_level_json:
                (raw_func / f"{stem}_bold.json").write_text(json.dumps(meta))
            out = deriv / f"sub-{sub}" / "func"
            out.mkdir(parents=True, exist_ok=True)
            prefix = stem.replace(f"task-{task}", f"task-{task}_space-{space}")
            preproc = out / f"{prefix}_desc-preproc_bold.nii.gz"
            os.symlink(bold, preproc)
            img = nib.load(bold)
            # nilearn's EPI mask, without voxels whose series is constant (the localizer
            # excerpts are zero outside their regions of interest)
            data = np.asanyarray(img.dataobj)
            mask = (compute_epi_mask(img).get_fdata() > 0) & (data.std(axis=3) > 0)
            mask_path = out / f"{prefix}_desc-brain_mask.nii.gz"
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), img.affine), mask_path)
            sidecar = {"RepetitionTime": meta["RepetitionTime"], "SkullStripped": False}
            if start_time is not None:
                sidecar.update(StartTime=start_time, SliceTimingCorrected=True)
            (out / f"{prefix}_desc-preproc_bold.json").write_text(json.dumps(sidecar))
            n_scans = img.shape[3]
            table = fmriprep_confounds(n_scans, t_r=meta["RepetitionTime"], seed=len(runs),
                                       n_nonsteady=n_nonsteady, spikes=spikes)
            conf = out / f"{stem}_desc-confounds_timeseries.tsv"
            table.to_csv(conf, sep="\t", index=False, na_rep="n/a")
            conf.with_suffix(".json").write_text(json.dumps(confounds_json(table)))
            runs.append({"sub": sub, "bold": preproc, "mask": mask_path, "confounds": conf,
                         "events": raw_func / f"{stem}_events.tsv", "t_r": meta["RepetitionTime"]})
    return raw, deriv, runs


@pytest.fixture(scope="session")
def auditory_tree(tmp_path_factory, data_dir):
    """spm_auditory as raw + fMRIPrep derivatives; one non-steady-state volume, two FD spikes."""
    root = tmp_path_factory.mktemp("auditory")
    raw, deriv, runs = make_tree(root, data_dir, "spm_auditory", spikes=(30, 31))
    return {"root": root, "raw": raw, "deriv": deriv, "runs": runs}


@pytest.fixture(scope="session")
def localizer_tree(tmp_path_factory, data_dir):
    """localizer (2 subjects) with StartTime in the fMRIPrep sidecars (slice-time corrected)."""
    root = tmp_path_factory.mktemp("localizer")
    raw, deriv, runs = make_tree(root, data_dir, "localizer", n_nonsteady=2, start_time=1.2)
    return {"root": root, "raw": raw, "deriv": deriv, "runs": runs}
