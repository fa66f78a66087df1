"""BIDS Stats Models (run level) → design options, event regressors and contrasts.

What is understood, from the run-level node (``"Level": "Run"``) of a BIDS Stats Models
document (https://bids-standard.github.io/stats-models/):

* ``Transformations`` (``pybids-transforms-v1``): ``Factor`` (one indicator variable per level,
  named ``<column>.<level>``), ``Scale`` (``Demean``, ``Rescale``, ``ReplaceNa``, ``Output``),
  ``Convolve`` (marks variables as event regressors; ``Model``, ``Derivative``,
  ``Dispersion`` set the HRF);
* ``Model.X``: variable names, with ``*``/``?`` wildcards, drawn from the event variables and
  the fMRIPrep confounds columns; ``1`` is the intercept (nilearn's ``constant``);
* ``Model.HRF``: ``Variables`` and ``Model`` (``spm``, ``glover``, ``DoubleGamma`` = ``spm``,
  ``fir``), ``Parameters.Derivative``/``Dispersion``;
* ``Model.Options.HighPassFilterCutoffHz`` → cosine drift with that cut-off;
* ``Contrasts`` (``Name``, ``ConditionList``, ``Weights`` — a vector for ``t``, a matrix for
  ``F`` — and ``Test``) and ``DummyContrasts`` (one ``t`` contrast per condition).

Other nodes (subject, dataset level) are reported and skipped. Everything is checked when the
file is loaded, before any image is read, and each error names the node and key at fault.

Event variables become nilearn ``events`` rows (``onset``, ``duration``, ``trial_type`` = the
variable's design-matrix name, ``modulation`` = its amplitude), so the convolution and
oversampling are exactly nilearn's.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from glmflow.core.errors import DesignError, EventsError, ModelFileError
from glmflow.core.io import bids_label

KNOWN_TRANSFORMS = ("Factor", "Scale", "Convolve")
_HRF_MODELS = {"spm": "spm", "glover": "glover", "doublegamma": "spm", "fir": "fir"}


@dataclass
class RunModel:
    """The run-level part of a model, checked and ready to apply to each run."""

    name: str
    source: str | None  #: the JSON file, or None for the default model
    node_name: str = "run"
    x: list = field(default_factory=list)  #: None = every event variable (default model)
    transformations: list = field(default_factory=list)
    convolve: list | None = None  #: variable names/patterns to convolve (None: all events)
    hrf_model: str = "glover"
    high_pass: float | None = None
    contrasts: list = field(default_factory=list)
    dummy_contrasts: dict | None = None
    input_filters: dict = field(default_factory=dict)
    document: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """What the sidecars record about the model."""
        out = {
            "Name": self.name,
            "Node": self.node_name,
            "HRF": self.hrf_model,
            "HighPassFilterCutoffHz": self.high_pass,
        }
        if self.source:
            out["ModelFile"] = self.source
        return out


def default_model(*, hrf_model="glover", high_pass=0.01) -> RunModel:
    """No ``--model``: every ``trial_type`` is a convolved regressor with its own t contrast."""
    return RunModel(
        name="default",
        source=None,
        node_name="run",
        x=None,
        hrf_model=hrf_model,
        high_pass=high_pass,
        dummy_contrasts={"Conditions": None, "Test": "t"},
    )


def load_model(path, *, default_high_pass=0.01) -> RunModel:
    """Read and check a BIDS Stats Models JSON file; return its run-level node."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ModelFileError(f"Cannot read the model file {path}: {exc.strerror}.") from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"The model file {path} is not valid JSON: {exc}.") from exc
    return parse_model(document, source=str(path), default_high_pass=default_high_pass)


