"""glmflow's port of nilearn's design-matrix code against nilearn itself, bit for bit.

``glmflow.core.hrf.compute_regressor`` and
``glmflow.core.design_matrix.make_first_level_design_matrix`` re-implement nilearn 0.14's
functions of the same name so that glmflow.core need not import nilearn (1.3 s). Every case
runs both implementations on identical (privately copied) inputs and requires identical
values, column names (and their types), index, column order, warnings and exception types.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import compute_regressor as nl_compute_regressor
from nilearn.glm.first_level import make_first_level_design_matrix as nl_make_design

from glmflow.core.design_matrix import make_first_level_design_matrix as gf_make_design
from glmflow.core.hrf import compute_regressor as gf_compute_regressor

# Warnings raised by pandas/numpy internals (deprecations) are not part of the contract.
IGNORED_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _normalise(message):
    """Make a warning message comparable across processes.

    nilearn lists unexpected event columns in ``set`` order, which depends on string hashing,
    so that list is compared as a sorted list.
    """
    prefix = "The following unexpected columns in events data will be ignored: "
    if message.startswith(prefix):
        return prefix + ", ".join(sorted(message[len(prefix):].split(", ")))
    return message


def call(func, *args, **kwargs):
    """Run ``func`` on deep copies of the inputs; return ``(result, {(category, message)})``."""
    args, kwargs = copy.deepcopy((args, kwargs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = func(*args, **kwargs)
    return result, {(w.category, _normalise(str(w.message))) for w in caught
                    if not issubclass(w.category, IGNORED_CATEGORIES)}


def assert_same_values(ours, theirs):
    """Bit-identical arrays of the same shape and dtype."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"shape {ours.shape} != nilearn's {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"dtype {ours.dtype} != nilearn's {theirs.dtype}"
    diff = np.abs(ours.astype(float) - theirs.astype(float))
    assert np.array_equal(ours, theirs), (
        f"not bit-identical: max |diff| = {np.nanmax(diff) if diff.size else 0:.3e} in "
        f"{np.count_nonzero(diff)} of {diff.size} entries")


def assert_same_design(ours, theirs):
    """Same columns (values, order and types), index, dtypes and values."""
    assert isinstance(ours, pd.DataFrame)
    pd.testing.assert_index_equal(ours.columns, theirs.columns, exact=True)
    # nilearn keeps non-string trial types as numpy scalars (np.int64(1), not 1 nor "1")
    assert [type(c) for c in ours.columns] == [type(c) for c in theirs.columns]
    pd.testing.assert_index_equal(ours.index, theirs.index, exact=True)
    assert ours.dtypes.tolist() == theirs.dtypes.tolist()
    assert_same_values(ours.to_numpy(), theirs.to_numpy())


def check_design(**kwargs):
    """Build the design with both implementations; compare designs and warnings.

    Returns nilearn's design and warnings so that a test can check what its case exercises.
    """
    theirs, their_warnings = call(nl_make_design, **kwargs)
    ours, our_warnings = call(gf_make_design, **kwargs)
    assert our_warnings == their_warnings
    assert_same_design(ours, theirs)
    return theirs, their_warnings


def check_regressor(*args, **kwargs):
    """Same as ``check_design`` for ``compute_regressor``."""
    (theirs, their_names), their_warnings = call(nl_compute_regressor, *args, **kwargs)
    (ours, our_names), our_warnings = call(gf_compute_regressor, *args, **kwargs)
    assert our_warnings == their_warnings
    assert list(our_names) == list(their_names)
    assert [type(n) for n in our_names] == [type(n) for n in their_names]
    assert_same_values(ours, theirs)
    return theirs, their_warnings


