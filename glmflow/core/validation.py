"""Checks that run before any heavy work.

Every function here is pure (no side effects apart from warnings), cheap (image checks read
headers only, except :func:`check_mask` which reads the small 3D mask), and either returns a
cleaned value under a documented rule or raises one of the exception classes of
:mod:`glmflow.core.errors` with a message that names the parameter, file or column, what was
found and what was expected.

The rules are collected in the README section "Errors and guarantees"; each function's
docstring states its own.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported where tables are read: building a workflow needs none
    import pandas as pd

from glmflow.core.errors import (
    ConfoundsError,
    ContrastError,
    DesignError,
    EventsError,
    ImageError,
    InputFileError,
    MaskError,
    OutputError,
    ParameterError,
    SampleMaskError,
)

__all__ = [
    "HRF_MODELS",
    "check_bold_images",
    "check_confounds",
    "check_contrast",
    "check_design",
    "check_drift",
    "check_events",
    "check_fir_delays",
    "check_hrf_model",
    "check_input_file",
    "check_mask",
    "check_min_onset",
    "check_model_parameters",
    "check_noise_model",
    "check_output_dir",
    "check_sample_mask",
    "check_signal_scaling",
    "check_slice_time_ref",
    "check_smoothing_fwhm",
    "check_t_r",
    "check_timeseries",
    "collinear_columns",
    "design_rank",
]

#: HRF model names nilearn knows (``None`` means a plain impulse / unconvolved regressors).
HRF_MODELS = (
    "glover",
    "glover + derivative",
    "glover + derivative + dispersion",
    "spm",
    "spm + derivative",
    "spm + derivative + dispersion",
    "fir",
)
DRIFT_MODELS = ("cosine", "polynomial", None)
#: A repetition time above this (in seconds) is almost surely given in milliseconds.
MAX_T_R = 100.0
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
TABLE_EXTENSIONS = (".tsv", ".csv", ".tsv.gz")


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------
def _is_real_number(value) -> bool:
    """True for int/float (numpy included), False for bool, complex, strings."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _finite_number(value, name: str, *, error=ParameterError) -> float:
    if not _is_real_number(value):
        raise error(f"{name} must be a number; got {type(value).__name__} {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise error(f"{name} must be a finite number; got {value!r}.")
    return value


def _list_rows(index: Iterable, limit: int = 10) -> str:
    """Format row positions as 'rows 0, 3, 7' (first ``limit`` shown)."""
    rows = [int(i) for i in index]
    shown = ", ".join(str(i) for i in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    word = "row" if len(rows) == 1 else "rows"
    return f"{word} {shown}{more}"


def _where(source) -> str:
    return f" in {source}" if source else ""


# --------------------------------------------------------------------------------------
# model parameters
# --------------------------------------------------------------------------------------
def check_t_r(t_r) -> float:
    """Check the repetition time.

    Rule: a finite number of seconds, ``0 < t_r <= 100``. ``None`` is refused (the model
    needs it to place events in time); a value above 100 is refused as it is almost surely
    in milliseconds.

    Returns
    -------
    float
    """
    if t_r is None:
        raise ParameterError(
            "t_r (repetition time, in seconds) is required; got None. Read it from the "
            "BOLD sidecar JSON ('RepetitionTime')."
        )
    value = _finite_number(t_r, "t_r")
    if value <= 0:
        raise ParameterError(f"t_r must be a positive number of seconds; got {t_r!r}.")
    if value > MAX_T_R:
        raise ParameterError(
            f"t_r={t_r!r} seconds is implausibly long (expected at most {MAX_T_R:g} s); "
            "was it given in milliseconds? Divide by 1000."
        )
    return value


def check_slice_time_ref(slice_time_ref) -> float:
    """Check the slice timing reference: a number in [0, 1] (fraction of t_r)."""
    value = _finite_number(slice_time_ref, "slice_time_ref")
    if not 0 <= value <= 1:
        raise ParameterError(
            f"slice_time_ref must be between 0 and 1 (a fraction of t_r); got {slice_time_ref!r}."
        )
    return value


def check_min_onset(min_onset) -> float:
    """Check ``min_onset`` (seconds, relative to the first frame): a finite number."""
    return _finite_number(min_onset, "min_onset")


def check_hrf_model(hrf_model):
    """Check the HRF model and return it in nilearn's canonical spelling.

    Rule: names are case-insensitive and the spaces around ``+`` are optional
    (``"SPM+Derivative"`` becomes ``"spm + derivative"``). ``None``, a callable, or a
    list of callables are passed through (nilearn's custom HRFs).
    """
    if hrf_model is None or callable(hrf_model):
        return hrf_model
    if isinstance(hrf_model, str):
        canonical = " + ".join(part.strip() for part in hrf_model.lower().split("+"))
        if canonical in HRF_MODELS:
            return canonical
        raise ParameterError(
            f"hrf_model={hrf_model!r} is not a known HRF model; expected one of "
            f"{', '.join(repr(name) for name in HRF_MODELS)}, None, a callable "
            "or a list of callables."
        )
    if isinstance(hrf_model, list | tuple) and hrf_model and all(map(callable, hrf_model)):
        names = [getattr(func, "__name__", repr(func)) for func in hrf_model]
        if len(set(names)) != len(names):
            raise ParameterError(
                f"hrf_model: the custom HRF functions have duplicated names {names}; "
                "the design columns are named after them and must be unique."
            )
        return list(hrf_model)
    raise ParameterError(
        f"hrf_model must be a name, None, a callable or a list of callables; got "
        f"{type(hrf_model).__name__} {hrf_model!r}."
    )


def check_drift(drift_model, high_pass=0.01, drift_order=1, n_scans=None, t_r=None):
    """Check the drift model against the run length.

    Rules
    -----
    * ``drift_model`` is ``"cosine"``, ``"polynomial"`` (case-insensitive) or ``None``.
    * cosine: ``high_pass`` is a finite number >= 0 Hz. When ``n_scans`` and ``t_r`` are
      known it must be below the Nyquist frequency ``1 / (2 t_r)`` (error: the cosine set
      would span every frequency), and the drift columns must leave at least one scan of
      residual freedom. A run shorter than one period (``n_scans * t_r < 1/high_pass``)
      gets no cosine regressor: a warning says so (nilearn does the same silently).
    * polynomial: ``drift_order`` is an integer >= 0 (bools refused) and smaller than
      ``n_scans - 1``.

    Returns
    -------
    tuple
        ``(drift_model, high_pass, drift_order)`` normalised (lower-case name, float,
        int).
    """
    if isinstance(drift_model, str):
        drift_model = drift_model.lower().strip()
        if drift_model == "none":
            drift_model = None
    if drift_model not in DRIFT_MODELS:
        raise ParameterError(
            f"drift_model={drift_model!r} is not known; expected 'cosine', 'polynomial' or None."
        )
    if n_scans is not None:
        n_scans = _check_n_scans(n_scans)
    if t_r is not None:
        t_r = check_t_r(t_r)

    if high_pass is None:
        if drift_model == "cosine":
            raise ParameterError(
                "high_pass is None but drift_model='cosine' needs a cut-off frequency in Hz "
                "(e.g. 0.01 = 1/128 s)."
            )
    else:
        high_pass = _finite_number(high_pass, "high_pass")
        if high_pass < 0:
            raise ParameterError(f"high_pass must be >= 0 Hz; got {high_pass!r}.")
    if drift_model == "cosine" and t_r is not None:
        nyquist = 1.0 / (2.0 * t_r)
        if high_pass >= nyquist:
            raise ParameterError(
                f"high_pass={high_pass:g} Hz is at or above the Nyquist frequency "
                f"{nyquist:g} Hz for t_r={t_r:g} s: the cosine drifts would span every "
                "frequency and saturate the design. Use a cut-off such as 0.01 Hz "
                "(period 100 s); high_pass is a frequency in Hz, not a period in seconds."
            )
        if n_scans is not None:
            duration = n_scans * t_r
            n_cosines = min(n_scans - 1, int(np.floor(2 * n_scans * high_pass * t_r)))
            if n_cosines + 1 >= n_scans:
                raise ParameterError(
                    f"high_pass={high_pass:g} Hz gives {n_cosines + 1} drift columns for a run "
                    f"of {n_scans} scans, leaving no residual degrees of freedom; expected "
                    f"a cut-off below {(n_scans - 1) / (2 * duration):g} Hz."
                )
            if 0 < high_pass and n_cosines == 0:
                warnings.warn(
                    f"high_pass={high_pass:g} Hz (period {1 / high_pass:g} s) is longer than "
                    f"the run ({n_scans} scans x {t_r:g} s = {duration:g} s): no cosine drift "
                    "regressor is added, only the constant.",
                    UserWarning,
                    stacklevel=2,
                )

    if isinstance(drift_order, bool | np.bool_) or not isinstance(drift_order, numbers.Integral):
        if _is_real_number(drift_order) and float(drift_order).is_integer():
            drift_order = int(drift_order)
        else:
            raise ParameterError(
                f"drift_order must be a non-negative integer; got "
                f"{type(drift_order).__name__} {drift_order!r}."
            )
    drift_order = int(drift_order)
    if drift_order < 0:
        raise ParameterError(f"drift_order must be >= 0; got {drift_order}.")
    if drift_model == "polynomial" and n_scans is not None and drift_order + 1 >= n_scans:
        raise ParameterError(
            f"drift_order={drift_order} gives {drift_order + 1} polynomial columns for a run "
            f"of {n_scans} scans, leaving no residual degrees of freedom; expected an order "
            f"below {n_scans - 1}."
        )
    return drift_model, high_pass, drift_order


def _check_n_scans(n_scans) -> int:
    if isinstance(n_scans, bool) or not isinstance(n_scans, numbers.Integral):
        raise ParameterError(f"n_scans must be an integer; got {n_scans!r}.")
    if n_scans < 2:
        raise ParameterError(f"A run needs at least 2 scans to fit a GLM; this one has {n_scans}.")
    return int(n_scans)


def check_fir_delays(fir_delays, *, hrf_model="fir", n_scans=None):
    """Check the FIR delays (in scans).

    Rules: ``None`` means ``[0]`` (nilearn's default). Otherwise a non-empty sequence of
    distinct integers >= 0 (integral floats such as ``2.0`` are accepted; ``1.5`` is
    refused because nilearn would silently name the column ``_delay_1``). Each delay must
    be smaller than ``n_scans``. Delays given with an ``hrf_model`` other than ``"fir"``
    are ignored by the model, and a warning says so.

    Returns
    -------
    list of int
    """
    if fir_delays is None:
        return [0]
    if isinstance(fir_delays, str) or not isinstance(fir_delays, Iterable):
        if _is_real_number(fir_delays):
            fir_delays = [fir_delays]
        else:
            raise ParameterError(
                f"fir_delays must be a list of non-negative integers (scans); got "
                f"{type(fir_delays).__name__} {fir_delays!r}."
            )
    delays = list(np.asarray(fir_delays, dtype=object).ravel())
    if not delays:
        raise ParameterError("fir_delays is empty; expected at least one delay, e.g. [0, 1, 2].")
    result = []
    for delay in delays:
        if not _is_real_number(delay) or not float(delay).is_integer():
            raise ParameterError(
                f"fir_delays must hold integers (delays in scans); found {delay!r} in "
                f"{list(delays)!r}."
            )
        if delay < 0:
            raise ParameterError(f"fir_delays must be >= 0 (delays in scans); found {delay!r}.")
        if n_scans is not None and delay >= n_scans:
            raise ParameterError(
                f"fir_delays: delay {int(delay)} is not shorter than the run ({n_scans} "
                "scans); its regressor would be all zeros."
            )
        result.append(int(delay))
    duplicated = sorted({d for d in result if result.count(d) > 1})
    if duplicated:
        raise ParameterError(
            f"fir_delays contains duplicated delays {duplicated}; each delay gives one "
            "design column and they must be distinct."
        )
    if hrf_model is not None and hrf_model != "fir" and result != [0]:
        warnings.warn(
            f"fir_delays={result} is ignored because hrf_model={hrf_model!r} is not 'fir'.",
            UserWarning,
            stacklevel=2,
        )
    return result


def check_smoothing_fwhm(smoothing_fwhm):
    """Check the smoothing kernel width in mm.

    Rule: ``None`` or ``0`` means no smoothing (returns ``None``); otherwise a finite
    number > 0, or three of them (one per axis; ``(0, 0, 0)`` also means none).
    """
    if smoothing_fwhm is None:
        return None
    if isinstance(smoothing_fwhm, np.ndarray) and smoothing_fwhm.ndim == 0:
        smoothing_fwhm = smoothing_fwhm.item()
    if isinstance(smoothing_fwhm, list | tuple | np.ndarray):
        values = list(np.asarray(smoothing_fwhm, dtype=object).ravel())
        if len(values) != 3:
            raise ParameterError(
                f"smoothing_fwhm must be one number or three (x, y, z in mm); got "
                f"{len(values)} values {values!r}."
            )
        checked = tuple(_finite_number(v, "smoothing_fwhm") for v in values)
        if any(v < 0 for v in checked):
            raise ParameterError(f"smoothing_fwhm must be >= 0 mm; got {checked!r}.")
        return None if not any(checked) else checked
    value = _finite_number(smoothing_fwhm, "smoothing_fwhm")
    if value < 0:
        raise ParameterError(f"smoothing_fwhm must be >= 0 mm; got {smoothing_fwhm!r}.")
    return None if value == 0 else value


def check_signal_scaling(signal_scaling):
    """Check ``signal_scaling``: ``False`` (none), ``0`` (each voxel's mean over time),
    ``1`` (each scan's mean over voxels) or ``(0, 1)`` (both). ``True`` is refused as
    ambiguous. Returns one of ``False, 0, 1, (0, 1)``.
    """
    if signal_scaling is False:
        return False
    if signal_scaling is True:
        raise ParameterError(
            "signal_scaling=True is ambiguous; expected False (no scaling), 0 (scale each "
            "voxel by its mean over time, nilearn's default), 1 (scale each scan by its mean "
            "over voxels) or (0, 1)."
        )
    if _is_real_number(signal_scaling) and signal_scaling in (0, 1):
        return int(signal_scaling)
    if isinstance(signal_scaling, list | tuple) and tuple(signal_scaling) == (0, 1):
        if not any(isinstance(v, bool) for v in signal_scaling):
            return (0, 1)
    raise ParameterError(
        f"signal_scaling={signal_scaling!r} is not valid; expected False, 0, 1 or (0, 1)."
    )


_AR_RE = re.compile(r"^ar([0-9]+)$")


def check_noise_model(noise_model, *, n_scans=None, n_regressors=None) -> str:
    """Check the noise model: ``"ols"`` or ``"ar<N>"`` with N >= 1 (case-insensitive).

    With ``n_scans`` known, the AR order must be smaller than the residual degrees of
    freedom (``n_scans - n_regressors``, or ``n_scans - 1``): the Yule-Walker estimate needs
    more residual samples than lags.

    Returns
    -------
    str
        Lower case, e.g. ``"ar1"``.
    """
    if not isinstance(noise_model, str):
        raise ParameterError(
            f"noise_model must be a string, 'ols' or 'ar1', 'ar2', ...; got "
            f"{type(noise_model).__name__} {noise_model!r}."
        )
    name = noise_model.strip().lower()
    if name == "ols":
        return name
    match = _AR_RE.match(name)
    if match is None:
        raise ParameterError(
            f"noise_model={noise_model!r} is not known; expected 'ols' or 'ar<N>' with N a "
            "positive integer (e.g. 'ar1', 'ar3')."
        )
    order = int(match.group(1))
    if order < 1:
        raise ParameterError(
            f"noise_model={noise_model!r}: the AR order must be >= 1; use 'ols' for none."
        )
    if n_scans is not None:
        dof = n_scans - (n_regressors if n_regressors is not None else 1)
        if order >= dof:
            raise ParameterError(
                f"noise_model={noise_model!r}: AR order {order} needs more than {order} "
                f"residual degrees of freedom; this run has {dof} ({n_scans} scans)."
            )
    return name


def check_model_parameters(
    *,
    t_r,
    slice_time_ref=0.0,
    hrf_model="glover",
    drift_model="cosine",
    high_pass=0.01,
    drift_order=1,
    fir_delays=None,
    min_onset=-24,
    smoothing_fwhm=None,
    signal_scaling=0,
    standardize=False,
    noise_model="ar1",
    n_scans=None,
) -> dict:
    """Check every first-level parameter at once and return them normalised.

    Meant for the workflow factory, the facade and the command, which know the
    parameters before any file is read; pass ``n_scans`` when it is known to also run
    the checks that depend on the run length.

    Returns
    -------
    dict
        The same keys as the arguments (without ``n_scans``), values normalised.
    """
    t_r = check_t_r(t_r)
    hrf_model = check_hrf_model(hrf_model)
    drift_model, high_pass, drift_order = check_drift(
        drift_model, high_pass, drift_order, n_scans, t_r
    )
    if not isinstance(standardize, bool | np.bool_):
        raise ParameterError(f"standardize must be True or False; got {standardize!r}.")
    return {
        "t_r": t_r,
        "slice_time_ref": check_slice_time_ref(slice_time_ref),
        "hrf_model": hrf_model,
        "drift_model": drift_model,
        "high_pass": high_pass,
        "drift_order": drift_order,
        "fir_delays": check_fir_delays(fir_delays, hrf_model=hrf_model, n_scans=n_scans),
        "min_onset": check_min_onset(min_onset),
        "smoothing_fwhm": check_smoothing_fwhm(smoothing_fwhm),
        "signal_scaling": check_signal_scaling(signal_scaling),
        "standardize": bool(standardize),
        "noise_model": check_noise_model(noise_model, n_scans=n_scans),
    }


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
def check_input_file(path, *, what="input", extensions: Sequence[str] | None = None) -> Path:
    """Check that ``path`` is an existing, readable file with an expected extension.

    Raises
    ------
    InputFileError
        Missing, a folder, unreadable, or an unexpected extension.
    """
    if path is None or (isinstance(path, str) and not path.strip()):
        raise InputFileError(f"No {what} file was given (got {path!r}).")
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"The {what} file {path} does not exist.")
    if path.is_dir():
        raise InputFileError(f"The {what} path {path} is a folder; expected a file.")
    if extensions:
        name = path.name.lower()
        if not any(name.endswith(ext) for ext in extensions):
            raise InputFileError(
                f"The {what} file {path} has an unexpected format; expected a file ending in "
                f"{' or '.join(extensions)}."
            )
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise InputFileError(
            f"The {what} file {path} cannot be read: {exc.strerror or exc}."
        ) from exc
    return path


def check_output_dir(path, *, required_bytes: int | None = None) -> Path:
    """Check that ``path`` is (or can be created as) a writable folder.

    Rule: the folder is created if missing; writability is tested by creating and
    removing a temporary file (``os.access`` says yes to root even on read-only file
    systems). With ``required_bytes``, the free space must be at least that much.

    Raises
    ------
    OutputError
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"The output path {path} exists and is not a folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot create the output folder {path}: {exc.strerror or exc}."
        ) from exc
    try:
        fd, probe = tempfile.mkstemp(prefix=".glmflow-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"The output folder {path} is not writable: {exc.strerror or exc}."
        ) from exc
    if required_bytes is not None:
        import shutil

        free = shutil.disk_usage(path).free
        if free < required_bytes:
            raise OutputError(
                f"The output folder {path} has {free / 2**20:.1f} MiB free; the outputs need "
                f"about {required_bytes / 2**20:.1f} MiB."
            )
    return path


def _read_table(source, *, what, error):
    """A DataFrame from a DataFrame or a TSV/CSV path; errors name the file."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source.copy(), None
    if isinstance(source, str | os.PathLike):
        from glmflow.core.io import read_table

        path = check_input_file(source, what=what, extensions=TABLE_EXTENSIONS)
        frame = read_table(path, what=what)
        if (
            not path.name.lower().endswith(".csv")
            and frame.shape[1] == 1
            and "," in str(frame.columns[0])
        ):
            raise InputFileError(
                f"The {what} file {path} is not tab-separated (its header "
                f"{str(frame.columns[0])!r} holds commas); expected a BIDS TSV file with tabs."
            )
        return frame, str(path)
    raise error(
        f"The {what} must be a pandas DataFrame or the path of a TSV file; got "
        f"{type(source).__name__}."
    )


# --------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------
_EVENT_COLUMNS = ("onset", "duration", "trial_type", "modulation")


def check_events(
    frame,
    *,
    source=None,
    n_scans=None,
    t_r=None,
    min_onset=-24,
    slice_time_ref=0.0,
) -> pd.DataFrame:
    """Check an events table and return it cleaned.

    Parameters
    ----------
    frame : DataFrame or path
        BIDS events (TSV, ``n/a`` for missing values).
    source : str, optional
        A name for messages (file name, ``"run 2"``); the path when ``frame`` is one.
    n_scans, t_r : int, float, optional
        The run length; with both known, timing against the run is checked.
    min_onset : float, default=-24
        Events starting before ``slice_time_ref * t_r + min_onset`` seconds are dropped.
    slice_time_ref : float, default=0
        Fraction of ``t_r`` at which frames are sampled (nilearn's frame-time origin).

    Returns
    -------
    DataFrame
        Columns ``onset, duration, trial_type, modulation`` (float, float, str, float),
        original row order, index reset.

    Rules
    -----
    * ``onset`` and ``duration`` columns are required, numeric, without NaN/``n/a`` or inf;
      durations must be >= 0. An empty table is an error.
    * no ``trial_type`` column: every event is condition ``"dummy"`` (nilearn's rule, with
      a warning); ``n/a`` trial types are an error; trial types are turned into strings.
    * no ``modulation`` column: modulation 1; otherwise numeric and finite.
    * other columns are ignored (warning, as nilearn).
    * an event with ``onset < slice_time_ref*t_r + min_onset`` is dropped with a warning
      (nilearn documents this but models it as a spike at the start of the run).
    * an event with ``onset >= n_scans * t_r`` (after the last volume) cannot affect any
      scan; it is dropped with a warning.
    * a condition all of whose events are dropped is an error naming the condition
      (nilearn keeps an all-zero regressor, which makes the design rank-deficient).
    """
    events, path = _read_table(frame, what="events", error=EventsError)
    where = _where(source or path)
    if len(events) == 0:
        raise EventsError(
            f"The events table{where} is empty; expected at least one event "
            "(columns onset, duration, trial_type)."
        )
    events.columns = [str(column) for column in events.columns]
    duplicated = sorted({c for c in events.columns if list(events.columns).count(c) > 1})
    if duplicated:
        raise EventsError(f"The events table{where} has duplicated columns {duplicated}.")
    for column in ("onset", "duration"):
        if column not in events.columns:
            raise EventsError(
                f"The events table{where} has no '{column}' column; found columns "
                f"{list(events.columns)}, expected at least 'onset' and 'duration'."
            )
    for column in ("onset", "duration", "modulation"):
        if column in events.columns:
            events[column] = _numeric_column(events[column], column, where)
    if (events["duration"] < 0).any():
        bad = np.flatnonzero(events["duration"].to_numpy() < 0)
        raise EventsError(
            f"The 'duration' column{where} has negative values at {_list_rows(bad)} "
            f"({events['duration'].iloc[bad[0]]:g} s); expected durations >= 0."
        )
    if "trial_type" not in events.columns:
        warnings.warn(
            f"The events table{where} has no 'trial_type' column; all events are modelled "
            "as one condition named 'dummy'.",
            UserWarning,
            stacklevel=2,
        )
        events["trial_type"] = "dummy"
    missing = events["trial_type"].isna().to_numpy()
    if missing.any():
        raise EventsError(
            f"The 'trial_type' column{where} has n/a (missing) values at "
            f"{_list_rows(np.flatnonzero(missing))}; expected a condition name for every event."
        )
    events["trial_type"] = events["trial_type"].map(_condition_name)
    if "modulation" not in events.columns:
        events["modulation"] = 1.0
    extra = [c for c in events.columns if c not in _EVENT_COLUMNS]
    if extra:
        warnings.warn(
            f"The events table{where} has columns that are not used: {', '.join(extra)}.",
            UserWarning,
            stacklevel=2,
        )
    events = events.loc[:, list(_EVENT_COLUMNS)].reset_index(drop=True)
    conditions = list(dict.fromkeys(events["trial_type"]))

    keep = np.ones(len(events), dtype=bool)
    if t_r is not None:
        t_r = check_t_r(t_r)
        start = check_slice_time_ref(slice_time_ref) * t_r + check_min_onset(min_onset)
        early = events["onset"].to_numpy() < start
        if early.any():
            warnings.warn(
                f"{early.sum()} event(s){where} start before {start:g} s (min_onset="
                f"{min_onset:g} s before the first frame) and are dropped: "
                f"{_list_rows(np.flatnonzero(early))}.",
                UserWarning,
                stacklevel=2,
            )
        keep &= ~early
        if n_scans is not None:
            n_scans = _check_n_scans(n_scans)
            end = n_scans * t_r
            late = events["onset"].to_numpy() >= end
            if late.any():
                warnings.warn(
                    f"{late.sum()} event(s){where} start at or after the end of the run "
                    f"({n_scans} scans x {t_r:g} s = {end:g} s) and are dropped: "
                    f"{_list_rows(np.flatnonzero(late))}.",
                    UserWarning,
                    stacklevel=2,
                )
            keep &= ~late
    if not keep.all():
        kept = set(events["trial_type"][keep])
        lost = [c for c in conditions if c not in kept]
        if lost:
            raise EventsError(
                f"Condition(s) {', '.join(repr(c) for c in lost)}{where} have no event inside "
                "the run (all their onsets are before min_onset or after the last scan); "
                "their regressors would be all zeros. Check the onsets' time unit "
                "(seconds) and the run, or remove these events."
            )
        events = events.loc[keep].reset_index(drop=True)
    return events


def _condition_name(value) -> str:
    """Condition names as strings; integral floats lose their '.0' (``1.0`` -> ``"1"``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _numeric_column(series: pd.Series, column: str, where: str) -> pd.Series:
    """A float64 copy of an events column, or EventsError naming the bad rows."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if is_bool_dtype(series):
        raise EventsError(f"The '{column}' column{where} holds booleans; expected numbers.")
    if not is_numeric_dtype(series):
        converted = pd.to_numeric(series, errors="coerce")
        bad = np.flatnonzero(converted.isna().to_numpy() & series.notna().to_numpy())
        if bad.size:
            raise EventsError(
                f"The '{column}' column{where} has non-numeric values at {_list_rows(bad)} "
                f"(e.g. {series.iloc[bad[0]]!r}); expected numbers"
                + (" in seconds." if column != "modulation" else ".")
            )
        series = converted
    values = series.astype(np.float64)
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        raise EventsError(
            f"The '{column}' column{where} has n/a (missing) values at {_list_rows(missing)}; "
            "expected a number for every event."
        )
    infinite = np.flatnonzero(~np.isfinite(values.to_numpy()))
    if infinite.size:
        raise EventsError(
            f"The '{column}' column{where} has infinite values at {_list_rows(infinite)}."
        )
    return values


# --------------------------------------------------------------------------------------
# confounds
# --------------------------------------------------------------------------------------
def check_confounds(frame_or_array, *, source=None, n_scans=None) -> pd.DataFrame:
    """Check a confounds table and return it cleaned, as float64.

    Rules
    -----
    * a numpy array (1D or 2D) gets columns ``confound_0, confound_1, ...`` (nilearn's
      names); a DataFrame or TSV keeps its names, which must be unique.
    * the number of rows must equal ``n_scans``.
    * every column must be numeric (``n/a`` is read as missing).
    * missing values in the *leading* rows of a column (fMRIPrep's derivative and
      framewise-displacement columns start with ``n/a``) are filled with the column's first
      valid value, which for one leading ``n/a`` is nilearn's ``load_confounds`` rule
      (row 0 copied from row 1). Missing values anywhere else, an all-missing column or
      infinite values are errors naming the column and rows.
    * an all-zero column, or two columns with identical values, are errors (the
      regressors could not be told apart); a constant non-zero column is kept with a
      warning, as it duplicates the design's constant term.
    """
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if isinstance(frame_or_array, np.ndarray | list | tuple):
        array = np.asarray(frame_or_array)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ConfoundsError(
                f"Confounds{_where(source)} must be a 2D array (scans x regressors); got "
                f"an array of shape {array.shape}."
            )
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_):
            raise ConfoundsError(
                f"Confounds{_where(source)} must be numeric; got an array of {array.dtype}."
            )
        frame = pd.DataFrame(array, columns=[f"confound_{i}" for i in range(array.shape[1])])
        path = None
    else:
        frame, path = _read_table(frame_or_array, what="confounds", error=ConfoundsError)
    where = _where(source or path)
    if frame.shape[1] == 0:
        raise ConfoundsError(f"The confounds{where} have no columns.")
    frame.columns = [str(column) for column in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise ConfoundsError(
            f"The confounds{where} have duplicated column names {duplicated}; "
            "expected unique names."
        )
    if n_scans is not None and len(frame) != n_scans:
        raise ConfoundsError(
            f"The confounds{where} have {len(frame)} rows but the run has {n_scans} scans; "
            "expected one row per scan (did you select confounds of another run, or cut "
            "dummy scans from the image but not from the confounds?)."
        )
    columns = {}
    for name in frame.columns:
        series = frame[name]
        if is_bool_dtype(series):
            series = series.astype(np.float64)
        elif not is_numeric_dtype(series):
            converted = pd.to_numeric(series, errors="coerce")
            bad = np.flatnonzero(converted.isna().to_numpy() & series.notna().to_numpy())
            if bad.size:
                raise ConfoundsError(
                    f"The confounds column '{name}'{where} has non-numeric values at "
                    f"{_list_rows(bad)} (e.g. {series.iloc[bad[0]]!r}); expected numbers."
                )
            series = converted
        values = series.to_numpy(dtype=np.float64, na_value=np.nan).copy()
        columns[name] = _fill_leading_nans(values, name, where)
    cleaned = pd.DataFrame(columns, index=frame.index).reset_index(drop=True)

    matrix = cleaned.to_numpy()
    zero = [name for name, col in cleaned.items() if not np.any(col.to_numpy())]
    if zero:
        raise ConfoundsError(
            f"The confounds column(s) {', '.join(repr(c) for c in zero)}{where} are all zeros; "
            "such a regressor cannot be estimated. Remove it."
        )
    constant = [
        name
        for i, name in enumerate(cleaned.columns)
        if len(matrix) > 1 and np.all(matrix[:, i] == matrix[0, i])
    ]
    if constant:
        warnings.warn(
            f"The confounds column(s) {', '.join(repr(c) for c in constant)}{where} are "
            "constant; they duplicate the design's constant term (unless drift_model=None) "
            "and make the design rank-deficient.",
            UserWarning,
            stacklevel=2,
        )
    pairs = _identical_columns(matrix, list(cleaned.columns))
    if pairs:
        listed = "; ".join(f"'{a}' = '{b}'" for a, b in pairs)
        raise ConfoundsError(
            f"The confounds{where} have columns with identical values ({listed}); "
            "expected distinct regressors. Keep one of each pair."
        )
    return cleaned


def _fill_leading_nans(values: np.ndarray, name: str, where: str) -> np.ndarray:
    missing = np.isnan(values)
    if not missing.any():
        if np.isinf(values).any():
            raise ConfoundsError(
                f"The confounds column '{name}'{where} has infinite values at "
                f"{_list_rows(np.flatnonzero(np.isinf(values)))}."
            )
        return values
    if missing.all():
        raise ConfoundsError(
            f"The confounds column '{name}'{where} has only n/a (missing) values."
        )
    first_valid = int(np.argmax(~missing))
    interior = np.flatnonzero(missing[first_valid:]) + first_valid
    if interior.size:
        raise ConfoundsError(
            f"The confounds column '{name}'{where} has n/a (missing) values at "
            f"{_list_rows(interior)}; only leading n/a rows (as fMRIPrep writes for "
            "derivative columns) are filled. Fill or drop this column."
        )
    values[:first_valid] = values[first_valid]
    if np.isinf(values).any():
        raise ConfoundsError(
            f"The confounds column '{name}'{where} has infinite values at "
            f"{_list_rows(np.flatnonzero(np.isinf(values)))}."
        )
    return values


def _identical_columns(matrix: np.ndarray, names: list[str]) -> list[tuple[str, str]]:
    """Pairs of columns with exactly the same values (hash of the bytes, then compare)."""
    seen: dict[bytes, int] = {}
    pairs = []
    contiguous = np.ascontiguousarray(matrix.T)
    for i, column in enumerate(contiguous):
        key = column.tobytes()
        if key in seen:
            pairs.append((names[seen[key]], names[i]))
        else:
            seen[key] = i
    return pairs


# --------------------------------------------------------------------------------------
# sample masks
# --------------------------------------------------------------------------------------
def check_sample_mask(mask, *, n_scans, source=None, n_regressors=None) -> np.ndarray:
    """Check a sample mask (the scans to keep) and return sorted int indices.

    Rules
    -----
    * a boolean mask must have exactly ``n_scans`` entries; it becomes the indices of its
      ``True`` entries.
    * integer indices (integral floats accepted) must lie in ``[0, n_scans)``, be unique
      and in increasing order: nilearn silently repeats duplicated scans and reorders
      scans when the indices are unsorted, which changes the results; here both are errors.
    * at least ``n_regressors + 1`` scans must be kept (one residual degree of freedom),
      or 2 when ``n_regressors`` is unknown.
    """
    n_scans = _check_n_scans(n_scans)
    where = _where(source)
    if mask is None:
        return np.arange(n_scans)
    if isinstance(mask, str) or not isinstance(mask, Iterable | np.ndarray):
        raise SampleMaskError(
            f"sample_mask{where} must be an array of scan indices or booleans; got "
            f"{type(mask).__name__} {mask!r}."
        )
    array = np.asarray(mask)
    if array.ndim != 1:
        raise SampleMaskError(
            f"sample_mask{where} must be one-dimensional; got shape {array.shape}."
        )
    if array.dtype == np.bool_:
        if array.size != n_scans:
            raise SampleMaskError(
                f"The boolean sample_mask{where} has {array.size} entries but the run has "
                f"{n_scans} scans; expected one entry per scan."
            )
        indices = np.flatnonzero(array)
    else:
        if array.size == 0:
            raise SampleMaskError(f"sample_mask{where} is empty; it would keep no scan.")
        if not np.issubdtype(array.dtype, np.number):
            raise SampleMaskError(
                f"sample_mask{where} must hold integer scan indices or booleans; got "
                f"values of type {array.dtype} (e.g. {array[0].item()!r})."
            )
        if np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                bad = array[~(np.isfinite(array) & (array == np.round(array)))]
                raise SampleMaskError(
                    f"sample_mask{where} must hold integer scan indices; found {bad[0].item()!r}."
                )
        indices = array.astype(np.int64)
        out = indices[(indices < 0) | (indices >= n_scans)]
        if out.size:
            raise SampleMaskError(
                f"sample_mask{where} has indices out of range: {out[:10].tolist()}; the run "
                f"has {n_scans} scans, so expected indices 0 to {n_scans - 1}."
            )
        values, counts = np.unique(indices, return_counts=True)
        if (counts > 1).any():
            raise SampleMaskError(
                f"sample_mask{where} has duplicated indices {values[counts > 1][:10].tolist()}; "
                "a scan would be counted twice. Expected unique indices."
            )
        if np.any(np.diff(indices) < 0):
            first = int(np.flatnonzero(np.diff(indices) < 0)[0])
            raise SampleMaskError(
                f"sample_mask{where} is not in increasing order (index {indices[first]} is "
                f"followed by {indices[first + 1]}); scans would be reordered in time, which "
                "breaks the autoregressive noise model. Sort the indices."
            )
    needed = (n_regressors + 1) if n_regressors is not None else 2
    if indices.size < needed:
        what = (
            f"the design has {n_regressors} columns, so at least {needed} are needed"
            if n_regressors is not None
            else f"at least {needed} are needed"
        )
        raise SampleMaskError(
            f"sample_mask{where} keeps {indices.size} of {n_scans} scans; {what}."
        )
    return indices


# --------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------
def _load_header_only(img, what):
    """A nibabel image from a path (lazy: header read, data left on disk) or an image."""
    import nibabel as nib

    if isinstance(img, str | os.PathLike):
        path = check_input_file(img, what=what)
        try:
            loaded = nib.load(str(path))
        except Exception as exc:  # nibabel raises several types for bad files
            raise InputFileError(
                f"The {what} file {path} could not be read as a NIfTI image: {exc}"
            ) from exc
        if not isinstance(loaded, nib.Nifti1Image | nib.Nifti2Image) or isinstance(
            loaded, nib.Cifti2Image
        ):
            raise ImageError(
                f"The {what} file {path} is a {type(loaded).__name__}; expected a NIfTI volume "
                "(surface GIFTI/CIFTI runs are checked by glmflow.core.surface)."
            )
        _check_not_truncated(loaded, path, what)
        return loaded, str(path)
    if hasattr(img, "shape") and hasattr(img, "affine"):
        return img, getattr(img, "get_filename", lambda: None)() or None
    raise ImageError(
        f"The {what} must be a NIfTI file name or a nibabel image; got {type(img).__name__}."
    )


def _check_not_truncated(img, path, what):
    """An uncompressed .nii shorter than its header says is truncated."""
    if not str(path).endswith(".nii"):
        return
    header = img.header
    try:
        expected = int(header.get_data_offset()) + int(
            np.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
        )
    except Exception:  # pragma: no cover - exotic headers
        return
    size = os.path.getsize(path)
    if size < expected:
        raise InputFileError(
            f"The {what} file {path} is truncated: {size} bytes on disk, the header "
            f"announces {expected}."
        )


def check_bold_images(imgs, *, t_r=None, min_volumes=2) -> list:
    """Check one or several BOLD runs from their headers.

    Rules
    -----
    * every run is a 4D NIfTI image (a 3D image is an error that says a 4D one is needed)
      with at least ``min_volumes`` volumes;
    * all runs have the same voxel grid: shape of the first three axes equal and affines
      equal within ``numpy.allclose`` (nilearn's ``check_same_fov`` rule);
    * with ``t_r`` given, a header repetition time differing by more than 1% gives a
      warning (the given ``t_r`` is used);
    * uncompressed files shorter than their header announces are errors.

    Non-finite voxel values are not checked here (that needs the data): see
    :func:`check_timeseries`, which the data loader applies while streaming.

    Returns
    -------
    list of nibabel images
        Lazily loaded (no data read yet).
    """
    if isinstance(imgs, str | os.PathLike) or hasattr(imgs, "affine"):
        imgs = [imgs]
    imgs = list(imgs)
    if not imgs:
        raise ImageError("No BOLD image was given; expected at least one 4D run.")
    loaded = []
    for run, img in enumerate(imgs):
        label = f"BOLD run {run + 1}"
        image, name = _load_header_only(img, f"{label} image")
        name = name or label
        if len(image.shape) != 4:
            raise ImageError(
                f"The BOLD image {name} is {len(image.shape)}D with shape {image.shape}; "
                "expected a 4D image (x, y, z, time)."
            )
        if image.shape[3] < min_volumes:
            raise ImageError(
                f"The BOLD image {name} has {image.shape[3]} volume(s); expected at least "
                f"{min_volumes} to fit a GLM."
            )
        if t_r is not None:
            _check_header_tr(image, name, t_r)
        loaded.append((image, name))
    ref, ref_name = loaded[0]
    for image, name in loaded[1:]:
        if image.shape[:3] != ref.shape[:3]:
            raise ImageError(
                f"The BOLD images have different grids: {name} has shape {image.shape[:3]} "
                f"but {ref_name} has {ref.shape[:3]}; expected every run in the same space "
                "(resample them, or pass target_affine/target_shape)."
            )
        if not np.allclose(image.affine, ref.affine):
            raise ImageError(
                f"The BOLD images have different affines: {name} differs from {ref_name}; "
                "expected every run in the same space (resample them, or pass "
                "target_affine/target_shape).\n"
                f"{name}:\n{np.array2string(image.affine, precision=4)}\n"
                f"{ref_name}:\n{np.array2string(ref.affine, precision=4)}"
            )
    return [image for image, _ in loaded]


def _check_header_tr(image, name, t_r):
    try:
        zoom = float(image.header.get_zooms()[3])
        unit = image.header.get_xyzt_units()[1]
    except Exception:  # pragma: no cover - non-NIfTI headers
        return
    if unit == "msec":
        zoom /= 1000.0
    elif unit == "usec":
        zoom /= 1e6
    if zoom > 0 and abs(zoom - t_r) > 0.01 * t_r:
        warnings.warn(
            f"The header of {name} gives a repetition time of {zoom:g} s but t_r={t_r:g} s "
            "was given; t_r is used.",
            UserWarning,
            stacklevel=3,
        )


def check_mask(mask_img, bold_img=None, *, min_overlap=0.5):
    """Check a mask image, and that it covers the data.

    Rules
    -----
    * 3D (a 4D image with one volume is accepted and squeezed), finite values, and
      exactly two values, one of them 0 (nilearn's rule), or all-nonzero. An empty
      (all-zero) mask is an error.
    * with ``bold_img``: a mask on the BOLD grid is used as is. A mask on another grid is
      resampled by the model; it is an error when none of its voxels falls inside the BOLD
      field of view (a mask in another space, e.g. MNI mask on native-space data), and a
      warning when less than ``min_overlap`` of them do.

    Returns
    -------
    nibabel.Nifti1Image
        The 3D mask as uint8 0/1 on its own grid.
    """
    import nibabel as nib

    mask, name = _load_header_only(mask_img, "mask image")
    name = name or "the mask"
    shape = mask.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise MaskError(f"The mask {name} has shape {mask.shape}; expected a 3D image.")
    data = np.asanyarray(mask.dataobj).reshape(shape)
    if not np.all(np.isfinite(data)):
        raise MaskError(f"The mask {name} contains NaN or infinite values; expected 0 and 1.")
    values = np.unique(data)
    if len(values) > 2 or (len(values) == 2 and 0 not in values):
        shown = values[:5].tolist()
        raise MaskError(
            f"The mask {name} has {len(values)} distinct values ({shown}"
            f"{', ...' if len(values) > 5 else ''}); expected a binary mask (0 and one "
            "other value). Threshold it first."
        )
    inside = data != 0
    n_inside = int(inside.sum())
    if n_inside == 0:
        raise MaskError(f"The mask {name} is empty (all zeros); expected some voxels set to 1.")
    result = nib.Nifti1Image(inside.astype(np.uint8), mask.affine)
    if bold_img is None:
        return result
    bold, bold_name = _load_header_only(bold_img, "BOLD image")
    bold_name = bold_name or "the BOLD image"
    if bold.shape[:3] == shape and np.allclose(bold.affine, mask.affine):
        return result
    fraction = _overlap_fraction(inside, mask.affine, bold.shape[:3], bold.affine)
    if fraction == 0:
        raise MaskError(
            f"The mask {name} does not overlap the field of view of {bold_name}: none of its "
            f"{n_inside} voxels falls inside the BOLD image. Is the mask in another space "
            "(e.g. MNI vs native)?"
        )
    if fraction < min_overlap:
        warnings.warn(
            f"Only {100 * fraction:.0f}% of the voxels of the mask {name} fall inside the "
            f"field of view of {bold_name}; is the mask in the same space?",
            UserWarning,
            stacklevel=2,
        )
    return result


def _overlap_fraction(inside, mask_affine, bold_shape, bold_affine, max_points=200_000):
    """Fraction of mask voxels whose centre falls inside the BOLD voxel grid."""
    ijk = np.argwhere(inside)
    if len(ijk) > max_points:  # a regular subsample is enough for a fraction
        ijk = ijk[:: int(np.ceil(len(ijk) / max_points))]
    world = ijk @ mask_affine[:3, :3].T + mask_affine[:3, 3]
    to_bold = np.linalg.inv(bold_affine)
    voxels = world @ to_bold[:3, :3].T + to_bold[:3, 3]
    bounds = np.asarray(bold_shape, dtype=float)
    within = np.all((voxels >= -0.5) & (voxels <= bounds - 0.5), axis=1)
    return float(within.mean())


def check_timeseries(data: np.ndarray, *, source=None, axis=0) -> np.ndarray:
    """Find voxels that cannot be modelled: any NaN/inf value, or constant over time.

    Rule: such voxels are left out of the fit (the caller removes them from the mask, so
    their outputs are 0 like any voxel outside the mask) and a warning gives their count.
    nilearn fits them and can return non-zero z for them.

    Parameters
    ----------
    data : array of shape (n_scans, n_voxels)
        Time along ``axis``.

    Returns
    -------
    numpy.ndarray of bool, shape (n_voxels,)
        True where the voxel is usable.
    """
    data = np.asarray(data)
    if axis != 0:
        data = np.moveaxis(data, axis, 0)
    finite = np.isfinite(data).all(axis=0)
    with np.errstate(invalid="ignore"):
        constant = np.all(data == data[:1], axis=0) if len(data) else np.ones(data.shape[1:])
    good = finite & ~constant.astype(bool)
    n_bad_finite = int((~finite).sum())
    n_constant = int((finite & constant.astype(bool)).sum())
    if n_bad_finite or n_constant:
        warnings.warn(
            f"{n_bad_finite} voxel(s) with NaN/inf values and {n_constant} voxel(s) constant "
            f"over time{_where(source)} are left out of the model (their outputs are 0).",
            UserWarning,
            stacklevel=2,
        )
    if not good.any():
        raise ImageError(
            f"No voxel{_where(source)} has a finite, varying time series; nothing to fit."
        )
    return good


# --------------------------------------------------------------------------------------
# design
# --------------------------------------------------------------------------------------
def design_rank(matrix) -> int:
    """Numerical rank of a design (numpy's default tolerance, ``S.max * max(n, p) * eps``).

    The residual degrees of freedom are ``n_scans - rank``; nilearn computes the rank with
    an absolute tolerance of ``eps`` and so counts ``n_scans - n_columns`` for designs that
    are rank-deficient.
    """
    return int(np.linalg.matrix_rank(np.asarray(matrix, dtype=np.float64)))


def collinear_columns(design: pd.DataFrame) -> list[list[str]]:
    """Groups of columns that are linear combinations of each other.

    Each group is the support of one vector of the design's null space (after a
    reduction to echelon form, so the groups are small).
    """
    matrix = np.asarray(design, dtype=np.float64)
    names = [str(c) for c in design.columns]
    _, singular, vt = np.linalg.svd(matrix, full_matrices=True)
    tol = singular.max() * max(matrix.shape) * np.finfo(float).eps if singular.size else 0
    rank = int((singular > tol).sum())
    null = vt[rank:]
    if null.size == 0:
        return []
    # Row-reduce the null-space basis so each vector involves as few columns as possible.
    basis = null.copy()
    pivot_row = 0
    for col in range(basis.shape[1]):
        if pivot_row >= basis.shape[0]:
            break
        best = pivot_row + int(np.argmax(np.abs(basis[pivot_row:, col])))
        if abs(basis[best, col]) < 1e-10:
            continue
        basis[[pivot_row, best]] = basis[[best, pivot_row]]
        basis[pivot_row] /= basis[pivot_row, col]
        for row in range(basis.shape[0]):
            if row != pivot_row:
                basis[row] -= basis[row, col] * basis[pivot_row]
        pivot_row += 1
    groups = []
    for vector in basis:
        scale = np.abs(vector).max()
        support = [names[i] for i in np.flatnonzero(np.abs(vector) > 1e-8 * scale)]
        if support and support not in groups:
            groups.append(support)
    return groups


def check_design(design, *, source=None, n_scans=None) -> pd.DataFrame:
    """Check a design matrix before fitting and return it as float64.

    Rules
    -----
    * a DataFrame with at least one column and one row, unique column names, numeric,
      finite values; ``n_scans`` rows when given.
    * more columns than scans, or as many (no residual degree of freedom), is an error.
    * a rank-deficient design is fitted (with the pseudo-inverse, as nilearn) but a warning
      names the groups of collinear columns; the residual degrees of freedom are
      ``n_scans - rank`` (see :func:`design_rank`), and contrasts of non-estimable
      combinations should not be interpreted.
    """
    import pandas as pd
    from pandas.api.types import is_numeric_dtype

    where = _where(source)
    if not isinstance(design, pd.DataFrame):
        raise DesignError(
            f"The design matrix{where} must be a pandas DataFrame with named columns; got "
            f"{type(design).__name__}."
        )
    if design.shape[1] == 0 or design.shape[0] == 0:
        raise DesignError(
            f"The design matrix{where} is empty (shape {design.shape}); expected scans x "
            "regressors."
        )
    names = [str(c) for c in design.columns]
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated:
        raise DesignError(
            f"The design matrix{where} has duplicated column names {duplicated} (a condition "
            "named like a confound or drift column?); expected unique names."
        )
    non_numeric = [str(c) for c in design.columns if not is_numeric_dtype(design[c])]
    if non_numeric:
        raise DesignError(
            f"The design matrix{where} has non-numeric columns {non_numeric}; expected numbers."
        )
    matrix = design.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(matrix)
    if bad.any():
        columns = [names[i] for i in np.flatnonzero(bad.any(axis=0))]
        raise DesignError(
            f"The design matrix{where} has NaN or infinite values in columns {columns}."
        )
    n_rows, n_cols = matrix.shape
    if n_scans is not None and n_rows != n_scans:
        raise DesignError(
            f"The design matrix{where} has {n_rows} rows but the run has {n_scans} scans; "
            "expected one row per scan."
        )
    if n_cols > n_rows:
        raise DesignError(
            f"The design matrix{where} has more regressors ({n_cols}) than scans ({n_rows}); "
            "the model cannot be estimated. Use fewer conditions/confounds or a lower "
            "high_pass."
        )
    rank = design_rank(matrix)
    if rank >= n_rows:
        raise DesignError(
            f"The design matrix{where} has rank {rank} with {n_rows} scans, leaving no "
            "residual degrees of freedom; expected fewer regressors than scans."
        )
    if rank < n_cols:
        groups = collinear_columns(design)
        listed = "; ".join("{" + ", ".join(group) + "}" for group in groups)
        warnings.warn(
            f"The design matrix{where} is rank-deficient (rank {rank} < {n_cols} columns); "
            f"collinear columns: {listed}. Their individual effects are not estimable; the "
            f"residual degrees of freedom are {n_rows - rank} (scans - rank).",
            UserWarning,
            stacklevel=2,
        )
    out = pd.DataFrame(matrix, columns=names, index=design.index)
    return out


# --------------------------------------------------------------------------------------
# contrasts
# --------------------------------------------------------------------------------------
def check_contrast(con, columns: Sequence[str], stat_type=None, *, name=None):
    """Check one contrast against the design columns.

    Parameters
    ----------
    con : str, array-like of shape (p,) or (q, p)
        An expression (parsed by :func:`glmflow.core.expressions.
        contrast_vector_from_expression`, never evaluated), a vector or a matrix.
    columns : sequence of str
        Design column names.
    stat_type : {None, "t", "F"}
        ``None``: ``"t"`` for one row, ``"F"`` for several.
    name : str, optional
        The contrast's name, for messages.

    Returns
    -------
    tuple
        ``(contrast, stat_type)``: a float64 vector for ``"t"``, a ``(q, p)`` matrix for
        ``"F"``.

    Rules
    -----
    * empty, non-numeric, NaN/inf or all-zero contrasts are errors.
    * longer than the design: error. Shorter: padded with zeros and a warning naming the
      padded columns (nilearn's rule).
    * ``"t"`` needs a single row; an ``"F"`` contrast's rows must be linearly independent
      (nilearn divides by the number of rows, not their rank, so dependent rows give a wrong
      F); an all-zero row is dependent.
    """
    from glmflow.core.expressions import contrast_vector_from_expression

    label = f"Contrast {name!r}" if name else "The contrast"
    columns = [str(c) for c in columns]
    p = len(columns)
    if stat_type not in (None, "t", "F"):
        raise ContrastError(
            f"{label}: stat_type={stat_type!r} is not valid; expected 't', 'F' or None."
        )
    if isinstance(con, str):
        try:
            matrix = contrast_vector_from_expression(con, columns)[None, :]
        except ContrastError as exc:
            if not name:
                raise
            named = ContrastError(f"{label}: {exc}")
            named.__dict__.update(exc.__dict__)
            raise named from exc
    else:
        if isinstance(con, list | tuple) and any(isinstance(v, str) for v in _flatten(con)):
            raise ContrastError(
                f"{label} mixes expressions and numbers ({con!r}); expected one expression, "
                "a vector or a matrix (per-run lists are split by the caller)."
            )
        try:
            matrix = np.asarray(con, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ContrastError(
                f"{label} must be an expression, a vector or a matrix of numbers; got {con!r}."
            ) from exc
        if matrix.ndim == 0:
            raise ContrastError(
                f"{label} is a single number ({con!r}); expected an expression, a vector of "
                f"length {p} or a matrix with {p} columns."
            )
        if matrix.ndim > 2:
            raise ContrastError(f"{label} has {matrix.ndim} dimensions; expected 1 or 2.")
        matrix = np.atleast_2d(matrix)
    if matrix.size == 0:
        raise ContrastError(
            f"{label} is empty; expected a vector of length {p} or a matrix with {p} columns "
            f"(design columns: {', '.join(columns)})."
        )
    if not np.all(np.isfinite(matrix)):
        raise ContrastError(f"{label} has NaN or infinite weights: {matrix.tolist()}.")
    q, n = matrix.shape
    if n > p:
        raise ContrastError(
            f"{label} has {n} weights per row but the design has {p} columns "
            f"({', '.join(columns)}); expected at most {p}."
        )
    if n < p:
        warnings.warn(
            f"{label} has {n} weights for {p} design columns; the remaining columns "
            f"({', '.join(columns[n:])}) get weight 0.",
            UserWarning,
            stacklevel=2,
        )
        matrix = np.hstack([matrix, np.zeros((q, p - n))])
    if not np.any(matrix):
        raise ContrastError(f"{label} has all weights zero; it tests nothing.")
    if stat_type is None:
        stat_type = "t" if q == 1 else "F"
    if stat_type == "t":
        if q > 1:
            raise ContrastError(
                f"{label} has {q} rows but stat_type='t' needs one; use stat_type='F' for a "
                "joint test."
            )
        return matrix[0], "t"
    rank = int(np.linalg.matrix_rank(matrix))
    if rank < q:
        zero_rows = [int(i) for i in np.flatnonzero(~matrix.any(axis=1))]
        detail = f" (row(s) {zero_rows} are all zeros)" if zero_rows else ""
        raise ContrastError(
            f"{label} is an F contrast with {q} rows of rank {rank}{detail}: its rows are "
            "linearly dependent, which would give a wrong F statistic. Remove the redundant "
            "rows."
        )
    return matrix, "F"


def _flatten(values):
    for value in values:
        if isinstance(value, list | tuple):
            yield from _flatten(value)
        else:
            yield value