def parse_model(document: dict, *, source=None, default_high_pass=0.01) -> RunModel:
    """Check a BIDS Stats Models document (already parsed) and return its run-level node."""
    where = source or "the model"
    if not isinstance(document, dict):
        raise ModelFileError(f"{where}: expected a JSON object at the top level.")
    nodes = document.get("Nodes") or document.get("Steps")
    if not isinstance(nodes, list) or not nodes:
        raise ModelFileError(f"{where}: no 'Nodes' list (BIDS Stats Models 1.0).")
    run_nodes = [n for n in nodes if str(n.get("Level", "")).lower() == "run"]
    if len(run_nodes) != 1:
        levels = [n.get("Level") for n in nodes]
        raise ModelFileError(
            f"{where}: expected exactly one node with \"Level\": \"Run\"; found levels {levels}."
        )
    node = run_nodes[0]
    node_name = str(node.get("Name", "run"))
    at = f"{where}, node {node_name!r}"
    model = node.get("Model")
    if not isinstance(model, dict):
        raise ModelFileError(f"{at}: no 'Model' object.")
    if str(model.get("Type", "glm")).lower() != "glm":
        raise ModelFileError(f"{at}: Model.Type {model.get('Type')!r}; only 'glm' is supported.")
    x = model.get("X")
    if not isinstance(x, list) or not x:
        raise ModelFileError(f"{at}: Model.X must be a non-empty list of variable names.")
    x = [str(item) for item in x]

    transformations = _check_transformations(node.get("Transformations"), at)
    convolve = None
    hrf_model = "spm"
    derivative = dispersion = False
    hrf = model.get("HRF")
    if hrf is not None:
        if not isinstance(hrf, dict):
            raise ModelFileError(f"{at}: Model.HRF must be an object.")
        convolve = [str(v) for v in hrf.get("Variables", [])]
        hrf_model = _hrf_name(hrf.get("Model", "spm"), at)
        params = hrf.get("Parameters") or {}
        derivative = bool(params.get("Derivative", False))
        dispersion = bool(params.get("Dispersion", False))
    for step in transformations:
        if step["Name"] == "Convolve":
            convolve = (convolve or []) + step["Input"]
            if "Model" in step:
                hrf_model = _hrf_name(step["Model"], at)
            derivative = derivative or bool(step.get("Derivative", False))
            dispersion = dispersion or bool(step.get("Dispersion", False))
    if hrf_model != "fir":
        hrf_model += " + derivative" if derivative or dispersion else ""
        hrf_model += " + dispersion" if dispersion else ""

    options = model.get("Options") or {}
    unknown_options = set(options) - {"HighPassFilterCutoffHz", "Mask"}
    if unknown_options:
        raise ModelFileError(
            f"{at}: Model.Options {sorted(unknown_options)} are not supported "
            "(supported: HighPassFilterCutoffHz)."
        )
    high_pass = options.get("HighPassFilterCutoffHz", default_high_pass)
    if high_pass is not None and not (isinstance(high_pass, int | float) and high_pass > 0):
        raise ModelFileError(f"{at}: HighPassFilterCutoffHz must be a positive number.")

    contrasts = [_check_contrast(c, i, at) for i, c in enumerate(node.get("Contrasts") or [])]
    dummy = node.get("DummyContrasts")
    if dummy is True:
        dummy = {"Conditions": None, "Test": "t"}
    elif isinstance(dummy, dict):
        conditions = dummy.get("Conditions", dummy.get("Contrasts"))
        test = str(dummy.get("Test", "t"))
        if test.lower() != "t":
            raise ModelFileError(f"{at}: DummyContrasts.Test must be 't'; got {test!r}.")
        dummy = {"Conditions": conditions, "Test": "t"}
    elif dummy not in (None, False):
        raise ModelFileError(f"{at}: DummyContrasts must be an object or a boolean.")
    else:
        dummy = None
    if not contrasts and dummy is None:
        raise ModelFileError(f"{at}: no Contrasts and no DummyContrasts; nothing to estimate.")
    names = [c["Name"] for c in contrasts]
    if len(set(names)) != len(names):
        raise ModelFileError(f"{at}: contrast names repeat: {names}.")

    filters = {}
    for key, value in (document.get("Input") or {}).items():
        filters[key.lower()] = [str(v) for v in (value if isinstance(value, list) else [value])]
    return RunModel(
        name=str(document.get("Name", Path(source).stem if source else "model")),
        source=source,
        node_name=node_name,
        x=x,
        transformations=transformations,
        convolve=convolve,
        hrf_model=hrf_model,
        high_pass=None if high_pass is None else float(high_pass),
        contrasts=contrasts,
        dummy_contrasts=dummy,
        input_filters=filters,
        document=document,
    )


