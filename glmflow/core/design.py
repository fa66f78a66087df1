"""Design matrices: events and confounds to a regressor table, with nilearn's semantics.

The regressors come from :func:`glmflow.core.design_matrix.make_first_level_design_matrix`,
a port of nilearn's, so they are identical to what ``nilearn.glm.first_level.FirstLevelModel``
builds; this module adds input checks that run first and the TSV format the workflow passes
between nodes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from glmflow.core.design_matrix import make_first_level_design_matrix
from glmflow.core.errors import ConfoundsError, EventsError, InputFileError
from glmflow.core.io import read_table, save_tsv
from glmflow.core.validation import check_confounds, check_events


def frame_times(n_scans, t_r, slice_time_ref=0.0):
    """Acquisition times of the scans, as nilearn's FirstLevelModel computes them."""
    start = slice_time_ref * t_r
    end = (n_scans - 1 + slice_time_ref) * t_r
    return np.linspace(start, end, n_scans)


def load_events(events, *, source=None) -> pd.DataFrame:
    """Return events as a DataFrame, reading a TSV path when given one.

    Parameters
    ----------
    events : DataFrame, str or Path
    source : str, optional
        How to name the events in error messages (defaults to the file name).
    """
    if isinstance(events, pd.DataFrame):
        return events.copy()
    if isinstance(events, (str, Path)):
        path = Path(events)
        frame = read_table(path, what="events")
        if frame.shape[1] == 1 and "," in str(frame.columns[0]) and path.suffix != ".csv":
            raise EventsError(
                f"Events file {path} is not tab-separated (found commas in its header "
                f"{frame.columns[0]!r}); BIDS events files use tabs."
            )
        return frame
    raise EventsError(
        f"events {source or ''} must be a pandas DataFrame or a path to a TSV file; "
        f"got {type(events).__name__}."
    )


def make_design_matrix(
    n_scans,
    *,
    t_r,
    events=None,
    confounds=None,
    confound_columns=None,
    slice_time_ref=0.0,
    hrf_model="glover",
    drift_model="cosine",
    high_pass=0.01,
    drift_order=1,
    fir_delays=None,
    min_onset=-24,
) -> pd.DataFrame:
    """Build the first-level design matrix of one run.

    Parameters follow ``nilearn.glm.first_level.FirstLevelModel``; ``fir_delays=None`` means
    ``[0]`` as there.

    Returns
    -------
    pandas.DataFrame
        One row per scan (indexed by frame time), one column per regressor.
    """
    matrix = names = None
    if confounds is not None:
        source = str(confounds) if isinstance(confounds, (str, Path)) else None
        if isinstance(confounds, (str, Path)):
            confounds = read_table(confounds, what="confounds")
        if confound_columns:
            missing = [c for c in confound_columns if c not in confounds.columns]
            if missing:
                raise ConfoundsError(
                    f"Confounds {source or ''} have no column(s) {missing}; available: "
                    f"{list(confounds.columns)}."
                )
            confounds = confounds[list(confound_columns)]
        checked = check_confounds(confounds, source=source, n_scans=n_scans)
        matrix, names = checked.to_numpy(dtype=float), [str(c) for c in checked.columns]
    frame = None
    if events is not None:
        frame = check_events(
            events if isinstance(events, (str, Path)) else load_events(events),
            n_scans=n_scans,
            t_r=t_r,
            min_onset=min_onset,
            slice_time_ref=slice_time_ref,
        )
    return make_first_level_design_matrix(
        frame_times(n_scans, t_r, slice_time_ref),
        frame,
        hrf_model,
        drift_model,
        high_pass,
        drift_order,
        [0] if fir_delays is None else list(fir_delays),
        matrix,
        names,
        min_onset,
    )


def save_design(design: pd.DataFrame, path) -> str:
    """Write a design matrix as TSV (frame times in the first column, full precision)."""
    frame = design.copy()
    frame.index.name = "frame_time"
    return save_tsv(frame, path, index=True)


def load_design(path) -> pd.DataFrame:
    """Read a design matrix TSV written by :func:`save_design` or a user's own.

    A first column named ``frame_time`` (or unnamed) becomes the index; every other column
    must be numeric.
    """
    frame = read_table(path, what="design matrix")
    first = str(frame.columns[0])
    if first in ("frame_time", "frame_times", "Unnamed: 0", ""):
        frame = frame.set_index(frame.columns[0])
        frame.index.name = None
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise InputFileError(f"Design matrix {path} has non-numeric column(s) {bad}.")
    return frame.astype(float)
