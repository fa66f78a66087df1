"""The first-level GLM workflow: design, mask, fit per run, contrasts with fixed effects."""

from __future__ import annotations

import numpy as np
from nipype.interfaces.utility import Function, IdentityInterface
from nipype.pipeline import engine as pe

from glmflow.core.expressions import contrast_names
from glmflow.core.validation import check_model_parameters
from glmflow.interfaces import ComputeMask, EstimateContrast, FitGLM, MakeDesignMatrix
from glmflow.interfaces.contrast import encode_contrast

CONTRAST_OUTPUTS = ("effect_files", "variance_files", "stat_files", "z_files", "p_files")


def normalize_contrasts(contrasts):
    """Return ``[(name, json_definition, stat_type)]`` from the factory's ``contrasts``.

    Parameters
    ----------
    contrasts : dict
        Name -> definition: an expression string, a vector, a matrix (an F contrast), a list
        with one definition per run, or ``{"def": ..., "stat_type": "t" | "F"}``.
    """
    if not isinstance(contrasts, dict) or not contrasts:
        raise ValueError(
            "contrasts must be a non-empty dict mapping contrast names to definitions, "
            "e.g. {'listening': 'listening'}."
        )
    out = []
    for name, definition in contrasts.items():
        stat_type = None
        if isinstance(definition, dict):
            unknown = set(definition) - {"def", "stat_type"}
            if "def" not in definition or unknown:
                raise ValueError(
                    f"Contrast {name!r}: a dict definition takes the keys 'def' and "
                    f"'stat_type'; got {sorted(definition)}."
                )
            stat_type = definition.get("stat_type")
            definition = definition["def"]
        for expression in _expressions(definition):
            contrast_names(expression)  # a malformed or malicious string fails now
        if stat_type not in (None, "t", "F"):
            raise ValueError(f"Contrast {name!r}: stat_type must be 't' or 'F'; got {stat_type!r}.")
        out.append((str(name), encode_contrast(definition), stat_type))
    return out


def _expressions(definition):
    if isinstance(definition, str):
        return [definition]
    if isinstance(definition, (list, tuple)):
        return [item for item in definition if isinstance(item, str)]
    return []


def _pad_runs(bold_files, optional_files=None):
    """One entry per run: the given files, or None for every run when none were given."""
    if optional_files in (None, [], ()) or optional_files.__class__.__name__ == "_Undefined":
        return [None] * len(bold_files)
    if isinstance(optional_files, str):
        optional_files = [optional_files]
    if len(optional_files) != len(bold_files):
        raise ValueError(
            f"{len(optional_files)} files given for {len(bold_files)} runs; give one per run."
        )
    return list(optional_files)


def _list_of_lists(value):
    return None if value is None else np.asarray(value, float).tolist()


