"""The catalogue of bad inputs: each raises the right error class with a message that names
the parameter/file/column, what was found and what was expected.

One parametrized case per bad input; each case is a function of a small ``env`` (tmp_path,
monkeypatch) that must raise ``error`` with every string of ``words`` in its message.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from glmflow.core import validation as V
from glmflow.core.errors import (
    ConfoundsError,
    ContrastError,
    DesignError,
    EventsError,
    GLMFlowError,
    ImageError,
    InputFileError,
    MaskError,
    OutputError,
    ParameterError,
    SampleMaskError,
)

# --------------------------------------------------------------------------------------
# small inputs
# --------------------------------------------------------------------------------------
N_SCANS = 50
T_R = 2.0


def events(**columns):
    base = {
        "onset": [10.0, 30.0, 50.0, 70.0],
        "duration": [2.0, 2.0, 2.0, 2.0],
        "trial_type": ["audio", "video", "audio", "video"],
    }
    base.update(columns)
    return pd.DataFrame({k: v for k, v in base.items() if v is not None})


def confounds(n=N_SCANS, **columns):
    rng = np.random.default_rng(0)
    base = {"trans_x": rng.normal(size=n), "rot_y": rng.normal(size=n)}
    base.update(columns)
    return pd.DataFrame(base)


def design(n=N_SCANS, p=4, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"c{i}" for i in range(p)])
    frame["constant"] = 1.0
    return frame


def write_img(path, data, affine=None):
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    nib.save(img, path)
    return str(path)


def bold(env, name="bold.nii.gz", shape=(4, 5, 6, 10), affine=None):
    rng = np.random.default_rng(1)
    data = rng.normal(100, 1, size=shape).astype(np.float32)
    return write_img(env.tmp_path / name, data, affine)


def mask_data(shape=(4, 5, 6)):
    data = np.zeros(shape, dtype=np.uint8)
    data[1:3, 1:4, 1:5] = 1
    return data


@dataclass
class Env:
    tmp_path: Any
    monkeypatch: Any

    def file(self, name, content: bytes | str = b""):
        path = self.tmp_path / name
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        return str(path)


@dataclass
class Case:
    id: str
    run: Any  # function(env) -> anything; must raise
    error: type
    words: tuple[str, ...]


CASES: list[Case] = []


def case(id, error, *words):
    def register(run):
        CASES.append(Case(id, run, error, words))
        return run

    return register


def add(id, error, words, run):
    CASES.append(Case(id, run, error, tuple(words)))


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------
P = ParameterError
add("t_r-none", P, ["t_r", "required", "RepetitionTime"], lambda e: V.check_t_r(None))
add("t_r-string", P, ["t_r", "number", "'2'"], lambda e: V.check_t_r("2"))
add("t_r-bool", P, ["t_r", "number"], lambda e: V.check_t_r(True))
add("t_r-zero", P, ["t_r", "positive", "0"], lambda e: V.check_t_r(0))
add("t_r-negative", P, ["t_r", "positive", "-2"], lambda e: V.check_t_r(-2.0))
add("t_r-nan", P, ["t_r", "finite", "nan"], lambda e: V.check_t_r(float("nan")))
add("t_r-inf", P, ["t_r", "finite"], lambda e: V.check_t_r(np.inf))
add("t_r-milliseconds", P, ["t_r=2000", "milliseconds"], lambda e: V.check_t_r(2000))
add("t_r-list", P, ["t_r", "number", "list"], lambda e: V.check_t_r([2.0]))
add(
    "slice_time_ref-above",
    P,
    ["slice_time_ref", "between 0 and 1", "1.5"],
    lambda e: V.check_slice_time_ref(1.5),
)
add(
    "slice_time_ref-below",
    P,
    ["slice_time_ref", "between 0 and 1", "-0.1"],
    lambda e: V.check_slice_time_ref(-0.1),
)
add(
    "slice_time_ref-string",
    P,
    ["slice_time_ref", "number"],
    lambda e: V.check_slice_time_ref("0.5"),
)
add(
    "slice_time_ref-nan", P, ["slice_time_ref", "finite"], lambda e: V.check_slice_time_ref(np.nan)
)
add(
    "hrf-unknown",
    P,
    ["hrf_model='gloverr'", "not a known HRF model", "'glover'", "'spm + derivative'"],
    lambda e: V.check_hrf_model("gloverr"),
)
add("hrf-number", P, ["hrf_model", "int", "3"], lambda e: V.check_hrf_model(3))
add("hrf-empty-list", P, ["hrf_model", "list"], lambda e: V.check_hrf_model([]))
add(
    "hrf-duplicate-callables",
    P,
    ["hrf_model", "duplicated names"],
    lambda e: V.check_hrf_model([np.abs, np.abs]),
)
add(
    "drift-model-unknown",
    P,
    ["drift_model='linear'", "'cosine'", "'polynomial'"],
    lambda e: V.check_drift("linear", 0.01, 1, N_SCANS, T_R),
)
add(
    "high_pass-negative",
    P,
    ["high_pass", ">= 0 Hz", "-0.01"],
    lambda e: V.check_drift("cosine", -0.01, 1, N_SCANS, T_R),
)
add(
    "high_pass-string",
    P,
    ["high_pass", "number"],
    lambda e: V.check_drift("cosine", "0.01", 1, N_SCANS, T_R),
)
add(
    "high_pass-above-nyquist",
    P,
    ["high_pass=0.3 Hz", "Nyquist", "0.25 Hz", "t_r=2"],
    lambda e: V.check_drift("cosine", 0.3, 1, N_SCANS, T_R),
)
add(
    "high_pass-given-as-period",
    P,
    ["high_pass=128 Hz", "not a period in seconds"],
    lambda e: V.check_drift("cosine", 128, 1, N_SCANS, T_R),
)
add(
    "high_pass-none-with-cosine",
    P,
    ["high_pass is None", "cosine"],
    lambda e: V.check_drift("cosine", None, 1, N_SCANS, T_R),
)
add(
    "high_pass-fills-the-run",
    P,
    ["high_pass=0.24 Hz", "10 drift columns", "10 scans", "no residual degrees of freedom"],
    lambda e: V.check_drift("cosine", 0.24, 1, 10, T_R),
)
add(
    "drift_order-negative",
    P,
    ["drift_order", ">= 0", "-1"],
    lambda e: V.check_drift("polynomial", 0.01, -1, N_SCANS, T_R),
)
add(
    "drift_order-fraction",
    P,
    ["drift_order", "non-negative integer", "1.5"],
    lambda e: V.check_drift("polynomial", 0.01, 1.5, N_SCANS, T_R),
)
add(
    "drift_order-bool",
    P,
    ["drift_order", "non-negative integer", "bool"],
    lambda e: V.check_drift("polynomial", 0.01, True, N_SCANS, T_R),
)
add(
    "drift_order-too-high",
    P,
    ["drift_order=9", "10 polynomial columns", "10 scans", "below 9"],
    lambda e: V.check_drift("polynomial", 0.01, 9, 10, T_R),
)
add(
    "n_scans-one",
    P,
    ["at least 2 scans", "has 1"],
    lambda e: V.check_drift("cosine", 0.01, 1, 1, T_R),
)
add("fir-fraction", P, ["fir_delays", "integers", "1.5"], lambda e: V.check_fir_delays([0, 1.5]))
add("fir-negative", P, ["fir_delays", ">= 0", "-1"], lambda e: V.check_fir_delays([-1, 0]))
add("fir-empty", P, ["fir_delays is empty"], lambda e: V.check_fir_delays([]))
add(
    "fir-duplicates",
    P,
    ["fir_delays", "duplicated", "[1]"],
    lambda e: V.check_fir_delays([0, 1, 1]),
)
add("fir-string", P, ["fir_delays", "str", "'1,2'"], lambda e: V.check_fir_delays("1,2"))
add(
    "fir-longer-than-run",
    P,
    ["fir_delays", "delay 60", "50 scans", "all zeros"],
    lambda e: V.check_fir_delays([0, 60], n_scans=N_SCANS),
)
add(
    "smoothing-negative",
    P,
    ["smoothing_fwhm", ">= 0 mm", "-1"],
    lambda e: V.check_smoothing_fwhm(-1),
)
add("smoothing-string", P, ["smoothing_fwhm", "number"], lambda e: V.check_smoothing_fwhm("5"))
add(
    "smoothing-two-values",
    P,
    ["smoothing_fwhm", "three", "got 2 values"],
    lambda e: V.check_smoothing_fwhm((4, 4)),
)
add("smoothing-nan", P, ["smoothing_fwhm", "finite"], lambda e: V.check_smoothing_fwhm(np.nan))
add(
    "smoothing-negative-axis",
    P,
    ["smoothing_fwhm", ">= 0 mm"],
    lambda e: V.check_smoothing_fwhm((4, -1, 4)),
)
add(
    "signal_scaling-true",
    P,
    ["signal_scaling=True", "ambiguous", "(0, 1)"],
    lambda e: V.check_signal_scaling(True),
)
add(
    "signal_scaling-two",
    P,
    ["signal_scaling=2", "expected False, 0, 1 or (0, 1)"],
    lambda e: V.check_signal_scaling(2),
)
add(
    "signal_scaling-reversed",
    P,
    ["signal_scaling=(1, 0)"],
    lambda e: V.check_signal_scaling((1, 0)),
)
add(
    "signal_scaling-string",
    P,
    ["signal_scaling='0'"],
    lambda e: V.check_signal_scaling("0"),
)
add("noise-ar", P, ["noise_model='ar'", "'ols'", "'ar1'"], lambda e: V.check_noise_model("ar"))
add("noise-ar0", P, ["noise_model='ar0'", ">= 1", "'ols'"], lambda e: V.check_noise_model("ar0"))
add("noise-arx", P, ["noise_model='arx'", "not known"], lambda e: V.check_noise_model("arx"))
add("noise-gls", P, ["noise_model='gls'", "not known"], lambda e: V.check_noise_model("gls"))
add("noise-number", P, ["noise_model", "string", "int"], lambda e: V.check_noise_model(1))
add(
    "noise-order-vs-scans",
    P,
    ["noise_model='ar5'", "AR order 5", "residual degrees of freedom", "6 scans"],
    lambda e: V.check_noise_model("ar5", n_scans=6),
)
add("min_onset-string", P, ["min_onset", "number"], lambda e: V.check_min_onset("-24"))
add(
    "standardize-string",
    P,
    ["standardize", "True or False", "'yes'"],
    lambda e: V.check_model_parameters(t_r=2.0, standardize="yes"),
)
add(
    "model-parameters-hrf",
    P,
    ["hrf_model='canonical'"],
    lambda e: V.check_model_parameters(t_r=2.0, hrf_model="canonical"),
)

# --------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------
E = EventsError
add(
    "events-no-onset",
    E,
    ["no 'onset' column", "found columns", "'duration'"],
    lambda e: V.check_events(events(onset=None)),
)
add(
    "events-no-duration",
    E,
    ["no 'duration' column", "expected at least 'onset' and 'duration'"],
    lambda e: V.check_events(events(duration=None)),
)
add(
    "events-non-numeric-onset",
    E,
    ["'onset' column", "non-numeric", "row 2", "'ten'"],
    lambda e: V.check_events(events(onset=[1, 2, "ten", 4])),
)
add(
    "events-non-numeric-duration",
    E,
    ["'duration' column", "non-numeric", "row 0"],
    lambda e: V.check_events(events(duration=["2s", 2, 2, 2])),
)
add(
    "events-nan-onset",
    E,
    ["'onset' column", "n/a", "row 1"],
    lambda e: V.check_events(events(onset=[1, np.nan, 3, 4])),
)
add(
    "events-nan-duration",
    E,
    ["'duration' column", "n/a", "rows 0, 3"],
    lambda e: V.check_events(events(duration=[np.nan, 1, 1, np.nan])),
)
add(
    "events-negative-duration",
    E,
    ["'duration' column", "negative", "row 2", "-1", ">= 0"],
    lambda e: V.check_events(events(duration=[1, 1, -1, 1])),
)
add(
    "events-infinite-onset",
    E,
    ["'onset' column", "infinite", "row 3"],
    lambda e: V.check_events(events(onset=[1, 2, 3, np.inf])),
)
add(
    "events-boolean-onset",
    E,
    ["'onset' column", "booleans"],
    lambda e: V.check_events(events(onset=[True, False, True, False])),
)
add(
    "events-empty",
    E,
    ["empty", "at least one event"],
    lambda e: V.check_events(pd.DataFrame(columns=["onset", "duration", "trial_type"])),
)
add(
    "events-nan-trial-type",
    E,
    ["'trial_type' column", "n/a", "row 1", "condition name"],
    lambda e: V.check_events(events(trial_type=["a", None, "b", "a"])),
)
add(
    "events-non-numeric-modulation",
    E,
    ["'modulation' column", "non-numeric", "'high'"],
    lambda e: V.check_events(events(modulation=[1, "high", 1, 1])),
)
add(
    "events-nan-modulation",
    E,
    ["'modulation' column", "n/a", "row 0"],
    lambda e: V.check_events(events(modulation=[np.nan, 1, 1, 1])),
)
add(
    "events-duplicated-columns",
    E,
    ["duplicated columns", "onset"],
    lambda e: V.check_events(
        pd.DataFrame([[1.0, 1.0, 1.0]], columns=["onset", "onset", "duration"])
    ),
)
add(
    "events-condition-after-end",
    E,
    ["'late'", "no event inside the run", "all zeros", "run 2"],
    lambda e: V.check_events(
        events(trial_type=["audio", "late", "audio", "late"], onset=[10, 120, 50, 150]),
        n_scans=N_SCANS,
        t_r=T_R,
        source="run 2",
    ),
)
add(
    "events-condition-before-min-onset",
    E,
    ["'early'", "no event inside the run", "min_onset"],
    lambda e: V.check_events(
        events(trial_type=["early", "audio", "audio", "audio"], onset=[-30, 10, 20, 30]),
        n_scans=N_SCANS,
        t_r=T_R,
    ),
)
add(
    "events-onsets-in-milliseconds",
    E,
    ["'audio'", "'video'", "time unit"],
    lambda e: V.check_events(events(onset=[10000, 30000, 50000, 70000]), n_scans=N_SCANS, t_r=T_R),
)
add(
    "events-not-a-table",
    E,
    ["events", "pandas DataFrame or the path", "list"],
    lambda e: V.check_events([[1, 2, "a"]]),
)
add(
    "events-file-missing",
    InputFileError,
    ["events file", "does not exist", "nope_events.tsv"],
    lambda e: V.check_events(e.tmp_path / "nope_events.tsv"),
)
add(
    "events-file-wrong-extension",
    InputFileError,
    ["events file", "unexpected format", ".tsv"],
    lambda e: V.check_events(e.file("events.xlsx", "onset\tduration\n1\t1\n")),
)
add(
    "events-file-is-folder",
    InputFileError,
    ["events path", "is a folder"],
    lambda e: V.check_events(e.tmp_path),
)
add(
    "events-file-binary",
    InputFileError,
    ["events file", "could not be read as a table"],
    lambda e: V.check_events(e.file("bin_events.tsv", b"\xff\xfe\x00\x01\x80onset\n")),
)
add(
    "events-file-zero-bytes",
    InputFileError,
    ["events file", "could not be read as a table"],
    lambda e: V.check_events(e.file("empty_events.tsv", b"")),
)
add(
    "events-file-comma-separated",
    InputFileError,
    ["not tab-separated", "'onset,duration,trial_type'", "tabs"],
    lambda e: V.check_events(e.file("comma_events.tsv", "onset,duration,trial_type\n1,1,a\n")),
)
add(
    "confounds-file-comma-separated",
    InputFileError,
    ["confounds file", "not tab-separated"],
    lambda e: V.check_confounds(e.file("conf_comma.tsv", "a,b\n1,2\n3,4\n")),
)
add(
    "bold-file-gifti",
    ImageError,
    ["GiftiImage", "expected a NIfTI volume", "glmflow.core.surface"],
    lambda e: V.check_bold_images([_gifti(e)]),
)
add(
    "events-file-header-only",
    EventsError,
    ["empty", "empty_rows.tsv"],
    lambda e: V.check_events(e.file("empty_rows.tsv", "onset\tduration\ttrial_type\n")),
)
add(
    "events-file-na-onset",
    EventsError,
    ["'onset' column", "n/a", "row 1", "na_events.tsv"],
    lambda e: V.check_events(
        e.file("na_events.tsv", "onset\tduration\ttrial_type\n1\t1\ta\nn/a\t1\tb\n")
    ),
)


def _gifti(e):
    darray = nib.gifti.GiftiDataArray(np.zeros(10, np.float32))
    path = e.tmp_path / "sub-01_hemi-L_bold.func.gii"
    nib.save(nib.gifti.GiftiImage(darrays=[darray, darray]), path)
    return str(path)


def _unreadable(e):
    path = e.file("locked_events.tsv", "onset\tduration\n1\t1\n")

    def deny(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    # root ignores file modes, so simulate the denied open() the module would see
    e.monkeypatch.setattr(V, "open", deny, raising=False)
    return V.check_events(path)


add("events-file-unreadable", InputFileError, ["cannot be read", "Permission denied"], _unreadable)

# --------------------------------------------------------------------------------------
# confounds
# --------------------------------------------------------------------------------------
C = ConfoundsError
add(
    "confounds-length",
    C,
    ["48 rows", "50 scans", "one row per scan"],
    lambda e: V.check_confounds(confounds(n=48), n_scans=N_SCANS),
)


def _nan_at(rows, column="trans_x"):
    frame = confounds()
    frame.loc[rows, column] = np.nan
    return frame


add(
    "confounds-interior-nan",
    C,
    ["'trans_x'", "n/a", "rows 10, 11", "only leading n/a"],
    lambda e: V.check_confounds(_nan_at([10, 11]), n_scans=N_SCANS),
)
add(
    "confounds-trailing-nan",
    C,
    ["'rot_y'", "row 49"],
    lambda e: V.check_confounds(_nan_at([49], "rot_y"), n_scans=N_SCANS),
)
add(
    "confounds-leading-and-interior-nan",
    C,
    ["'trans_x'", "row 20"],
    lambda e: V.check_confounds(_nan_at([0, 20]), n_scans=N_SCANS),
)
add(
    "confounds-all-nan",
    C,
    ["'trans_x'", "only n/a"],
    lambda e: V.check_confounds(_nan_at(list(range(N_SCANS))), n_scans=N_SCANS),
)
add(
    "confounds-non-numeric",
    C,
    ["'label'", "non-numeric", "'high'"],
    lambda e: V.check_confounds(confounds(label=["high"] * N_SCANS), n_scans=N_SCANS),
)
add(
    "confounds-duplicated-names",
    C,
    ["duplicated column names", "'x'"],
    lambda e: V.check_confounds(
        pd.DataFrame(np.random.default_rng(0).normal(size=(5, 2)), columns=["x", "x"])
    ),
)
add(
    "confounds-identical-columns",
    C,
    ["identical values", "'trans_x' = 'copy'", "Keep one"],
    lambda e: V.check_confounds(confounds(copy=confounds()["trans_x"].to_numpy())),
)
add(
    "confounds-all-zero",
    C,
    ["'spike'", "all zeros"],
    lambda e: V.check_confounds(confounds(spike=np.zeros(N_SCANS))),
)
add(
    "confounds-infinite",
    C,
    ["'trans_x'", "infinite", "row 3"],
    lambda e: V.check_confounds(confounds(trans_x=np.r_[1.0, 2, 3, np.inf, np.ones(46)])),
)
add(
    "confounds-array-3d",
    C,
    ["2D array", "(5, 2, 2)"],
    lambda e: V.check_confounds(np.ones((5, 2, 2))),
)
add(
    "confounds-array-strings",
    C,
    ["numeric", "<U"],
    lambda e: V.check_confounds(np.array([["a", "b"], ["c", "d"]])),
)
add(
    "confounds-no-columns",
    C,
    ["no columns"],
    lambda e: V.check_confounds(pd.DataFrame(index=range(5))),
)
add(
    "confounds-dict",
    C,
    ["confounds", "pandas DataFrame or the path", "dict"],
    lambda e: V.check_confounds({"a": [1, 2]}),
)
add(
    "confounds-file-missing",
    InputFileError,
    ["confounds file", "does not exist"],
    lambda e: V.check_confounds(e.tmp_path / "desc-confounds_timeseries.tsv"),
)
add(
    "confounds-file-na-in-middle",
    C,
    ["'fd'", "row 2", "conf.tsv"],
    lambda e: V.check_confounds(e.file("conf.tsv", "fd\tx\nn/a\t1\n0.1\t2\nn/a\t3\n0.3\t4\n")),
)

# --------------------------------------------------------------------------------------
# sample masks
# --------------------------------------------------------------------------------------
S = SampleMaskError
add(
    "sample_mask-index-equals-n",
    S,
    ["out of range", "[50]", "0 to 49"],
    lambda e: V.check_sample_mask([0, 1, 50], n_scans=N_SCANS),
)
add(
    "sample_mask-negative",
    S,
    ["out of range", "[-1]"],
    lambda e: V.check_sample_mask([-1, 0, 1], n_scans=N_SCANS),
)
add(
    "sample_mask-duplicates",
    S,
    ["duplicated indices", "[3]", "counted twice"],
    lambda e: V.check_sample_mask([1, 2, 3, 3, 4], n_scans=N_SCANS),
)
add(
    "sample_mask-unsorted",
    S,
    ["not in increasing order", "index 5 is followed by 2", "Sort"],
    lambda e: V.check_sample_mask([0, 5, 2, 7], n_scans=N_SCANS, source="run 1"),
)
add(
    "sample_mask-bool-length",
    S,
    ["boolean sample_mask", "49 entries", "50 scans"],
    lambda e: V.check_sample_mask(np.ones(49, bool), n_scans=N_SCANS),
)
add(
    "sample_mask-too-few",
    S,
    ["keeps 5 of 50 scans", "6 columns", "at least 7"],
    lambda e: V.check_sample_mask(np.arange(5), n_scans=N_SCANS, n_regressors=6),
)
add(
    "sample_mask-bool-keeps-one",
    S,
    ["keeps 1 of 50 scans"],
    lambda e: V.check_sample_mask(np.eye(N_SCANS, dtype=bool)[0], n_scans=N_SCANS),
)
add("sample_mask-empty", S, ["empty"], lambda e: V.check_sample_mask([], n_scans=N_SCANS))
add(
    "sample_mask-2d",
    S,
    ["one-dimensional", "(2, 2)"],
    lambda e: V.check_sample_mask([[0, 1], [2, 3]], n_scans=N_SCANS),
)
add(
    "sample_mask-fraction",
    S,
    ["integer scan indices", "1.5"],
    lambda e: V.check_sample_mask([0.0, 1.5, 3.0], n_scans=N_SCANS),
)
add(
    "sample_mask-strings",
    S,
    ["integer scan indices or booleans"],
    lambda e: V.check_sample_mask(["0", "1"], n_scans=N_SCANS),
)
add(
    "sample_mask-a-string",
    S,
    ["array of scan indices", "str"],
    lambda e: V.check_sample_mask("0:10", n_scans=N_SCANS),
)

# --------------------------------------------------------------------------------------
# images and masks
# --------------------------------------------------------------------------------------
I = ImageError  # noqa: E741
add(
    "bold-3d",
    I,
    ["3D", "(4, 5, 6)", "expected a 4D image"],
    lambda e: V.check_bold_images([write_img(e.tmp_path / "vol.nii.gz", np.ones((4, 5, 6)))]),
)
add(
    "bold-one-volume",
    I,
    ["1 volume", "at least 2"],
    lambda e: V.check_bold_images(bold(e, shape=(4, 5, 6, 1))),
)
add(
    "bold-shapes-differ",
    I,
    ["different grids", "(4, 5, 7)", "(4, 5, 6)"],
    lambda e: V.check_bold_images(
        [bold(e, "r1.nii.gz"), bold(e, "r2.nii.gz", shape=(4, 5, 7, 10))]
    ),
)
add(
    "bold-affines-differ",
    I,
    ["different affines", "r2.nii.gz", "r1.nii.gz", "same space"],
    lambda e: V.check_bold_images(
        [bold(e, "r1.nii.gz"), bold(e, "r2.nii.gz", affine=np.diag([2.0, 2, 2, 1]))]
    ),
)
add(
    "bold-file-missing",
    InputFileError,
    ["BOLD run 1 image file", "does not exist"],
    lambda e: V.check_bold_images([e.tmp_path / "missing_bold.nii.gz"]),
)
add(
    "bold-file-not-nifti",
    InputFileError,
    ["could not be read as a NIfTI image", "text.nii"],
    lambda e: V.check_bold_images([e.file("text.nii", "this is not an image")]),
)


def _truncated(e):
    path = bold(e, "full.nii")
    data = open(path, "rb").read()
    short = e.tmp_path / "short.nii"
    short.write_bytes(data[: len(data) // 2])
    return V.check_bold_images([str(short)])


add("bold-file-truncated", InputFileError, ["truncated", "short.nii", "bytes"], _truncated)
add("bold-none", I, ["No BOLD image"], lambda e: V.check_bold_images([]))
add(
    "bold-not-an-image",
    I,
    ["NIfTI file name or a nibabel image", "int"],
    lambda e: V.check_bold_images([3]),
)
add(
    "mask-empty",
    MaskError,
    ["empty", "all zeros"],
    lambda e: V.check_mask(write_img(e.tmp_path / "m.nii.gz", np.zeros((4, 5, 6), np.uint8))),
)
add(
    "mask-not-binary",
    MaskError,
    ["distinct values", "binary", "Threshold"],
    lambda e: V.check_mask(
        write_img(e.tmp_path / "m.nii.gz", np.arange(120, dtype=np.float32).reshape(4, 5, 6))
    ),
)
add(
    "mask-nan",
    MaskError,
    ["NaN or infinite"],
    lambda e: V.check_mask(
        write_img(
            e.tmp_path / "m.nii.gz", np.where(mask_data() > 0, 1.0, np.nan).astype(np.float32)
        )
    ),
)
add(
    "mask-4d",
    MaskError,
    ["(4, 5, 6, 2)", "3D"],
    lambda e: V.check_mask(write_img(e.tmp_path / "m.nii.gz", np.ones((4, 5, 6, 2), np.uint8))),
)
add(
    "mask-other-space",
    MaskError,
    ["does not overlap", "another space", "MNI"],
    lambda e: V.check_mask(
        write_img(
            e.tmp_path / "mni_mask.nii.gz",
            mask_data(),
            np.array([[2.0, 0, 0, -90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]]),
        ),
        bold(e),
    ),
)
add(
    "mask-file-not-nifti",
    InputFileError,
    ["mask image file", "could not be read"],
    lambda e: V.check_mask(e.file("mask.nii.gz", "gzip? no")),
)
add(
    "timeseries-nothing-usable",
    I,
    ["No voxel", "nothing to fit"],
    lambda e: V.check_timeseries(np.c_[np.ones(10), np.full(10, np.nan)]),
)

# --------------------------------------------------------------------------------------
# design
# --------------------------------------------------------------------------------------
D = DesignError
add(
    "design-more-columns-than-scans",
    D,
    ["more regressors (11)", "scans (10)"],
    lambda e: V.check_design(design(n=10, p=10)),
)
add(
    "design-square",
    D,
    ["rank 10", "10 scans", "no residual degrees of freedom"],
    lambda e: V.check_design(design(n=10, p=9)),
)
add(
    "design-nan",
    D,
    ["NaN or infinite", "['c1']"],
    lambda e: V.check_design(design().assign(c1=np.r_[np.nan, np.ones(N_SCANS - 1)])),
)
add(
    "design-inf",
    D,
    ["NaN or infinite", "['c0']"],
    lambda e: V.check_design(design().assign(c0=np.r_[np.inf, np.ones(N_SCANS - 1)])),
)
add(
    "design-duplicate-names",
    D,
    ["duplicated column names", "['c0']"],
    lambda e: V.check_design(design().rename(columns={"c1": "c0"})),
)
add(
    "design-non-numeric",
    D,
    ["non-numeric columns", "['label']"],
    lambda e: V.check_design(design().assign(label="x")),
)
add("design-empty", D, ["empty"], lambda e: V.check_design(pd.DataFrame()))
add(
    "design-array",
    D,
    ["pandas DataFrame", "ndarray"],
    lambda e: V.check_design(np.ones((10, 2))),
)
add(
    "design-rows-vs-scans",
    D,
    ["50 rows", "60 scans"],
    lambda e: V.check_design(design(), n_scans=60),
)

# --------------------------------------------------------------------------------------
# contrasts
# --------------------------------------------------------------------------------------
K = ContrastError
COLS = ["audio", "video", "trans_x", "constant"]
add(
    "contrast-too-long",
    K,
    ["5 weights", "4 columns", "audio, video, trans_x, constant"],
    lambda e: V.check_contrast([1, -1, 0, 0, 0], COLS),
)
add("contrast-empty", K, ["empty", "length 4"], lambda e: V.check_contrast([], COLS))
add("contrast-nan", K, ["NaN or infinite"], lambda e: V.check_contrast([1, np.nan, 0, 0], COLS))
add("contrast-zeros", K, ["all weights zero"], lambda e: V.check_contrast([0, 0, 0, 0], COLS))
add(
    "contrast-F-dependent",
    K,
    ["F contrast with 3 rows of rank 2", "linearly dependent"],
    lambda e: V.check_contrast([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]], COLS),
)
add(
    "contrast-F-zero-row",
    K,
    ["rank 1", "row(s) [1] are all zeros"],
    lambda e: V.check_contrast([[1, 0, 0, 0], [0, 0, 0, 0]], COLS, "F"),
)
add(
    "contrast-t-two-rows",
    K,
    ["2 rows", "stat_type='t' needs one", "'F'"],
    lambda e: V.check_contrast(np.eye(4)[:2], COLS, "t"),
)
add(
    "contrast-bad-stat-type",
    K,
    ["stat_type='z'", "'t', 'F'"],
    lambda e: V.check_contrast([1, 0, 0, 0], COLS, "z"),
)
add(
    "contrast-unknown-name",
    K,
    ["unknown name 'speech'", "Available design columns: audio, video"],
    lambda e: V.check_contrast("speech - video", COLS),
)
add(
    "contrast-condition-absent-from-run",
    K,
    ["unknown name 'video'", "Available design columns: audio, trans_x, constant"],
    lambda e: V.check_contrast("audio - video", ["audio", "trans_x", "constant"], name="av"),
)
add(
    "contrast-injection",
    K,
    ["unexpected character '@'", "position 14"],
    lambda e: V.check_contrast("audio - video+@pd.io.common.os.system('id')", COLS),
)
add("contrast-number", K, ["single number"], lambda e: V.check_contrast(3, COLS))
add("contrast-3d", K, ["3 dimensions"], lambda e: V.check_contrast(np.ones((1, 1, 4)), COLS))
add(
    "contrast-mixed",
    K,
    ["mixes expressions and numbers"],
    lambda e: V.check_contrast(["audio", 1], COLS, name="mix"),
)
add(
    "contrast-object",
    K,
    ["Contrast 'odd'", "expression, a vector or a matrix"],
    lambda e: V.check_contrast({"audio": 1}, COLS, name="odd"),
)

# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------
O = OutputError  # noqa: E741
add(
    "output-is-a-file",
    O,
    ["exists and is not a folder"],
    lambda e: V.check_output_dir(e.file("taken")),
)
add(
    "output-cannot-create",
    O,
    ["Cannot create the output folder"],
    lambda e: V.check_output_dir(e.tmp_path / e.file("plain") / "sub"),
)


def _read_only(e):
    import tempfile

    def deny(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    e.monkeypatch.setattr(tempfile, "mkstemp", deny)
    return V.check_output_dir(e.tmp_path / "out")


add("output-not-writable", O, ["not writable", "Read-only file system"], _read_only)
add(
    "output-no-space",
    O,
    ["MiB free", "need about"],
    lambda e: V.check_output_dir(e.tmp_path, required_bytes=2**62),
)


def _disk_full(e):
    from glmflow.core import io

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    e.monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    try:
        io.save_tsv(pd.DataFrame({"a": [1.0]}), e.tmp_path / "design.tsv")
    finally:
        # nothing is left behind: neither the final name nor a temporary file
        assert list(e.tmp_path.iterdir()) == []


add("output-disk-full-during-write", O, ["design.tsv", "No space left on device"], _disk_full)


# --------------------------------------------------------------------------------------
# the catalogue itself
# --------------------------------------------------------------------------------------
def test_catalogue_is_large_and_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 100


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch):
    env = Env(tmp_path, monkeypatch)
    with pytest.raises(case.error) as info:
        case.run(env)
    err = info.value
    assert isinstance(err, GLMFlowError)
    # ValueError where nilearn raises ValueError, OSError for files
    assert isinstance(err, OSError if case.error in (InputFileError, OutputError) else ValueError)
    message = str(err)
    for word in case.words:
        assert word in message, f"{word!r} not in: {message}"
