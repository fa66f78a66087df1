"""One run: BIDS inputs → design matrix, sample mask and contrast matrices.

This is what the ``LoadBIDSRun`` interface calls; it joins :mod:`layout` (timing from the
sidecars), :mod:`confounds` (nilearn's selection) and :mod:`stats_model` (events and
contrasts) into the files the GLM nodes take.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import nibabel as nib
import pandas as pd

from glmflow.bids.confounds import describe_strategy, load_run_confounds
from glmflow.bids.layout import timing_from_metadata
from glmflow.bids.stats_model import RunModel, run_contrasts, run_design_inputs
from glmflow.core.design import load_events, make_design_matrix
from glmflow.core.errors import ImageError, SampleMaskError
from glmflow.core.io import read_table


def n_volumes(bold_file) -> int:
    """Number of volumes (scans) of a run.

    ``bold_file`` is a NIfTI path (read from the header only), or a surface run: a
    ``[left, right]`` GIFTI pair, a ``.func.gii`` or a ``.dtseries.nii`` (or ``[path]``).
    """
    files = [bold_file] if isinstance(bold_file, (str, Path)) else list(bold_file)
    if len(files) > 1 or str(files[0]).endswith((".gii", ".dtseries.nii")):
        from glmflow.core.surface import n_scans

        return int(n_scans(files if len(files) > 1 else files[0]))
    bold_file = files[0]
    try:
        shape = nib.load(str(bold_file)).shape
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise ImageError(f"Cannot read the BOLD image {bold_file}: {exc}") from exc
    if len(shape) != 4:
        raise ImageError(f"The BOLD image {bold_file} is {len(shape)}D; expected 4D.")
    return int(shape[3])


def prepare_run(
    *,
    bold_file,
    events_file,
    confounds_file,
    metadata: dict,
    model: RunModel,
    confounds_spec: dict,
    slice_time_ref=None,
    drift_order=1,
    min_onset=-24,
):
    """Build everything one run's GLM needs, before any voxel is read.

    Returns
    -------
    design : DataFrame
    sample_mask : ndarray or None
        0-based indices of the kept volumes.
    contrasts : list of dict
        From :func:`~glmflow.bids.stats_model.run_contrasts` (matrices over ``design``).
    provenance : dict
        What the sidecars record: timing rule, model summary, confound strategy and columns,
        the drift model, the volumes dropped.
    """
    first = bold_file if isinstance(bold_file, (str, Path)) else list(bold_file)[0]
    t_r, ref, timing_note = timing_from_metadata(
        metadata, source=f"the sidecars of {Path(first).name}", slice_time_ref=slice_time_ref
    )
    n_scans = n_volumes(bold_file)
    events = load_events(str(events_file))
    strategy = describe_strategy(confounds_spec)
    strategy_confounds, sample_mask = load_run_confounds(first, confounds_file,
                                                         confounds_spec)
    table = read_table(confounds_file, what="confounds") if model.x is not None else None
    events_in, model_confounds, columns = run_design_inputs(
        model, events, table, source=str(events_file)
    )
    parts = [c for c in (strategy_confounds, model_confounds) if c is not None]
    confounds = None
    if parts:
        confounds = pd.concat(parts, axis=1)
        confounds = confounds.loc[:, ~confounds.columns.duplicated()].reset_index(drop=True)
    # fMRIPrep's cosine regressors (strategy "high_pass") already are a cosine drift basis.
    uses_fmriprep_cosines = "high_pass" in strategy["strategy"]
    drift_model = None if uses_fmriprep_cosines or model.high_pass is None else "cosine"
    # nilearn logs "A 'modulation' column was found" to stdout on every design it builds
    # (it adds that column itself); keep the command's progress output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        design = _design(n_scans, t_r, events_in, confounds, ref, model, drift_model,
                         drift_order, min_onset)
    if sample_mask is not None:
        if sample_mask.max() >= n_scans or sample_mask.min() < 0:
            raise SampleMaskError(
                f"The sample mask from {confounds_file} indexes volume {sample_mask.max()} but "
                f"{bold_file} has {n_scans} volumes; the confounds table does not match the run."
            )
        if sample_mask.size <= design.shape[1]:
            raise SampleMaskError(
                f"Only {sample_mask.size} of {n_scans} volumes of {bold_file} are kept after "
                f"scrubbing, fewer than the {design.shape[1]} regressors."
            )
        if sample_mask.size == n_scans:
            sample_mask = None
    contrasts = run_contrasts(model, design.columns, columns)
    dropped = [] if sample_mask is None else sorted(set(range(n_scans)) - set(sample_mask.tolist()))
    provenance = {
        "RepetitionTime": t_r,
        "SliceTimeRef": ref,
        "SliceTimeRefSource": timing_note,
        "NumberOfVolumes": n_scans,
        "VolumesExcluded": dropped,
        "Model": model.summary(),
        "EventVariables": columns,
        "Confounds": {
            "Strategy": strategy,
            "Columns": [] if confounds is None else [str(c) for c in confounds.columns],
            "Source": str(confounds_file),
        },
        "DriftModel": drift_model,
        "DriftModelNote": (
            "fMRIPrep's cosine regressors (confound strategy high_pass) are the drift model"
            if uses_fmriprep_cosines
            else (f"cosine, high-pass cut-off {model.high_pass} Hz" if drift_model else "none")
        ),
        "HRF": model.hrf_model,
    }
    return design, sample_mask, contrasts, provenance


def _design(n_scans, t_r, events, confounds, slice_time_ref, model, drift_model, drift_order,
            min_onset):
    return make_design_matrix(
        n_scans,
        t_r=t_r,
        events=events,
        confounds=confounds,
        slice_time_ref=slice_time_ref,
        hrf_model=model.hrf_model,
        drift_model=drift_model,
        high_pass=model.high_pass if model.high_pass is not None else 0.01,
        drift_order=drift_order,
        min_onset=min_onset,
    )
