"""Hemodynamic response models and task regressors, as nilearn computes them.

A port of ``nilearn.glm.first_level.hemodynamic_models`` (nilearn 0.14, BSD-3-Clause,
Copyright the nilearn developers). The operations and their order are nilearn's, so the
regressors are bit-identical (tested against nilearn in ``tests/test_design_matrix_port.py``).

Why a port rather than an import: importing ``nilearn.glm`` loads scikit-learn,
``scipy.stats``, ``scipy.signal`` and nilearn's reporting, about 1.3 s in every process that
builds a design (the workflow's design step, each batch job, the facade). Here the gamma
density comes from ``scipy.special`` and the linear interpolation from NumPy, with
``scipy.stats.gamma.pdf``'s and ``scipy.interpolate.interp1d``'s arithmetic.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
from scipy import special
from scipy.linalg import pinv

#: The HRF models given by name (and None: no convolution).
HRF_MODELS = (
    "spm",
    "spm + derivative",
    "spm + derivative + dispersion",
    "fir",
    "glover",
    "glover + derivative",
    "glover + derivative + dispersion",
    None,
)


def check_hrf_model(hrf_model):
    """nilearn's type rule: a string, a callable, a list (of callables) or None."""
    if not (hrf_model is None or isinstance(hrf_model, (str, list)) or callable(hrf_model)):
        raise TypeError(
            "'hrf_model' must be a string, a callable, a list of callables or None; "
            f"got {hrf_model!r}."
        )


def _gamma_pdf(x, shape, loc, scale):
    """``scipy.stats.gamma.pdf(x, shape, loc=loc, scale=scale)``, with its arithmetic.

    scipy standardises ``x``, evaluates ``exp(xlogy(a - 1, x) - x - gammaln(a))`` on the
    support ``x >= 0`` (0 elsewhere) and divides by the scale.
    """
    x = np.asarray((np.asarray(x) - loc) / scale, dtype=np.float64)
    inside = x >= 0
    out = np.zeros(x.shape)
    values = x[inside]
    out[inside] = np.exp(special.xlogy(shape - 1.0, values) - values - special.gammaln(shape))
    out[inside] /= scale
    return out


def _gamma_difference_hrf(t_r, oversampling=50, time_length=32.0, onset=0.0, delay=6,
                          undershoot=16.0, dispersion=1.0, u_dispersion=1.0, ratio=0.167):
    """A peak gamma minus a scaled undershoot gamma, sampled every ``t_r / oversampling``."""
    dt = t_r / oversampling
    time_stamps = np.linspace(0, time_length, np.rint(float(time_length) / dt).astype(int))
    time_stamps -= onset
    peak = _gamma_pdf(time_stamps, delay / dispersion, loc=dt, scale=dispersion)
    under = _gamma_pdf(time_stamps, undershoot / u_dispersion, loc=dt, scale=u_dispersion)
    hrf = peak - ratio * under
    hrf /= hrf.sum()
    return hrf


def spm_hrf(t_r, oversampling=50, time_length=32.0, onset=0.0):
    """SPM's canonical HRF."""
    return _gamma_difference_hrf(t_r, oversampling, time_length, onset)


def glover_hrf(t_r, oversampling=50, time_length=32.0, onset=0.0):
    """Glover's HRF."""
    return _gamma_difference_hrf(t_r, oversampling, time_length, onset, delay=6,
                                 undershoot=12.0, dispersion=0.9, u_dispersion=0.9,
                                 ratio=0.48)


def _difference(values, values_plus_dt, dt):
    return 1.0 / dt * (values - values_plus_dt)


def _time_derivative(hrf, t_r, oversampling=50, time_length=32.0, onset=0.0, dt=0.1):
    return _difference(hrf(t_r, oversampling, time_length, onset),
                       hrf(t_r, oversampling, time_length, onset + dt), dt)


def _dispersion_derivative(t_r, oversampling=50, time_length=32.0, onset=0.0, undershoot=16,
                           ratio=0.167, dispersion=1.0, dt=0.01):
    def hrf(spread):
        return _gamma_difference_hrf(t_r, oversampling, time_length, onset,
                                     undershoot=undershoot, ratio=ratio, dispersion=spread)

    return _difference(hrf(dispersion), hrf(dispersion + dt), dt)


def spm_time_derivative(t_r, oversampling=50, time_length=32.0, onset=0.0):
    """Time derivative of SPM's HRF."""
    return _time_derivative(spm_hrf, t_r, oversampling, time_length, onset)


