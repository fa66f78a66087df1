"""First-level design matrices: task regressors, extra regressors and drifts.

A port of ``nilearn.glm.first_level.make_first_level_design_matrix`` and what it calls
(nilearn 0.14, BSD-3-Clause, Copyright the nilearn developers): the same events handling,
warnings, drift models and rank regularisation, bit-identical results (tested against
nilearn in ``tests/test_design_matrix_port.py``). It spares every process that builds a
design the 1.3 s import of ``nilearn.glm`` (see :mod:`glmflow.core.hrf`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype
from scipy import linalg

from glmflow.core.hrf import check_hrf_model, compute_regressor, orthogonalize

#: The columns nilearn reads from an events table.
EVENT_FIELDS = {"onset", "duration", "trial_type", "modulation"}


# ----------------------------------------------------------------------------- events
def load_events_table(events):
    """An events DataFrame from a DataFrame, a ``.tsv``/``.csv`` path, or a list of one."""
    if isinstance(events, list):
        events = events[0]
    if isinstance(events, Path):
        events = str(events)
    if isinstance(events, str):
        suffix = Path(events).suffix
        if suffix not in (".tsv", ".csv"):
            raise ValueError(f"Tables to load can only be TSV or CSV; got {events}.")
        return pd.read_csv(events, sep="\t" if suffix == ".tsv" else ",")
    return events


def check_events(events):
    """nilearn's events check: required numeric columns, defaults and their warnings.

    Returns a copy with ``trial_type`` (default ``"dummy"``) and ``modulation`` (default
    1) columns. Raises ValueError for a missing, NaN or non-numeric onset/duration.
    """
    if not isinstance(events, pd.DataFrame):
        raise TypeError(f"'events' must be a pandas DataFrame; got {type(events).__name__}.")
    for column in ("onset", "duration"):
        if column not in events.columns:
            raise ValueError(f"The provided events data has no {column} column.")
        if events[column].isna().any():
            raise ValueError(f"The following column must not contain nan values: {column}")
        if not is_numeric_dtype(events[column]):
            try:
                events = events.astype({column: float})
            except ValueError as exc:
                raise ValueError(f"Could not cast {column} to float in events data.") from exc
    events = events.copy()
    if "trial_type" not in events.columns:
        warnings.warn("'trial_type' column not found in the given events data.", stacklevel=3)
        events["trial_type"] = "dummy"
    null = events["trial_type"][events["duration"] == 0].unique()
    if len(null) > 0:
        listed = "".join(f"- '{name}'\n" for name in sorted(null))
        warnings.warn(
            f"The following conditions contain events with null duration:\n{listed}",
            stacklevel=3,
        )
    unexpected = list(set(events.columns).difference(EVENT_FIELDS))
    if unexpected:
        warnings.warn(
            "The following unexpected columns in events data will be ignored: "
            f"{', '.join(unexpected)}",
            stacklevel=3,
        )
    if "modulation" not in events.columns:
        events["modulation"] = 1
    return events


def merge_duplicate_events(events):
    """Sum the modulation of events with the same trial type, onset and duration."""
    merged = (
        events.groupby(["trial_type", "onset", "duration"], sort=False)
        .agg({"modulation": "sum"})
        .reset_index()
    )
    if len(merged) != len(events):
        warnings.warn(
            "Duplicated events were detected. Amplitudes of these events will be summed. "
            "You might want to verify your inputs.",
            stacklevel=3,
        )
    return merged


def _task_regressors(events, hrf_model, frame_times, fir_delays, min_onset, oversampling):
    """Each condition's convolved regressors, conditions in sorted order."""
    events = merge_duplicate_events(check_events(load_events_table(events)))
    trial_type = events["trial_type"].to_numpy()
    onset = events["onset"].to_numpy()
    duration = events["duration"].to_numpy()
    modulation = events["modulation"].to_numpy()
    matrix, names = None, []
    for condition in np.unique(trial_type):
        selected = trial_type == condition
        regressors, regressor_names = compute_regressor(
            (onset[selected], duration[selected], modulation[selected]),
            hrf_model,
            frame_times,
            con_id=condition,
            fir_delays=fir_delays,
            oversampling=oversampling,
            min_onset=min_onset,
        )
        names += regressor_names
        matrix = regressors if matrix is None else np.hstack((matrix, regressors))
    return matrix, names