def init_first_level_wf(
    *,
    t_r,
    contrasts,
    name="first_level_wf",
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
    minimize_memory=True,
    target_affine=None,
    target_shape=None,
    random_state=None,
    confound_columns=None,
    report=True,
):
    """Build the first-level GLM workflow.

    Parameters
    ----------
    t_r : float
        Repetition time (s).
    contrasts : dict
        Contrast name -> definition (see :func:`normalize_contrasts`).
    name : str
    slice_time_ref, hrf_model, drift_model, high_pass, drift_order, fir_delays, min_onset,
    smoothing_fwhm, signal_scaling, standardize, noise_model, minimize_memory,
    target_affine, target_shape, random_state
        As ``nilearn.glm.first_level.FirstLevelModel``.
    confound_columns : list of str, optional
        Use only these confounds columns.
    report : bool, default=True
        Add the ``GLMReport`` node (HTML report, nilearn's ``generate_report`` defaults;
        change them on ``workflow.get_node("report").inputs``).

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode``: ``bold_files``, ``events_files``, ``confounds_files`` (optional),
        ``sample_mask_files`` (optional), ``mask_file`` (optional), ``design_files``
        (optional: ready design matrices replace events and confounds).
        ``outputnode``: ``design_files``, ``mask_file``, ``model_files``,
        ``contrast_names``, ``stat_types``, ``effect_files``, ``variance_files``,
        ``stat_files``, ``z_files``, ``p_files`` (one per contrast, in the order given), and
        with ``minimize_memory=False`` ``residuals_files``, ``predicted_files``,
        ``r_square_files`` (one per run); with ``report=True`` ``report_file``.
    """
    check_model_parameters(
        t_r=t_r, slice_time_ref=slice_time_ref, hrf_model=hrf_model, drift_model=drift_model,
        high_pass=high_pass, drift_order=drift_order, fir_delays=fir_delays,
        min_onset=min_onset, smoothing_fwhm=smoothing_fwhm, signal_scaling=signal_scaling,
        noise_model=noise_model,
    )
    contrast_specs = normalize_contrasts(contrasts)
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = describe_first_level(
        t_r=t_r, hrf_model=hrf_model, drift_model=drift_model, high_pass=high_pass,
        drift_order=drift_order, noise_model=noise_model, smoothing_fwhm=smoothing_fwhm,
        signal_scaling=signal_scaling, n_contrasts=len(contrast_specs),
    )

    inputnode = pe.Node(
        IdentityInterface(fields=["bold_files", "events_files", "confounds_files",
                                  "sample_mask_files", "mask_file", "design_files"]),
        name="inputnode",
    )
    outputs = ["design_files", "mask_file", "model_files", "contrast_names", "stat_types",
               *CONTRAST_OUTPUTS, "residuals_files", "predicted_files", "r_square_files",
               "report_file"]
    outputnode = pe.Node(IdentityInterface(fields=outputs), name="outputnode")
    outputnode.inputs.contrast_names = [spec[0] for spec in contrast_specs]

    pad_events = _pad_node("pad_events")
    pad_confounds = _pad_node("pad_confounds")
    pad_designs = _pad_node("pad_designs")
    pad_samples = _pad_node("pad_samples")

    design = pe.MapNode(
        MakeDesignMatrix(
            t_r=t_r, slice_time_ref=slice_time_ref, hrf_model=hrf_model,
            drift_model=drift_model, high_pass=high_pass, drift_order=drift_order,
            min_onset=min_onset,
        ),
        iterfield=["bold_file", "events_file", "confounds_file", "design_file"],
        name="design",
    )
    design.inputs.contrast_defs = [spec[1] for spec in contrast_specs]
    if fir_delays is not None:
        design.inputs.fir_delays = [float(d) for d in fir_delays]
    if confound_columns:
        design.inputs.confound_columns = list(confound_columns)

    mask = pe.Node(
        ComputeMask(target_affine=_list_of_lists(target_affine),
                    target_shape=None if target_shape is None else list(target_shape)),
        name="mask",
    )
    fit = pe.MapNode(
        FitGLM(
            noise_model=noise_model, t_r=t_r, smoothing_fwhm=smoothing_fwhm,
            signal_scaling=list(signal_scaling) if isinstance(signal_scaling, tuple)
            else signal_scaling,
            standardize=standardize, target_affine=_list_of_lists(target_affine),
            target_shape=None if target_shape is None else list(target_shape),
            random_state=random_state, minimize_memory=minimize_memory,
        ),
        iterfield=["bold_file", "design_file", "sample_mask_file"],
        name="fit",
    )
    contrast = pe.MapNode(
        EstimateContrast(),
        iterfield=["contrast_name", "contrast_def", "stat_type"],
        name="contrast",
    )
    contrast.inputs.contrast_name = [spec[0] for spec in contrast_specs]
    contrast.inputs.contrast_def = [spec[1] for spec in contrast_specs]
    contrast.inputs.stat_type = [spec[2] for spec in contrast_specs]

    # fmt: off
    workflow.connect([
        (inputnode, pad_events, [("bold_files", "bold_files"), ("events_files", "optional_files")]),
        (inputnode, pad_confounds, [("bold_files", "bold_files"),
                                    ("confounds_files", "optional_files")]),
        (inputnode, pad_designs, [("bold_files", "bold_files"), ("design_files", "optional_files")]),
        (inputnode, pad_samples, [("bold_files", "bold_files"),
                                  ("sample_mask_files", "optional_files")]),
        (inputnode, design, [("bold_files", "bold_file")]),
        (pad_events, design, [("out", "events_file")]),
        (pad_confounds, design, [("out", "confounds_file")]),
        (pad_designs, design, [("out", "design_file")]),
        (inputnode, mask, [("bold_files", "bold_files"), ("mask_file", "mask_file")]),
        (inputnode, fit, [("bold_files", "bold_file")]),
        (design, fit, [("design_file", "design_file")]),
        (mask, fit, [("mask_file", "mask_file")]),
        (pad_samples, fit, [("out", "sample_mask_file")]),
        (fit, contrast, [("model_file", "model_files")]),
        (design, outputnode, [("design_file", "design_files")]),
        (mask, outputnode, [("mask_file", "mask_file")]),
        (fit, outputnode, [("model_file", "model_files")]),
        (contrast, outputnode, [("effect_file", "effect_files"),
                                ("variance_file", "variance_files"),
                                ("stat_file", "stat_files"),
                                ("z_file", "z_files"),
                                ("p_file", "p_files"),
                                ("stat_type", "stat_types")]),
    ])
    # fmt: on
    if not minimize_memory:
        workflow.connect([
            (fit, outputnode, [("residuals_file", "residuals_files"),
                               ("predicted_file", "predicted_files"),
                               ("r_square_file", "r_square_files")]),
        ])
    if report:
        _add_report(workflow, contrasts=contrasts, parameters=dict(
            t_r=t_r, slice_time_ref=slice_time_ref, hrf_model=hrf_model,
            drift_model=drift_model, high_pass=high_pass, drift_order=drift_order,
            fir_delays=fir_delays, noise_model=noise_model,
            smoothing_fwhm=smoothing_fwhm, signal_scaling=signal_scaling,
            standardize=standardize, target_affine=target_affine, target_shape=target_shape,
        ))
    return workflow