def _hrf_name(value, at):
    name = _HRF_MODELS.get(str(value).lower())
    if name is None:
        raise ModelFileError(
            f"{at}: HRF model {value!r} is not supported; use one of spm, glover, DoubleGamma "
            "(= spm), fir."
        )
    return name


def _check_transformations(spec, at):
    if spec is None:
        return []
    if isinstance(spec, dict):
        transformer = spec.get("Transformer", "pybids-transforms-v1")
        if not str(transformer).startswith("pybids-transforms"):
            raise ModelFileError(f"{at}: Transformer {transformer!r} is not supported.")
        steps = spec.get("Instructions", [])
    else:
        steps = spec
    out = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or "Name" not in step:
            raise ModelFileError(f"{at}: Transformations[{index}] needs a 'Name'.")
        if step["Name"] not in KNOWN_TRANSFORMS:
            raise ModelFileError(
                f"{at}: transformation {step['Name']!r} is not supported "
                f"(supported: {', '.join(KNOWN_TRANSFORMS)})."
            )
        inputs = step.get("Input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs:
            raise ModelFileError(f"{at}: {step['Name']} needs an 'Input' list.")
        output = step.get("Output")
        output = [output] if isinstance(output, str) else output
        if output is not None and len(output) != len(inputs):
            raise ModelFileError(f"{at}: {step['Name']} has {len(inputs)} inputs but "
                                 f"{len(output)} outputs.")
        out.append({**step, "Input": [str(i) for i in inputs], "Output": output})
    return out


def _check_contrast(contrast, index, at):
    if not isinstance(contrast, dict):
        raise ModelFileError(f"{at}: Contrasts[{index}] must be an object.")
    name = contrast.get("Name")
    conditions = contrast.get("ConditionList")
    weights = contrast.get("Weights")
    test = str(contrast.get("Test", "t"))
    where = f"{at}, contrast {name or index!r}"
    if not name:
        raise ModelFileError(f"{at}: Contrasts[{index}] needs a 'Name'.")
    if not isinstance(conditions, list) or not conditions:
        raise ModelFileError(f"{where}: ConditionList must be a non-empty list.")
    if test not in ("t", "F"):
        raise ModelFileError(f"{where}: Test must be 't' or 'F'; got {test!r}.")
    matrix = np.asarray(weights, dtype=float) if weights is not None else None
    if matrix is None:
        raise ModelFileError(f"{where}: Weights are missing.")
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != len(conditions):
        raise ModelFileError(
            f"{where}: Weights must have one column per condition ({len(conditions)}); "
            f"got shape {np.shape(weights)}."
        )
    if test == "t" and matrix.shape[0] != 1:
        raise ModelFileError(f"{where}: a t test takes one row of weights; got {matrix.shape[0]}.")
    return {"Name": str(name), "ConditionList": [str(c) for c in conditions],
            "Weights": matrix.tolist(), "Test": test}


# --------------------------------------------------------------------------- run level


def safe_name(variable: str) -> str:
    """A design-matrix column name usable in contrast expressions (``trial_type.a`` → ``trial_type_a``)."""
    name = re.sub(r"\W", "_", str(variable))
    return name if not name[:1].isdigit() else f"_{name}"


def event_variables(model: RunModel, events: pd.DataFrame, *, source="events") -> dict:
    """Apply the transformations to one run's events.

    Returns
    -------
    dict
        variable name → DataFrame with ``onset``, ``duration``, ``amplitude`` (sparse).
    """
    for column in ("onset", "duration"):
        if column not in events.columns:
            raise EventsError(f"{source}: no {column!r} column (found {list(events.columns)}).")
    columns = {c: events[c] for c in events.columns if c not in ("onset", "duration")}
    base = events[["onset", "duration"]].astype(float)
    variables = {}
    for name, values in columns.items():
        variables[name] = values
    for step in model.transformations:
        if step["Name"] == "Factor":
            for column in step["Input"]:
                if column not in variables:
                    raise EventsError(f"{source}: Factor input {column!r} is not a column "
                                      f"(found {sorted(variables)}).")
                values = variables[column]
                for level in sorted(values.dropna().unique(), key=str):
                    variables[f"{column}.{level}"] = (values == level).astype(float).where(
                        values.notna()
                    )
        elif step["Name"] == "Scale":
            outputs = step["Output"] or step["Input"]
            for column, output in zip(step["Input"], outputs, strict=True):
                for col in _match(column, variables, f"{source}: Scale input"):
                    variables[output if output != column else col] = _scale(
                        variables[col], step, f"{source}: Scale {col!r}"
                    )
    out = {}
    for name, values in variables.items():
        numeric = pd.to_numeric(values, errors="coerce")
        keep = numeric.notna() & (numeric != 0)
        if not keep.any() and not pd.api.types.is_numeric_dtype(values):
            continue
        frame = base[keep].copy()
        frame["amplitude"] = numeric[keep].astype(float)
        out[name] = frame.reset_index(drop=True)
    return out


def _scale(values, step, where):
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == 0:
        raise EventsError(f"{where}: the column has no numeric values.")
    replace = step.get("ReplaceNa")
    if replace == "before":
        numeric = numeric.fillna(0.0)
    if step.get("Demean", True):
        numeric = numeric - numeric.mean()
    if step.get("Rescale", True):
        std = numeric.std()
        if std > 0:
            numeric = numeric / std
    if replace == "after":
        numeric = numeric.fillna(0.0)
    return numeric


def _match(pattern, names, where):
    found = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
    if not found:
        raise EventsError(f"{where} {pattern!r} matches no variable (have {sorted(names)}).")
    return found


def run_design_inputs(model: RunModel, events: pd.DataFrame, confounds_table: pd.DataFrame | None,
                      *, source="events"):
    """The nilearn-ready inputs of one run.

    Parameters
    ----------
    model : RunModel
    events : DataFrame
        The run's raw ``events.tsv``.
    confounds_table : DataFrame or None
        The full fMRIPrep confounds table (for confounds named in ``X``).

    Returns
    -------
    events_out : DataFrame
        ``onset``, ``duration``, ``trial_type``, ``modulation`` for nilearn (or, for the default
        model, the events unchanged).
    model_confounds : DataFrame or None
        Confound columns named in ``X`` (first-row ``n/a`` of derivatives filled as nilearn's
        ``load_confounds`` does).
    columns : dict
        event variable name → design-matrix column name (confounds keep their names).
    """
    if model.x is None:  # default model: nilearn's events semantics, unchanged
        if "trial_type" not in events.columns:
            events = events.assign(trial_type="dummy")
        names = sorted(events["trial_type"].dropna().astype(str).unique())
        return events, None, {name: name for name in names}
    variables = event_variables(model, events, source=source)
    confound_names = list(confounds_table.columns) if confounds_table is not None else []
    selected_events, selected_confounds = [], []
    intercept = False
    for item in model.x:
        if item in ("1", "intercept"):
            intercept = True
            continue
        hits_events = [v for v in variables if fnmatch.fnmatchcase(v, item)]
        hits_conf = [c for c in confound_names if fnmatch.fnmatchcase(c, item)]
        if not hits_events and not hits_conf:
            raise DesignError(
                f"Model.X entry {item!r} matches no event variable of {source} "
                f"({', '.join(sorted(variables)) or 'none'}) and no confounds column."
            )
        selected_events += [v for v in hits_events if v not in selected_events]
        selected_confounds += [c for c in hits_conf if c not in selected_confounds]
    del intercept  # nilearn always adds its own "constant" column
    convolve = model.convolve
    if convolve is None:
        convolve = list(selected_events)
    columns, rows = {}, []
    for name in selected_events:
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in convolve):
            raise DesignError(
                f"Event variable {name!r} is in Model.X but not convolved (Convolve / "
                "HRF.Variables); only convolved event variables are supported."
            )
        column = safe_name(name)
        if column in columns.values():
            raise DesignError(f"Variables {name!r} and another map to the same column {column!r}.")
        columns[name] = column
        frame = variables[name]
        rows.append(pd.DataFrame({
            "onset": frame["onset"], "duration": frame["duration"],
            "trial_type": column, "modulation": frame["amplitude"],
        }))
    if not rows:
        raise DesignError(f"Model.X selects no event variable of {source}; nothing to model.")
    events_out = pd.concat(rows, ignore_index=True)
    model_confounds = None
    if selected_confounds:
        model_confounds = confounds_table[selected_confounds].copy()
        # fMRIPrep derivatives start with n/a; nilearn's load_confounds uses the second row.
        first = model_confounds.iloc[0].isna()
        model_confounds.iloc[0, first.to_numpy()] = model_confounds.iloc[1, first.to_numpy()]
    return events_out, model_confounds, columns