def check_raises(nilearn_func, port_func, expected, *args, **kwargs):
    """nilearn raises ``expected``; the port raises the same type, with a message.

    ``expected`` may be a pair ``(nilearn's type, the port's type)`` where the port
    deliberately raises another type.
    """
    theirs_expected, expected = expected if isinstance(expected, tuple) else (expected,) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(theirs_expected) as theirs:
            nilearn_func(*copy.deepcopy(args), **copy.deepcopy(kwargs))
        assert type(theirs.value) is theirs_expected  # the case exercises this error
        try:
            port_func(*copy.deepcopy(args), **copy.deepcopy(kwargs))
        except Exception as exc:  # noqa: BLE001 - any type, compared below
            ours = exc
        else:
            pytest.fail(f"port did not raise; nilearn raised {theirs.value!r}")
    assert type(ours) is expected, f"port raised {ours!r}; nilearn raised {theirs.value!r}"
    assert str(ours).strip()


def linspace_times(n_scans, t_r, slice_time_ref=0.0):
    """Frame times as FirstLevelModel builds them (slice_time_ref shifts the start)."""
    return np.linspace(slice_time_ref * t_r, (n_scans - 1 + slice_time_ref) * t_r, n_scans)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

# All runs last at least 118 s so that the events below fall inside each of them.
FRAME_TIMES = {
    "tr2": np.arange(60) * 2.0,
    "tr0.72-shifted": linspace_times(170, 0.72, 0.5),  # starts at 0.36 s
    "tr2.5-shifted": linspace_times(50, 2.5, 0.3),  # starts at 0.75 s
    "tr2-int": np.arange(0, 120, 2),  # integer frame times: the index stays int64
    "jittered": np.arange(60) * 2.0 + np.random.default_rng(3).uniform(-0.05, 0.05, 60),
}


def base_events():
    """Three conditions, block and short events, one onset off the TR grid."""
    return pd.DataFrame({
        "onset": [10.0, 30.5, 55.0, 72.0, 95.3, 110.0],
        "duration": [5.0, 5.0, 2.5, 10.0, 5.0, 3.0],
        "trial_type": ["a", "b", "a", "c", "b", "a"],
    })


def gamma_hrf(t_r, oversampling):
    """A custom HRF: a gamma density peaking at 5 s on nilearn's oversampled grid."""
    t = np.arange(0, 32, t_r / oversampling)
    h = t ** 5 * np.exp(-t)
    return h / h.sum()


def gamma_hrf_derivative(t_r, oversampling):
    """Time derivative of ``gamma_hrf``, the second function of a list-of-callables model."""
    return np.gradient(gamma_hrf(t_r, oversampling))


HRF_MODELS = [
    pytest.param("spm", id="spm"),
    pytest.param("spm + derivative", id="spm+deriv"),
    pytest.param("spm + derivative + dispersion", id="spm+deriv+disp"),
    pytest.param("glover", id="glover"),
    pytest.param("glover + derivative", id="glover+deriv"),
    pytest.param("glover + derivative + dispersion", id="glover+deriv+disp"),
    pytest.param("fir", id="fir"),
    pytest.param(None, id="none"),
    pytest.param(gamma_hrf, id="callable"),
    pytest.param([gamma_hrf, gamma_hrf_derivative], id="callables"),
]


def _fir_delays(hrf_model):
    return [0, 1, 2] if hrf_model == "fir" else None


# --------------------------------------------------------------------------------------------
# compute_regressor
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", list(FRAME_TIMES))
@pytest.mark.parametrize("oversampling", [16, 50])
@pytest.mark.parametrize("hrf_model", HRF_MODELS)
def test_compute_regressor_hrf_models(hrf_model, oversampling, frames):
    events = base_events()
    condition = (events.onset.to_numpy(), events.duration.to_numpy(), np.ones(len(events)))
    check_regressor(condition, hrf_model, FRAME_TIMES[frames], con_id="x",
                    oversampling=oversampling, fir_delays=_fir_delays(hrf_model))