def _add_report(workflow, *, contrasts, parameters):
    """The fifth step: GLMReport on the design, mask and z maps (issue 6).

    The parameters table is built by ``glmflow.core.report.model_parameters``, and the
    methods text is the workflow's ``__desc__``, as the facade's ``generate_report`` does,
    so both give the same report.
    """
    import json

    from glmflow.core.report import model_parameters
    from glmflow.interfaces.report import GLMReport, encode_contrasts

    outputnode = workflow.get_node("outputnode")
    node = pe.Node(GLMReport(contrasts=encode_contrasts(contrasts),
                             contrast_names=outputnode.inputs.contrast_names,
                             parameters=json.dumps(model_parameters(**parameters)),
                             methods=workflow.__desc__), name="report")
    design, mask, contrast = (workflow.get_node(n) for n in ("design", "mask", "contrast"))
    workflow.connect([
        (design, node, [("design_file", "design_files")]),
        (mask, node, [("mask_file", "mask_file")]),
        (contrast, node, [("z_file", "z_files")]),
        (node, outputnode, [("report_file", "report_file")]),
    ])


def _pad_node(name):
    # List glue: run in the submitting process, never as a batch job of its own.
    return pe.Node(
        Function(input_names=["bold_files", "optional_files"], output_names=["out"],
                 function=_pad_runs),
        name=name,
        run_without_submitting=True,
    )


def describe_first_level(*, t_r, hrf_model, drift_model, high_pass, drift_order, noise_model,
              smoothing_fwhm, signal_scaling, n_contrasts=None):
    """The methods paragraph (fMRIPrep-style ``__desc__``) of a first-level model."""
    drift = {
        "cosine": f"a discrete cosine basis set with a {high_pass} Hz high-pass cut-off",
        "polynomial": f"polynomials up to order {drift_order}",
    }.get(drift_model, "no drift regressors")
    noise = ("ordinary least squares" if noise_model == "ols"
             else f"an autoregressive model of order {noise_model[2:]} (AR({noise_model[2:]})) "
                  "fitted to the residuals, with voxels grouped by their AR coefficients as in "
                  "nilearn")
    smoothing = (f"spatially smoothed with a Gaussian kernel of {smoothing_fwhm} mm FWHM and "
                 if smoothing_fwhm else "")
    scaling = {0: "scaled to percent signal change of each voxel's mean",
               1: "scaled to percent of each volume's mean"}.get(
        signal_scaling if not isinstance(signal_scaling, (list, tuple)) else None,
        "scaled to percent of the global mean" if signal_scaling is not False else "not scaled")
    return (
        "First-level general linear models were fitted with glmflow, which reproduces "
        "nilearn's FirstLevelModel. For each run, the BOLD time series were "
        f"{smoothing}{scaling}. The design matrix convolved the events with the "
        f"{hrf_model} haemodynamic response function (TR = {t_r} s) and included {drift} "
        f"and any confounds given. Parameters were estimated with {noise}."
        + ("" if n_contrasts is None else
           f" {n_contrasts} contrast(s) were estimated, combined across runs with fixed "
           "effects.")
    )