def run_contrasts(model: RunModel, design_columns, columns: dict) -> list[dict]:
    """Contrast matrices over one run's design columns.

    Returns
    -------
    list of dict
        ``name`` (as in the model), ``conditions``, ``weights``, ``stat_type`` (``t``/``F``),
        ``matrix`` (rows × design columns).
    """
    design_columns = list(design_columns)
    out = []
    for contrast in model.contrasts:
        matrix = np.zeros((len(contrast["Weights"]), len(design_columns)))
        for j, condition in enumerate(contrast["ConditionList"]):
            column = columns.get(condition, condition)
            if column not in design_columns:
                raise DesignError(
                    f"Contrast {contrast['Name']!r}: condition {condition!r} is not in the design "
                    f"(columns: {', '.join(design_columns)})."
                )
            matrix[:, design_columns.index(column)] = np.asarray(contrast["Weights"])[:, j]
        out.append({"name": contrast["Name"], "conditions": contrast["ConditionList"],
                    "weights": contrast["Weights"], "stat_type": contrast["Test"],
                    "matrix": matrix.tolist()})
    if model.dummy_contrasts is not None:
        conditions = model.dummy_contrasts["Conditions"]
        if conditions is None:  # every event regressor
            conditions = list(columns)
        taken = {c["name"] for c in out}
        for condition in conditions:
            if condition in taken:
                continue
            column = columns.get(condition, condition)
            if column not in design_columns:
                raise DesignError(
                    f"DummyContrasts condition {condition!r} is not in the design "
                    f"(columns: {', '.join(design_columns)})."
                )
            row = np.zeros(len(design_columns))
            row[design_columns.index(column)] = 1.0
            out.append({"name": condition, "conditions": [condition], "weights": [[1.0]],
                        "stat_type": "t", "matrix": [row.tolist()]})
    labels = {}
    for contrast in out:  # file names use the BIDS label: two contrasts must not share one
        label = bids_label(contrast["name"])
        if label in labels:
            raise DesignError(
                f"Contrasts {labels[label]!r} and {contrast['name']!r} would both be written "
                f"as contrast-{label}; rename one."
            )
        labels[label] = contrast["name"]
    return out