def glover_time_derivative(t_r, oversampling=50, time_length=32.0, onset=0.0):
    """Time derivative of Glover's HRF."""
    return _time_derivative(glover_hrf, t_r, oversampling, time_length, onset)


def spm_dispersion_derivative(t_r, oversampling=50, time_length=32.0, onset=0.0):
    """Dispersion derivative of SPM's HRF."""
    return _dispersion_derivative(t_r, oversampling, time_length, onset)


def glover_dispersion_derivative(t_r, oversampling=50, time_length=32.0, onset=0.0):
    """Dispersion derivative of Glover's HRF."""
    return _dispersion_derivative(t_r, oversampling, time_length, onset, undershoot=12.0,
                                  ratio=0.48, dispersion=0.9)


def _high_res_frame_count(frame_times, min_onset, oversampling):
    n_frames = frame_times.size
    low, high = np.min(frame_times), np.max(frame_times)
    count = (n_frames - 1) * 1.0 / (high - low)
    count *= (high * (1 + 1.0 / (n_frames - 1)) - low - min_onset) * oversampling
    return count + 1


def _sample_condition(exp_condition, frame_times, oversampling=50, min_onset=-24):
    """The condition's boxcar (onsets, durations, amplitudes) on the oversampled grid."""
    n_frames = frame_times.size
    min_onset = float(min_onset)
    n_high_res = _high_res_frame_count(frame_times, min_onset, oversampling)
    times = np.linspace(frame_times.min() + min_onset,
                        frame_times.max() * (1 + 1.0 / (n_frames - 1)),
                        np.rint(n_high_res).astype(int))
    onsets, durations, values = tuple(map(np.asanyarray, exp_condition))
    if (onsets < frame_times[0] + min_onset).any():
        warnings.warn(
            f"Some stimulus onsets are earlier than {frame_times[0] + min_onset} in the "
            "experiment and are thus not considered in the model.",
            UserWarning,
            stacklevel=4,
        )
    last = len(times)
    regressor = np.zeros_like(times).astype(np.float64)
    t_onset = np.minimum(np.searchsorted(times, onsets), last - 1)
    for t, v in zip(t_onset, values, strict=False):
        regressor[t] += v
    t_offset = np.minimum(np.searchsorted(times, onsets + durations), last - 1)
    # An event shorter than the grid step still lasts one step.
    for i, t in enumerate(t_offset):
        if t < last - 1 and t == t_onset[i]:
            t_offset[i] += 1
    for t, v in zip(t_offset, values, strict=False):
        regressor[t] -= v
    return np.cumsum(regressor), times


def _resample_regressor(high_res, high_res_times, frame_times):
    """Linear interpolation of each row of ``high_res`` at ``frame_times``.

    ``scipy.interpolate.interp1d(high_res_times, high_res)(frame_times).T`` inlined: the
    same bracketing, slope and evaluation, without importing scipy.interpolate.
    """
    x = np.asarray(high_res_times, dtype=np.float64)
    y = np.asarray(high_res, dtype=np.float64).T
    x_new = np.asarray(frame_times, dtype=np.float64)
    if (x_new < x[0]).any() or (x_new > x[-1]).any():
        raise ValueError("Frame times fall outside the oversampled regressor's time range.")
    index = np.searchsorted(x, x_new).clip(1, len(x) - 1).astype(int)
    low, high = index - 1, index
    slope = (y[high] - y[low]) / (x[high] - x[low])[:, None]
    return slope * (x_new - x[low])[:, None] + y[low]


def orthogonalize(X):
    """Orthogonalise every column of ``X`` against the previous ones, in place."""
    if X.size == X.shape[0]:
        return X
    for i in range(1, X.shape[1]):
        X[:, i] -= np.dot(np.dot(X[:, i], X[:, :i]), pinv(X[:, :i]))
    return X


