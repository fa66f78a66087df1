"""fMRIPrep confounds → confound regressors and a sample mask, through nilearn.

The selection itself (which columns a strategy means, scrubbing by framewise displacement and
standardized DVARS, non-steady-state volumes, CompCor from the JSON sidecar, filling the
first row of derivatives, demeaning) is nilearn's :func:`~nilearn.interfaces.fmriprep.
load_confounds` / :func:`~nilearn.interfaces.fmriprep.load_confounds_strategy`, called
unchanged. nilearn finds the confounds table from the BOLD file's name, so when the files
come from elsewhere (an fMRIPrep node's working folder, for instance) they are linked under
their fMRIPrep names in a private folder first.

A strategy is written as one string (the ``--confounds`` option):

* a preset of :func:`~nilearn.interfaces.fmriprep.load_confounds_strategy`: ``simple``,
  ``scrubbing``, ``compcor``;
* ``none``: no confound regressors (non-steady-state volumes are still dropped);
* or a comma-separated list of components of :func:`load_confounds` (``motion``, ``wm_csf``,
  ``global_signal``, ``compcor``, ``scrub``, ``high_pass``, ``non_steady_state``),

each optionally followed by ``key=value`` parameters of nilearn's function, e.g.
``motion,wm_csf,scrub,fd_threshold=0.2`` or ``scrubbing,fd_threshold=0.3``.
``motion=6|12|24`` are accepted for ``basic``/``derivatives``/``full``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from glmflow.core.errors import ConfoundsError, ParameterError

PRESETS = ("simple", "scrubbing", "compcor")
COMPONENTS = (
    "motion", "wm_csf", "global_signal", "compcor", "scrub", "high_pass", "non_steady_state",
)  # fmt: skip
_MOTION_ALIASES = {"6": "basic", "12": "derivatives", "24": "full"}
_INT_PARAMS = ("scrub",)
_FLOAT_PARAMS = ("fd_threshold", "std_dvars_threshold")
_BOOL_PARAMS = ("demean",)
_PARAMS = (
    "motion", "scrub", "fd_threshold", "std_dvars_threshold", "wm_csf", "global_signal",
    "compcor", "n_compcor", "demean",
)  # fmt: skip
#: The command's default: 24 motion parameters + mean WM and CSF signals. nilearn's "simple"
#: without its ``high_pass`` cosines, because the GLM's own drift model does the high-pass.
DEFAULT_STRATEGY = "motion,wm_csf"


def parse_strategy(text: str) -> dict:
    """Parse a ``--confounds`` string into keyword arguments for nilearn.

    Returns
    -------
    dict
        ``{"preset": name}`` plus overrides for a preset, or ``{"strategy": (...), ...}``
        for :func:`load_confounds`. ``{"strategy": ()}`` for ``none``.
    """
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ParameterError("--confounds is empty; give a preset, components, or 'none'.")
    names = [item for item in items if "=" not in item]
    params = {}
    for item in items:
        if "=" not in item:
            continue
        key, _, value = (part.strip() for part in item.partition("="))
        if key not in _PARAMS:
            raise ParameterError(
                f"--confounds: unknown parameter {key!r} in {text!r}; "
                f"known: {', '.join(_PARAMS)}."
            )
        params[key] = _convert(key, value, text)
    if names == ["none"]:
        return {"strategy": (), **params}
    if names and names[0] in PRESETS:
        if len(names) > 1:
            raise ParameterError(
                f"--confounds {text!r}: a preset ({names[0]}) takes only key=value overrides, "
                f"not further components ({', '.join(names[1:])})."
            )
        return {"preset": names[0], **params}
    unknown = [name for name in names if name not in COMPONENTS]
    if unknown:
        raise ParameterError(
            f"--confounds: unknown strategy {', '.join(map(repr, unknown))} in {text!r}; "
            f"expected a preset ({', '.join(PRESETS)}), 'none', or components "
            f"({', '.join(COMPONENTS)})."
        )
    if not names:
        raise ParameterError(f"--confounds {text!r} names no component or preset.")
    return {"strategy": tuple(names), **params}


def _convert(key, value, text):
    try:
        if key == "motion" and value in _MOTION_ALIASES:
            return _MOTION_ALIASES[value]
        if key in _INT_PARAMS:
            return int(value)
        if key in _FLOAT_PARAMS:
            return float(value)
        if key in _BOOL_PARAMS:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if key == "n_compcor":
            return value if value == "all" else int(value)
        if key == "global_signal" and value.lower() == "none":
            return None
    except ValueError as exc:
        raise ParameterError(
            f"--confounds {text!r}: {key}={value!r} is not a valid value."
        ) from exc
    return value


def describe_strategy(spec: dict) -> dict:
    """The strategy as recorded in sidecars (preset expanded to nilearn's parameters)."""
    if "preset" in spec:
        from nilearn.interfaces.fmriprep.load_confounds_strategy import preset_strategies

        full = dict(preset_strategies[spec["preset"]])
        full.update({k: v for k, v in spec.items() if k != "preset"})
        full["preset"] = spec["preset"]
    else:
        full = dict(spec)
    full["strategy"] = list(full.get("strategy", ()))
    return full


def load_run_confounds(bold_file, confounds_file, spec: dict, *, confounds_json=None):
    """Select confounds and the sample mask of one run with nilearn.

    Parameters
    ----------
    bold_file : str or Path
        The preprocessed BOLD (its name gives the run's entities).
    confounds_file : str or Path
        fMRIPrep's ``desc-confounds_timeseries.tsv`` for that run.
    spec : dict
        From :func:`parse_strategy`.
    confounds_json : str or Path, optional
        The table's JSON sidecar (needed for CompCor); by default next to the table.

    Returns
    -------
    confounds : pandas.DataFrame or None
        The regressors (None when the strategy selects none).
    sample_mask : numpy.ndarray or None
        0-based indices of the volumes kept (None: keep all).
    """
    from nilearn.interfaces.fmriprep import load_confounds, load_confounds_strategy

    confounds_file = Path(confounds_file)
    if not confounds_file.is_file():
        raise ConfoundsError(f"The confounds file {confounds_file} does not exist.")
    if confounds_json is None:
        candidate = confounds_file.with_suffix(".json")
        confounds_json = candidate if candidate.is_file() else None
    spec = dict(spec)
    with tempfile.TemporaryDirectory(prefix="glmflow-confounds-") as tmp:
        img_link = _stage(Path(tmp), bold_file, confounds_file, confounds_json)
        try:
            with warnings.catch_warnings():
                # nilearn warns that all volumes are scrubbed; we raise our own error below.
                warnings.simplefilter("ignore", RuntimeWarning)
                # "strategy is empty": that is what --confounds none asks for.
                warnings.filterwarnings("ignore", message="strategy is empty")
                if "preset" in spec:
                    preset = spec.pop("preset")
                    confounds, sample_mask = load_confounds_strategy(
                        str(img_link), denoise_strategy=preset, **spec
                    )
                else:
                    confounds, sample_mask = load_confounds(str(img_link), **spec)
        except (ValueError, KeyError) as exc:
            raise ConfoundsError(
                f"Could not select confounds {describe_strategy(spec)['strategy']} from "
                f"{confounds_file}: {exc}"
            ) from exc
    if confounds is not None and confounds.shape[1] == 0:
        confounds = None
    if sample_mask is not None:
        sample_mask = np.asarray(sample_mask, dtype=int)
        if sample_mask.size == 0:
            raise ConfoundsError(
                f"Every volume of {confounds_file} is marked as an outlier by the confound "
                "strategy (scrubbing / non-steady-state); nothing is left to fit. Loosen "
                "fd_threshold/std_dvars_threshold."
            )
    return confounds, sample_mask


def _stage(folder: Path, bold_file, confounds_file, confounds_json):
    """Link the files under the names nilearn derives from the BOLD file name."""
    from glmflow.bids.layout import DERIVATIVE_ENTITIES, build_name, parse_bids_filename

    try:
        entities = parse_bids_filename(bold_file).entities
    except Exception:  # a nipype working-folder name: any valid entities will do
        entities = {"sub": "x"}
    raw = {k: v for k, v in entities.items() if k not in DERIVATIVE_ENTITIES}
    img_link = folder / build_name({**raw, "desc": "preproc"}, "bold", ".nii.gz")
    conf_link = folder / build_name({**raw, "desc": "confounds"}, "timeseries", ".tsv")
    os.symlink(Path(bold_file).resolve(), img_link)
    os.symlink(Path(confounds_file).resolve(), conf_link)
    if confounds_json is not None:
        os.symlink(Path(confounds_json).resolve(), conf_link.with_suffix(".json"))
    return img_link
