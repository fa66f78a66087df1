"""The first-level GLM workflow on surfaces (GIFTI pairs) and CIFTI-2 dense time series."""

from __future__ import annotations

from nipype.interfaces.utility import Function, IdentityInterface
from nipype.pipeline import engine as pe

from glmflow.core.validation import check_model_parameters
from glmflow.interfaces import MakeDesignMatrix
from glmflow.interfaces.surface import (
    ComputeSurfaceMask,
    CountScans,
    EstimateSurfaceContrast,
    FitSurfaceGLM,
)
from glmflow.workflows.first_level import CONTRAST_OUTPUTS, _pad_runs, normalize_contrasts


def as_run_lists(bold_files):
    """Each run as a list of files: a ``.dtseries.nii`` path -> ``[path]``; pairs unchanged."""
    if isinstance(bold_files, str):
        bold_files = [bold_files]
    runs = []
    for run in bold_files:
        if isinstance(run, str):
            if not run.endswith((".dtseries.nii", ".dscalar.nii")):
                raise ValueError(
                    f"Surface run {run!r}: give GIFTI runs as [left, right] pairs and CIFTI "
                    "runs as .dtseries.nii files."
                )
            runs.append([run])
        else:
            runs.append([str(path) for path in run])
    return runs


def init_surface_first_level_wf(
    *,
    t_r,
    contrasts,
    name="surface_first_level_wf",
    mesh=None,
    mesh_type="pial",
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
    random_state=None,
    confound_columns=None,
    gifti_float32=False,
):
    """Build the first-level GLM workflow for surface (GIFTI) or CIFTI-2 runs.

    The numbers are nilearn's ``FirstLevelModel`` on the same ``SurfaceImage`` runs (with
    the same mask); CIFTI runs are analysed the same way over their grayordinates.

    Parameters
    ----------
    t_r : float
        Repetition time (s).
    contrasts : dict
        Contrast name -> definition (see
        :func:`glmflow.workflows.first_level.normalize_contrasts`).
    name : str
    mesh : str or [left, right] list of GIFTI surface files, optional
        The mesh the GIFTI data live on; needed only for ``smoothing_fwhm``
        (``"fsaverage5"`` ships with nilearn). Ignored for CIFTI (no smoothing there).
    mesh_type : str, default="pial"
        Which surface of a template mesh sets the smoothing iterations (nilearn's
        ``load_fsaverage`` keys: ``pial``, ``white_matter``, ``inflated``, ``sphere``).
    slice_time_ref, hrf_model, drift_model, high_pass, drift_order, fir_delays, min_onset,
    smoothing_fwhm, signal_scaling, standardize, noise_model, minimize_memory, random_state
        As ``nilearn.glm.first_level.FirstLevelModel``; ``smoothing_fwhm`` is nilearn's
        surface smoothing (neighbour averaging, FWHM mapped to iterations).
    confound_columns : list of str, optional
        Use only these confounds columns.
    gifti_float32 : bool, default=False
        Write the GIFTI statistical maps in float32, the GIFTI standard's float type (what
        Workbench and FreeSurfer expect). The default float64 keeps the maps equal to
        nilearn's to 1e-9 (nibabel and nilearn read it); CIFTI maps are always float64.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode``: ``bold_files`` (a list of runs, each ``[left.func.gii,
        right.func.gii]`` or a ``.dtseries.nii`` path), ``events_files``,
        ``confounds_files`` (optional), ``sample_mask_files`` (optional), ``mask_files``
        (optional: ``[left, right]`` GIFTI or ``[mask.dscalar.nii]``; non-zero = analysed,
        e.g. cortex without the medial wall), ``design_files`` (optional).
        ``outputnode``: ``design_files``, ``mask_files``, ``model_files``,
        ``contrast_names``, ``stat_types``, and per contrast (in the order given)
        ``effect_files``, ``variance_files``, ``stat_files``, ``z_files``, ``p_files``, each
        item a list: ``[hemi-L_….func.gii, hemi-R_….func.gii]`` or ``[….dscalar.nii]``; with
        ``minimize_memory=False`` also ``residuals_files``, ``predicted_files``,
        ``r_square_files`` (one list per run).
    """
    check_model_parameters(
        t_r=t_r, slice_time_ref=slice_time_ref, hrf_model=hrf_model, drift_model=drift_model,
        high_pass=high_pass, drift_order=drift_order, fir_delays=fir_delays,
        min_onset=min_onset, smoothing_fwhm=smoothing_fwhm, signal_scaling=signal_scaling,
        noise_model=noise_model,
    )
    contrast_specs = normalize_contrasts(contrasts)
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = (
        "First-level general linear models were fitted on the cortical surface (or CIFTI "
        "grayordinates) with glmflow, which reproduces nilearn's FirstLevelModel. "
        + (f"Data were smoothed on the surface mesh to about {smoothing_fwhm} mm FWHM by "
           "iterative neighbour averaging (nilearn's FreeSurfer-style rule). "
           if smoothing_fwhm else "")
        + f"The design matrix convolved the events with the {hrf_model} haemodynamic "
        f"response function (TR = {t_r} s); parameters were estimated with "
        + ("ordinary least squares" if noise_model == "ols"
           else f"an AR({noise_model[2:]}) noise model")
        + f"; {len(contrast_specs)} contrast(s) were estimated with fixed effects across runs."
    )
    inputnode = pe.Node(
        IdentityInterface(fields=["bold_files", "events_files", "confounds_files",
                                  "sample_mask_files", "mask_files", "design_files"]),
        name="inputnode",
    )
    outputs = ["design_files", "mask_files", "model_files", "contrast_names", "stat_types",
               *CONTRAST_OUTPUTS, "residuals_files", "predicted_files", "r_square_files"]
    outputnode = pe.Node(IdentityInterface(fields=outputs), name="outputnode")
    outputnode.inputs.contrast_names = [spec[0] for spec in contrast_specs]

    runs = pe.Node(Function(input_names=["bold_files"], output_names=["runs"],
                            function=as_run_lists), name="runs")
    pads = {key: pe.Node(Function(input_names=["bold_files", "optional_files"],
                                  output_names=["out"], function=_pad_runs),
                         name=f"pad_{key}")
            for key in ("events", "confounds", "designs", "samples")}
    count = pe.MapNode(CountScans(), iterfield=["bold_file"], name="count_scans")
    design = pe.MapNode(
        MakeDesignMatrix(
            t_r=t_r, slice_time_ref=slice_time_ref, hrf_model=hrf_model,
            drift_model=drift_model, high_pass=high_pass, drift_order=drift_order,
            min_onset=min_onset,
        ),
        iterfield=["n_scans", "events_file", "confounds_file", "design_file"],
        name="design",
    )
    design.inputs.contrast_defs = [spec[1] for spec in contrast_specs]
    if fir_delays is not None:
        design.inputs.fir_delays = [float(d) for d in fir_delays]
    if confound_columns:
        design.inputs.confound_columns = list(confound_columns)
    mask = pe.Node(ComputeSurfaceMask(), name="mask")
    fit = pe.MapNode(
        FitSurfaceGLM(
            noise_model=noise_model, t_r=t_r, smoothing_fwhm=smoothing_fwhm,
            mesh=mesh if mesh is None or isinstance(mesh, str) else [str(m) for m in mesh],
            mesh_type=mesh_type,
            signal_scaling=list(signal_scaling) if isinstance(signal_scaling, tuple)
            else signal_scaling,
            standardize=standardize, random_state=random_state,
            minimize_memory=minimize_memory,
        ),
        iterfield=["bold_file", "design_file", "sample_mask_file"],
        name="fit",
    )
    contrast = pe.MapNode(
        EstimateSurfaceContrast(gifti_float32=bool(gifti_float32)),
        iterfield=["contrast_name", "contrast_def", "stat_type"],
        name="contrast",
    )
    contrast.inputs.contrast_name = [spec[0] for spec in contrast_specs]
    contrast.inputs.contrast_def = [spec[1] for spec in contrast_specs]
    contrast.inputs.stat_type = [spec[2] for spec in contrast_specs]
    # fmt: off
    workflow.connect([
        (inputnode, runs, [("bold_files", "bold_files")]),
        (inputnode, pads["events"], [("events_files", "optional_files")]),
        (inputnode, pads["confounds"], [("confounds_files", "optional_files")]),
        (inputnode, pads["designs"], [("design_files", "optional_files")]),
        (inputnode, pads["samples"], [("sample_mask_files", "optional_files")]),
        (runs, pads["events"], [("runs", "bold_files")]),
        (runs, pads["confounds"], [("runs", "bold_files")]),
        (runs, pads["designs"], [("runs", "bold_files")]),
        (runs, pads["samples"], [("runs", "bold_files")]),
        (runs, count, [("runs", "bold_file")]),
        (count, design, [("n_scans", "n_scans")]),
        (pads["events"], design, [("out", "events_file")]),
        (pads["confounds"], design, [("out", "confounds_file")]),
        (pads["designs"], design, [("out", "design_file")]),
        (runs, mask, [("runs", "bold_files")]),
        (inputnode, mask, [("mask_files", "mask_files")]),
        (runs, fit, [("runs", "bold_file")]),
        (design, fit, [("design_file", "design_file")]),
        (mask, fit, [("mask_files", "mask_files")]),
        (pads["samples"], fit, [("out", "sample_mask_file")]),
        (fit, contrast, [("model_file", "model_files")]),
        (design, outputnode, [("design_file", "design_files")]),
        (mask, outputnode, [("mask_files", "mask_files")]),
        (fit, outputnode, [("model_file", "model_files")]),
        (contrast, outputnode, [("effect_files", "effect_files"),
                                ("variance_files", "variance_files"),
                                ("stat_files", "stat_files"),
                                ("z_files", "z_files"),
                                ("p_files", "p_files"),
                                ("stat_type", "stat_types")]),
    ])
    # fmt: on
    if not minimize_memory:
        workflow.connect([
            (fit, outputnode, [("residuals_files", "residuals_files"),
                               ("predicted_files", "predicted_files"),
                               ("r_square_files", "r_square_files")]),
        ])
    return workflow