# ----------------------------------------------------------------------------- drifts
def cosine_drift(high_pass, frame_times):
    """DCT-II cosines up to ``high_pass`` Hz plus a constant (``nilearn.signal``'s)."""
    n_frames = len(frame_times)
    n_times = np.arange(n_frames)
    dt = (frame_times[-1] - frame_times[0]) / (n_frames - 1)
    if high_pass * dt >= 0.5:
        warnings.warn(
            "High-pass filter will span all accessible frequencies and saturate the design "
            f"matrix. You may want to reduce the high_pass value.The provided value is "
            f"{high_pass} Hz",
            stacklevel=3,
        )
    order = np.minimum(n_frames - 1, int(np.floor(2 * n_frames * high_pass * dt)))
    drift = np.zeros((n_frames, order + 1))
    normalizer = np.sqrt(2.0 / n_frames)
    for k in range(1, order + 1):
        drift[:, k - 1] = normalizer * np.cos((np.pi / n_frames) * (n_times + 0.5) * k)
    drift[:, -1] = 1.0
    return drift


def polynomial_drift(order, frame_times):
    """Orthogonalised polynomials up to ``order``, the constant last."""
    order = int(order)
    drift = np.zeros((np.size(frame_times), order + 1))
    tmax = float(frame_times.max())
    for k in range(order + 1):
        drift[:, k] = (frame_times / tmax) ** k
    drift = orthogonalize(drift)
    return np.hstack((drift[:, 1:], drift[:, :1]))


def make_drift(drift_model, frame_times, order, high_pass):
    """The drift regressors and their names (``drift_1`` ..., ``constant``)."""
    if isinstance(drift_model, str):
        drift_model = drift_model.lower()
    if drift_model == "polynomial":
        drift = polynomial_drift(order, frame_times)
    elif drift_model == "cosine":
        drift = cosine_drift(high_pass, frame_times)
    elif drift_model is None:
        drift = np.reshape(np.ones_like(frame_times), (np.size(frame_times), 1))
    else:
        raise NotImplementedError(f"Unknown drift model {drift_model!r}")
    names = [f"drift_{int(k)}" for k in range(1, drift.shape[1])]
    names.append("constant")
    return drift, names


def full_rank(X, cmax=1e15):
    """``X``, regularised if its condition number reaches ``cmax`` (with a warning)."""
    U, s, V = linalg.svd(X, full_matrices=False)
    smax, smin = s.max(), s.min()
    if smax / smin < cmax:
        return X
    warnings.warn("Matrix is singular at working precision, regularizing...", stacklevel=3)
    lda = (smax - cmax * smin) / (cmax - 1)
    return np.dot(U, np.dot(np.diag(s + lda), V))


# ----------------------------------------------------------------------------- matrix
def make_first_level_design_matrix(
    frame_times,
    events=None,
    hrf_model="glover",
    drift_model="cosine",
    high_pass=0.01,
    drift_order=1,
    fir_delays=None,
    add_regs=None,
    add_reg_names=None,
    min_onset=-24,
    oversampling=50,
):
    """The first-level design matrix: task regressors, extra regressors, then drifts.

    Parameters and result as ``nilearn.glm.first_level.make_first_level_design_matrix``
    (nilearn's one difference: regressors of the wrong length raise ValueError, not
    AssertionError).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``frame_times``, one column per regressor.
    """
    check_hrf_model(hrf_model)
    if high_pass is not None and (
        isinstance(high_pass, bool) or not isinstance(high_pass, (int, float, np.number))
    ):
        raise TypeError(f"'high_pass' must be a number or None; got {high_pass!r}.")
    if fir_delays is None:
        fir_delays = [0]
    n_add_regs = 0
    if add_regs is not None:
        if isinstance(add_regs, pd.DataFrame):
            extra = add_regs.to_numpy()
            add_reg_names = add_regs.columns.tolist()
        else:
            extra = np.atleast_2d(add_regs)
        if np.any(np.isnan(extra.ravel())):
            raise ValueError("Extra regressors contain NaN values.")
        n_add_regs = extra.shape[1]
        if extra.shape[0] != np.size(frame_times):
            raise ValueError(
                "Incorrect specification of additional regressors: length of regressors "
                f"provided: {extra.shape[0]}, number of time-frames: {np.size(frame_times)}."
            )
    if add_reg_names is None:
        add_reg_names = [f"reg{int(k)}" for k in range(n_add_regs)]
    elif len(add_reg_names) != n_add_regs:
        raise ValueError(
            "Incorrect number of additional regressor names was provided"
            f"({len(add_reg_names)} provided, {n_add_regs} expected."
        )
    names, matrix = [], None
    if events is not None:
        if isinstance(hrf_model, str):
            hrf_model = hrf_model.lower()
        matrix, names = _task_regressors(
            events, hrf_model, frame_times, fir_delays, min_onset, oversampling)
    if add_regs is not None:
        matrix = np.hstack((matrix, extra)) if matrix is not None else extra
        names += add_reg_names
    drift, drift_names = make_drift(drift_model, frame_times, drift_order, high_pass)
    matrix = np.hstack((matrix, drift)) if matrix is not None else drift
    names += drift_names
    if len(np.unique(names)) != len(names):
        raise ValueError("Design matrix columns do not have unique names")
    return pd.DataFrame(full_rank(matrix), columns=names, index=frame_times)