CONDITIONS = {
    # (onsets, durations, amplitudes); lists, not arrays, like hand-written conditions
    "modulated": ([10, 30.5, 55, 72], [5, 0, 2.5, 10], [1.0, -0.5, 2.0, 0.25]),
    "zero-durations": ([10.0, 31.0, 60.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
    "past-the-end": ([100.0, 117.0, 130.0], [30.0, 1.0, 5.0], [1.0, 1.0, 1.0]),
    "before-start": ([-30.0, -10.0, 20.0], [5.0, 5.0, 5.0], [1.0, 1.0, 1.0]),
    "same-onset": ([20.0, 20.0, 50.0], [5.0, 5.0, 5.0], [0.1, 0.2, 0.3]),
}


@pytest.mark.parametrize("min_onset", [-24, 0])
@pytest.mark.parametrize("hrf_model", ["glover", "spm + derivative + dispersion", "fir", None])
@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_compute_regressor_conditions(condition, hrf_model, min_onset):
    """Amplitudes, delta events, clipping at both ends; default ``con_id``."""
    _, their_warnings = check_regressor(
        CONDITIONS[condition], hrf_model, FRAME_TIMES["tr2.5-shifted"],
        fir_delays=[1, 3] if hrf_model == "fir" else None, min_onset=min_onset)
    if condition == "before-start":  # the case exercises the early-onset warning
        assert their_warnings


def test_compute_regressor_accepts_a_3_by_n_array():
    condition = np.array([[10.0, 40.0, 80.0], [5.0, 5.0, 1.0], [1.0, 2.0, 1.0]])
    check_regressor(condition, "glover + derivative", FRAME_TIMES["tr2"])


@pytest.mark.parametrize("fir_delays", [[0, 1, 2], [1, 3], [2, 0, 1], [0.0, 1.0],
                                        np.array([0, 4, 8])],
                         ids=["0-1-2", "1-3", "unsorted", "floats", "array"])
@pytest.mark.parametrize("oversampling", [1, 16, 50])
def test_compute_regressor_fir_delays(fir_delays, oversampling):
    """FIR delays become ints in the names; oversampling=1 takes nilearn's other branch."""
    events = base_events()
    condition = (events.onset, events.duration, np.ones(len(events)))
    check_regressor(condition, "fir", FRAME_TIMES["tr2"], con_id="a",
                    oversampling=oversampling, fir_delays=fir_delays)


def _same_name_hrf(t_r, oversampling):
    return gamma_hrf(t_r, oversampling)


def _wrong_signature_hrf(t_r):
    return np.ones(3)


def _same_name_hrf_twin(t_r, oversampling):
    return gamma_hrf_derivative(t_r, oversampling)


_same_name_hrf_twin.__name__ = _same_name_hrf.__name__  # two functions, one regressor name


@pytest.mark.parametrize("hrf_model, kwargs, expected", [
    pytest.param("foo", {}, ValueError, id="unknown-model"),
    # make_first_level_design_matrix lower-cases the model, compute_regressor does not
    pytest.param("SPM", {}, ValueError, id="upper-case-model"),
    pytest.param("fir", {"fir_delays": None}, TypeError, id="fir-without-delays"),
    pytest.param([_same_name_hrf, _same_name_hrf_twin], {}, ValueError, id="duplicate-names"),
    pytest.param(_wrong_signature_hrf, {}, ValueError, id="wrong-signature"),
    # no kernels: nilearn's interp1d rejects the empty regressor array
    pytest.param([], {}, ValueError, id="empty-list"),
    # frame_times[0] below the oversampled grid: nilearn's interp1d raises
    pytest.param("glover", {"min_onset": 5}, ValueError, id="positive-min-onset"),
    # nilearn's check_params type check
    pytest.param((gamma_hrf,), {}, TypeError, id="tuple-of-callables"),
    pytest.param(1, {}, TypeError, id="int-model"),
])
def test_compute_regressor_errors(hrf_model, kwargs, expected):
    condition = ([10.0, 40.0], [5.0, 5.0], [1.0, 1.0])
    check_raises(nl_compute_regressor, gf_compute_regressor, expected,
                 condition, hrf_model, FRAME_TIMES["tr2"], **kwargs)


# --------------------------------------------------------------------------------------------
# make_first_level_design_matrix: hrf models, drifts, FIR
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", list(FRAME_TIMES))
@pytest.mark.parametrize("oversampling", [16, 50])
@pytest.mark.parametrize("hrf_model", HRF_MODELS)
def test_design_hrf_models(hrf_model, oversampling, frames):
    check_design(frame_times=FRAME_TIMES[frames], events=base_events(),
                 hrf_model=hrf_model, fir_delays=_fir_delays(hrf_model),
                 oversampling=oversampling)


@pytest.mark.parametrize("hrf_model", ["Glover + Derivative", "SPM", "FIR"])
def test_design_lower_cases_hrf_model(hrf_model):
    check_design(frame_times=FRAME_TIMES["tr2"], events=base_events(),
                 hrf_model=hrf_model, fir_delays=[0, 2])


DRIFTS = [
    pytest.param({"drift_model": "cosine", "high_pass": 0.01}, id="cosine-0.01"),
    pytest.param({"drift_model": "cosine", "high_pass": 0.03}, id="cosine-0.03"),
    pytest.param({"drift_model": "cosine", "high_pass": 0.002}, id="cosine-no-columns"),
    pytest.param({"drift_model": "cosine", "high_pass": 0}, id="cosine-0"),
    # high_pass * dt >= 0.5: nilearn warns, and the design is singular (full_rank regularises)
    pytest.param({"drift_model": "cosine", "high_pass": 0.7}, id="cosine-saturated"),
    pytest.param({"drift_model": "Cosine", "high_pass": 0.01}, id="Cosine"),
    pytest.param({"drift_model": "polynomial", "drift_order": 0}, id="poly-0"),
    pytest.param({"drift_model": "polynomial", "drift_order": 1}, id="poly-1"),
    pytest.param({"drift_model": "polynomial", "drift_order": 2}, id="poly-2"),
    pytest.param({"drift_model": "polynomial", "drift_order": 3}, id="poly-3"),
    pytest.param({"drift_model": "POLYNOMIAL", "drift_order": 2.0}, id="POLY-2.0"),
    pytest.param({"drift_model": None}, id="none"),
]


@pytest.mark.parametrize("with_events", [True, False], ids=["events", "drift-only"])
@pytest.mark.parametrize("frames", list(FRAME_TIMES))
@pytest.mark.parametrize("drift", DRIFTS)
def test_design_drift_models(drift, frames, with_events):
    theirs, their_warnings = check_design(frame_times=FRAME_TIMES[frames],
                                          events=base_events() if with_events else None,
                                          **drift)
    if drift.get("high_pass") == 0.7:  # the case really exercises the saturation warning
        assert any("saturate the design matrix" in m for _, m in their_warnings)
    if drift.get("high_pass") in (0, 0.002):  # the case really has no cosine columns
        assert theirs.columns[-1] == "constant"
        assert not any(str(c).startswith("drift_") for c in theirs.columns)


@pytest.mark.parametrize("oversampling", [16, 50])
@pytest.mark.parametrize("fir_delays", [[0, 1, 2], [1, 3], None], ids=["0-1-2", "1-3", "default"])
def test_design_fir_delays(fir_delays, oversampling):
    check_design(frame_times=FRAME_TIMES["tr2.5-shifted"], events=base_events(),
                 hrf_model="fir", fir_delays=fir_delays, oversampling=oversampling)


# --------------------------------------------------------------------------------------------
# make_first_level_design_matrix: events
# --------------------------------------------------------------------------------------------

def _duplicated():
    events = base_events()
    # three copies of the first event with amplitudes whose sum depends on summation order
    extra = pd.concat([events.iloc[[0, 0, 3]]], ignore_index=True)
    events = pd.concat([events, extra], ignore_index=True)
    events["modulation"] = [0.1, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.3, 1.0]
    return events


def _early(onsets):
    events = base_events()
    early = pd.DataFrame({"onset": onsets, "duration": 4.0, "trial_type": "b"})
    return pd.concat([events, early], ignore_index=True)


# name -> (events builder, extra kwargs, substring of a warning nilearn must raise or None)
EVENTS = {
    "plain": (base_events, {}, None),
    "no-trial-type": (lambda: base_events().drop(columns="trial_type"), {},
                      "'trial_type' column not found"),
    "modulation": (lambda: base_events().assign(modulation=[1, 0.5, -1, 2, 0.25, 3]), {},
                   None),
    # pandas' groupby sum skips NaN, so nilearn models a NaN modulation as 0
    "nan-modulation": (lambda: base_events().assign(modulation=[np.nan, 1, 1, 1, 1, 1]), {},
                       None),
    "duplicates": (_duplicated, {}, "Duplicated events were detected"),
    "zero-durations": (lambda: base_events().assign(duration=[0, 5, 0, 10, 0, 3.0]), {},
                       "null duration"),
    "extra-columns": (lambda: base_events().assign(response_time=1.2, accuracy=1), {},
                      "unexpected columns"),
    "unsorted": (lambda: base_events().sample(frac=1, random_state=0), {}, None),
    "int-trial-types": (lambda: base_events().assign(trial_type=[1, 2, 1, 3, 2, 1]), {}, None),
    "int-trial-types-zero-durations": (
        lambda: base_events().assign(trial_type=[3, 2, 3, 1, 2, 3], duration=[0, 0, 5, 0, 5, 5.0]),
        {}, "null duration"),
    # groupby drops missing trial types, which nilearn then reports as duplicates
    "missing-trial-type": (lambda: base_events().assign(trial_type=["a", None, "a", "c", "b",
                                                                    "a"]),
                           {}, "Duplicated events were detected"),
    "before-min-onset-default": (lambda: _early([-30.0, -10.0]), {}, "earlier than"),
    "before-min-onset-0": (lambda: _early([-4.0, -1.0]), {"min_onset": 0}, "earlier than"),
    "negative-within-min-onset": (lambda: _early([-10.0]), {}, None),
    "past-the-end": (lambda: _early([112.0, 125.0]), {}, None),
    "int-columns": (lambda: base_events().assign(onset=[10, 30, 55, 72, 95, 110],
                                                 duration=[5, 5, 2, 10, 5, 3]), {}, None),
    # nilearn casts non-numeric onset/duration columns to float
    "string-onsets": (lambda: base_events().assign(onset=["10", "30.5", "55", "72", "95.3",
                                                          "110"]), {}, None),
    "single-event": (lambda: base_events().iloc[[1]], {}, None),
    "no-rows": (lambda: base_events().iloc[:0], {}, None),
    "none": (lambda: None, {}, None),
}


@pytest.mark.parametrize("hrf_model", ["glover", "spm + derivative + dispersion", "fir"])
@pytest.mark.parametrize("case", list(EVENTS))
def test_design_events(case, hrf_model):
    build, kwargs, expected_warning = EVENTS[case]
    _, their_warnings = check_design(frame_times=FRAME_TIMES["tr2"], events=build(),
                                     hrf_model=hrf_model, fir_delays=[1, 3], **kwargs)
    if expected_warning:  # the case really exercises this warning
        assert any(expected_warning in message for _, message in their_warnings)


@pytest.mark.parametrize("container", ["tsv", "csv", "pathlib", "list"])
def test_design_events_containers(tmp_path, container):
    """nilearn also reads events from a TSV/CSV path and takes the first of a list."""
    events = base_events()
    path = tmp_path / f"events.{container if container == 'csv' else 'tsv'}"
    events.to_csv(path, sep="," if container == "csv" else "\t", index=False)
    given = {"tsv": str(path), "csv": str(path), "pathlib": path, "list": [events]}[container]
    check_design(frame_times=FRAME_TIMES["tr2"], events=given,
                 hrf_model="spm + derivative")


@pytest.mark.parametrize("drift_model", ["cosine", "polynomial", None])
@pytest.mark.parametrize("events", [True, False], ids=["events", "drift-only"])
def test_design_float32_frame_times(events, drift_model):
    """float32 frame times: a float32 index, and a float32 design for drift-only ``None``."""
    frame_times = linspace_times(60, 2.0, 0.5).astype(np.float32)
    check_design(frame_times=frame_times, events=base_events() if events else None,
                 hrf_model="glover + derivative + dispersion", drift_model=drift_model,
                 drift_order=2)


def test_design_does_not_modify_its_inputs():
    events = base_events().sample(frac=1, random_state=1).drop(columns="trial_type")
    add_regs = pd.DataFrame({"motion": np.linspace(-1, 1, 60)})
    frame_times = FRAME_TIMES["tr2"].copy()
    before = (events.copy(), add_regs.copy(), frame_times.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gf_make_design(frame_times, events, add_regs=add_regs)
    pd.testing.assert_frame_equal(events, before[0])
    pd.testing.assert_frame_equal(add_regs, before[1])
    np.testing.assert_array_equal(frame_times, before[2])


# --------------------------------------------------------------------------------------------
# make_first_level_design_matrix: additional regressors and full rank
# --------------------------------------------------------------------------------------------

def _regs(n_cols=2, seed=0):
    return np.random.default_rng(seed).normal(size=(60, n_cols))


ADD_REGS = {
    "array": ({"add_regs": _regs()}, True),
    "array-named": ({"add_regs": _regs(), "add_reg_names": ["motion_x", "motion_y"]}, True),
    "array-one-column": ({"add_regs": _regs(1)}, True),
    "int-array": ({"add_regs": np.arange(120).reshape(60, 2) % 7}, True),
    "dataframe": ({"add_regs": pd.DataFrame(_regs(), columns=["csf", "wm"])}, True),
    # a DataFrame's own column names win; nilearn ignores add_reg_names (even a bad length)
    "dataframe-ignores-names": ({"add_regs": pd.DataFrame(_regs(), columns=["csf", "wm"]),
                                 "add_reg_names": ["ignored"]}, True),
    "without-events": ({"add_regs": _regs(3)}, False),
    "dataframe-without-events": ({"add_regs": pd.DataFrame(_regs(), columns=["csf", "wm"])},
                                 False),
}


@pytest.mark.parametrize("case", list(ADD_REGS))
def test_design_add_regs(case):
    kwargs, with_events = ADD_REGS[case]
    check_design(frame_times=FRAME_TIMES["tr2"],
                 events=base_events() if with_events else None, **kwargs)


@pytest.mark.parametrize("drift_model", ["cosine", "polynomial", None])
def test_design_rank_deficient_is_regularised(drift_model):
    """A duplicated confound makes the design singular: full_rank warns and regularises."""
    regs = _regs(2)
    regs = np.column_stack([regs, regs[:, 0]])
    _, their_warnings = check_design(frame_times=FRAME_TIMES["tr2"],
                                     events=base_events(), add_regs=regs,
                                     drift_model=drift_model)
    assert (UserWarning, "Matrix is singular at working precision, regularizing...") in \
        their_warnings


# --------------------------------------------------------------------------------------------
# make_first_level_design_matrix: errors
# --------------------------------------------------------------------------------------------

def _with_nan(frame, column, row=2):
    frame = frame.copy()
    frame[column] = frame[column].astype(float)
    frame.loc[row, column] = np.nan
    return frame


ERRORS = [
    pytest.param({"hrf_model": "foo"}, ValueError, id="unknown-hrf-model"),
    pytest.param({"add_regs": _regs(2), "add_reg_names": ["x"]}, ValueError,
                 id="add-reg-names-length"),
    pytest.param({"add_regs": np.where(np.eye(60, 2) > 0, np.nan, 0.0)}, ValueError,
                 id="nan-add-regs"),
    pytest.param({"add_regs": _regs(1), "add_reg_names": ["constant"]}, ValueError,
                 id="name-clash-constant"),
    pytest.param({"add_regs": _regs(2), "add_reg_names": ["x", "x"]}, ValueError,
                 id="name-clash-add-regs"),
    pytest.param({"events": base_events().assign(trial_type="drift_1")}, ValueError,
                 id="name-clash-trial-type-drift"),
    pytest.param({"events": base_events().assign(trial_type="reg0"), "add_regs": _regs(1)},
                 ValueError, id="name-clash-trial-type-reg"),
    pytest.param({"events": base_events().drop(columns="onset")}, ValueError, id="no-onset"),
    pytest.param({"events": base_events().drop(columns="duration")}, ValueError,
                 id="no-duration"),
    pytest.param({"events": _with_nan(base_events(), "onset")}, ValueError, id="nan-onset"),
    pytest.param({"events": _with_nan(base_events(), "duration")}, ValueError,
                 id="nan-duration"),
    pytest.param({"events": base_events().assign(onset="soon")}, ValueError,
                 id="non-numeric-onset"),
    pytest.param({"events": {"onset": [1.0], "duration": [1.0]}}, TypeError, id="events-dict"),
    pytest.param({"events": "events.txt"}, ValueError, id="events-bad-suffix"),
    pytest.param({"drift_model": "spline"}, NotImplementedError, id="unknown-drift"),
    # nilearn checks this with an ``assert`` (AssertionError, gone under ``python -O``); the
    # port raises ValueError with the same message (see check_raises' ``port_expected``).
    pytest.param({"add_regs": np.ones((59, 1))}, (AssertionError, ValueError),
                 id="add-regs-length"),
    pytest.param({"add_regs": np.ones(60)}, (AssertionError, ValueError), id="add-regs-1d"),
    pytest.param({"hrf_model": [_same_name_hrf, _same_name_hrf_twin]}, ValueError,
                 id="callables-same-name"),
    pytest.param({"hrf_model": _wrong_signature_hrf}, ValueError, id="callable-bad-signature"),
    pytest.param({"hrf_model": []}, ValueError, id="hrf-model-empty-list"),
    pytest.param({"min_onset": 5}, ValueError, id="positive-min-onset"),
    pytest.param({"high_pass": None}, TypeError, id="high-pass-none"),
    # nilearn's check_params type checks
    pytest.param({"hrf_model": (gamma_hrf,)}, TypeError, id="hrf-model-tuple"),
    pytest.param({"hrf_model": 1}, TypeError, id="hrf-model-int"),
    pytest.param({"high_pass": "0.01"}, TypeError, id="high-pass-string"),
    pytest.param({"high_pass": True}, TypeError, id="high-pass-bool"),
]


@pytest.mark.parametrize("kwargs, expected", ERRORS)
def test_design_errors(kwargs, expected):
    kwargs = {"events": base_events(), **kwargs}
    check_raises(nl_make_design, gf_make_design, expected, FRAME_TIMES["tr2"], **kwargs)


# --------------------------------------------------------------------------------------------
# The point of the port
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["glmflow.core.design_matrix", "glmflow.core.hrf"])
def test_port_imports_neither_nilearn_nor_slow_scipy(module):
    """Importing the port pulls in neither nilearn/sklearn nor scipy.stats/interpolate/signal."""
    code = (f"import {module}, sys; bad=[m for m in sys.modules if m.split('.')[0] in "
            "('nilearn','sklearn') or m.startswith('scipy.stats') or "
            "m.startswith('scipy.interpolate') or m.startswith('scipy.signal')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