def regressor_names(con_name, hrf_model, fir_delays=None):
    """Names of a condition's regressors under ``hrf_model``, as nilearn names them."""
    names = [con_name]
    if hrf_model in ("glover", "spm"):
        names = [con_name]
    elif hrf_model in ("glover + derivative", "spm + derivative"):
        names = [con_name, f"{con_name}_derivative"]
    elif hrf_model in ("spm + derivative + dispersion", "glover + derivative + dispersion"):
        names = [con_name, f"{con_name}_derivative", f"{con_name}_dispersion"]
    elif hrf_model == "fir":
        names = [f"{con_name}_delay_{int(i)}" for i in fir_delays]
    elif callable(hrf_model):
        names = [f"{con_name}_{hrf_model.__name__}"]
    elif isinstance(hrf_model, Iterable) and all(callable(model) for model in hrf_model):
        names = [f"{con_name}_{model.__name__}" for model in hrf_model]
    elif isinstance(hrf_model, Iterable) and not isinstance(hrf_model, str):
        names = [f"{con_name}_{i}" for i in range(len(hrf_model))]
    if len(np.unique(names)) != len(names):
        raise ValueError(f"Computed regressor names are not unique: {names}")
    return names


def hrf_kernels(hrf_model, t_r, oversampling=50, fir_delays=None):
    """The kernels each condition's boxcar is convolved with (one per regressor)."""
    custom_error = ("Could not process custom HRF model provided. Please refer to the "
                    "related documentation.")
    named = {
        "spm": (spm_hrf,),
        "spm + derivative": (spm_hrf, spm_time_derivative),
        "spm + derivative + dispersion": (spm_hrf, spm_time_derivative,
                                          spm_dispersion_derivative),
        "glover": (glover_hrf,),
        "glover + derivative": (glover_hrf, glover_time_derivative),
        "glover + derivative + dispersion": (glover_hrf, glover_time_derivative,
                                             glover_dispersion_derivative),
    }
    if isinstance(hrf_model, str) and hrf_model in named:
        return [model(t_r, oversampling) for model in named[hrf_model]]
    if hrf_model == "fir":
        return [np.hstack((np.zeros(f * oversampling), np.ones(oversampling) * 1.0 / oversampling))
                for f in fir_delays]
    if callable(hrf_model):
        try:
            return [hrf_model(t_r, oversampling)]
        except TypeError as exc:
            raise ValueError(custom_error) from exc
    if isinstance(hrf_model, Iterable) and len(hrf_model) == 0:
        raise ValueError("hrf_model is an empty list: give at least one HRF.")
    if isinstance(hrf_model, Iterable) and all(callable(model) for model in hrf_model):
        try:
            return [model(t_r, oversampling) for model in hrf_model]
        except TypeError as exc:
            raise ValueError(custom_error) from exc
    if hrf_model is None:
        return [np.hstack((1, np.zeros(oversampling - 1)))]
    raise ValueError(
        f'"{hrf_model}" is not a known hrf model. Use either a custom model or one of '
        f"{list(HRF_MODELS)}"
    )


def compute_regressor(exp_condition, hrf_model, frame_times, con_id="cond", oversampling=50,
                      fir_delays=None, min_onset=-24):
    """One condition's regressors: its boxcar convolved with the HRF, at the frame times.

    Parameters
    ----------
    exp_condition : tuple of 3 arrays
        Onsets, durations and amplitudes of the condition's events (seconds).
    hrf_model : str, callable, list of callables or None
        As ``nilearn.glm.first_level.compute_regressor``.
    frame_times : ndarray, shape (n_scans,)
    con_id : str
        The condition's name (prefix of the regressor names).
    oversampling : int, default=50
    fir_delays : list of int, optional
        FIR delays in scans (``hrf_model="fir"``).
    min_onset : float, default=-24
        Events earlier than ``frame_times[0] + min_onset`` are left out.

    Returns
    -------
    regressors : ndarray, shape (n_scans, n_regressors)
    names : list of str
    """
    check_hrf_model(hrf_model)
    if fir_delays is not None:
        fir_delays = [int(x) for x in fir_delays]
    oversampling = int(oversampling)
    t_r = float(np.min(np.diff(frame_times)))
    boxcar, times = _sample_condition(exp_condition, frame_times, oversampling, min_onset)
    kernels = hrf_kernels(hrf_model, t_r, oversampling, fir_delays)
    convolved = np.array([np.convolve(boxcar, h)[: boxcar.size] for h in kernels])
    if hrf_model == "fir" and oversampling > 1:
        regressors = _resample_regressor(convolved[:, oversampling - 1:],
                                         times[: 1 - oversampling], frame_times)
    else:
        regressors = _resample_regressor(convolved, times, frame_times)
    if hrf_model != "fir":
        regressors = orthogonalize(regressors)
    return regressors, regressor_names(con_id, hrf_model, fir_delays=fir_delays)
