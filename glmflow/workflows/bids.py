"""Run-level GLMs of fMRIPrep outputs, as an embeddable workflow with BIDS-derivatives outputs.

``init_bids_first_level_wf`` takes one subject's fMRIPrep outputs on its ``inputnode`` (one
entry per run: preprocessed BOLD, brain mask, confounds table, raw events, BOLD metadata) so
a pipeline builder can connect it after fMRIPrep's own nodes, or feed it files found by
:func:`glmflow.bids.layout.collect_runs` (the ``glmflow`` command does).

Why not :func:`~glmflow.workflows.first_level.init_first_level_wf` inside: that factory fixes
the TR and the contrast vectors when the graph is built, while here both come from each run's
files at run time (the TR from its sidecars, the design columns from its events and confounds,
so contrast matrices over them). The same interfaces are wired instead — LoadBIDSRun (design,
sample mask, contrasts) → ComputeMask → FitGLM → EstimateContrast → GLMReport — with the runs
and the (run, contrast) pairs fanned out as MapNodes.

On surfaces (``space_kind="gifti"``: fMRIPrep's ``hemi-L``/``hemi-R`` ``.func.gii`` pairs on
fsaverage*/fsnative; ``"cifti"``: ``.dtseries.nii`` grayordinates) the same graph uses
ComputeSurfaceMask → FitSurfaceGLM → EstimateSurfaceContrast, and the maps keep their format.
"""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.utility import Function, IdentityInterface
from nipype.pipeline import engine as pe

from glmflow.bids.confounds import DEFAULT_STRATEGY, parse_strategy
from glmflow.bids.stats_model import RunModel, load_model, parse_model
from glmflow.core.errors import ParameterError
from glmflow.core.glm import parse_noise_model
from glmflow.interfaces import ComputeMask, EstimateContrast, FitGLM
from glmflow.interfaces.bids import (
    ContrastJobs,
    DerivativesSink,
    GroupByRun,
    LoadBIDSRun,
    ReportMap,
)
from glmflow.interfaces.report import GLMReport
from glmflow.interfaces.surface import ComputeSurfaceMask, EstimateSurfaceContrast, FitSurfaceGLM

INPUT_FIELDS = ("bold_files", "mask_files", "confounds_files", "events_files", "metadata",
                "entities", "source_files")
OUTPUT_FIELDS = (
    "design_files", "mask_files", "sample_mask_files", "provenance_files", "contrasts_files",
    "model_files", "r_square_files", "residuals_files", "report_files",
    "contrast_names", "contrast_runs", "stat_types", "dofs",
    "effect_files", "variance_files", "stat_files", "z_files", "p_files", "out_files",
)


def _model_document(model):
    """(JSON text, source) of ``model``: None, a path, a dict document or a RunModel."""
    if model is None:
        return "", ""
    if isinstance(model, RunModel):
        return json.dumps(model.document), model.source or ""
    if isinstance(model, dict):
        parse_model(model)  # check now, before any node runs
        return json.dumps(model), ""
    path = Path(model)
    checked = load_model(path)
    return json.dumps(checked.document), str(path.resolve())


def init_bids_first_level_wf(
    *,
    name="bids_first_level_wf",
    model=None,
    confounds=DEFAULT_STRATEGY,
    slice_time_ref=None,
    hrf_model="glover",
    high_pass=0.01,
    drift_order=1,
    min_onset=-24,
    smoothing_fwhm=None,
    signal_scaling=0,
    noise_model="ar1",
    model_maps=True,
    report=True,
    output_dir=None,
    source_datasets=(),
    command=None,
    analysis_metadata=None,
    overwrite=False,
    space_kind="volume",
    mesh=None,
):
    """Build the run-level GLM workflow of one subject's fMRIPrep outputs.

    Parameters
    ----------
    name : str
    model : str, Path, dict or RunModel, optional
        A BIDS Stats Models JSON file (or its parsed document); its run-level node gives the
        regressors, HRF, high-pass cut-off and contrasts. Default: one regressor and one
        t contrast per ``trial_type`` (nilearn's events semantics), ``hrf_model`` and
        ``high_pass`` as given.
    confounds : str, default="motion,wm_csf"
        Confound strategy for nilearn's ``load_confounds`` (see
        :mod:`glmflow.bids.confounds`), ``"none"`` for none.
    slice_time_ref : float, optional
        Override the slice-timing reference read from the metadata.
    hrf_model, high_pass : str, float
        For the default model.
    drift_order, min_onset, smoothing_fwhm, signal_scaling, noise_model
        As ``nilearn.glm.first_level.FirstLevelModel``.
    model_maps : bool, default=True
        Also produce R-square and residual (``errorts``) maps, whatever the memory setting.
    report : bool, default=True
        An HTML report per run.
    output_dir : str or Path, optional
        Write BIDS derivatives there (a ``DerivativesSink`` node). Without it the workflow
        has no sink and the caller connects ``outputnode``.
    source_datasets : list of str
        Recorded as ``SourceDatasets`` in ``dataset_description.json``.
    command : str, optional
        Recorded in ``GeneratedBy``.
    analysis_metadata : dict, optional
        Extra fields for every sidecar.
    overwrite : bool, default=False
        Replace existing outputs that differ (default: stop with an error).
    space_kind : {"volume", "gifti", "cifti"}, default="volume"
        The kind of BOLD data: NIfTI volumes, GIFTI hemisphere pairs (fsaverage*, fsnative)
        or CIFTI-2 dense time series (fsLR); see :func:`glmflow.bids.layout.space_kind`.
    mesh : str or [left, right] GIFTI surface files, optional
        The mesh of GIFTI runs (``"fsaverage5"``, ...), needed for ``smoothing_fwhm`` only.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` (lists, one entry per run): ``bold_files`` (``desc-preproc_bold``),
        ``mask_files`` (``desc-brain_mask``), ``confounds_files``
        (``desc-confounds_timeseries.tsv``), ``events_files`` (raw ``events.tsv``),
        ``metadata`` (dicts with at least ``RepetitionTime``), optionally ``entities``
        (dicts naming the outputs; default: parsed from the BOLD names) and ``source_files``.
        On surfaces each ``bold_files`` entry is ``[hemi-L.func.gii, hemi-R.func.gii]`` or
        ``[bold.dtseries.nii]``, and ``mask_files`` is optional (each entry a ``[left,
        right]`` GIFTI or ``[mask.dscalar.nii]``, non-zero = analysed; ``[]`` or unset:
        nilearn's rule, the elements finite in the run).
        ``outputnode``: see :data:`OUTPUT_FIELDS` (per-run lists, and per-(run, contrast)
        lists aligned with ``contrast_runs``/``contrast_names``).
    """
    parse_noise_model(noise_model)
    parse_strategy(confounds)  # fail now on a bad strategy
    if space_kind not in ("volume", "gifti", "cifti"):
        raise ParameterError(
            f"space_kind must be 'volume', 'gifti' or 'cifti'; got {space_kind!r}.")
    if space_kind == "cifti" and smoothing_fwhm:
        raise ParameterError(
            "smoothing_fwhm is not available for CIFTI (fsLR) runs: cortex and subcortical "
            "voxels need different kernels. Smooth them beforehand (wb_command "
            "-cifti-smoothing) and give no smoothing.")
    surface = space_kind != "volume"
    model_text, model_source = _model_document(model)
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = _describe(model_source or ("the default model" if not model_text
                                                   else "a BIDS Stats Model"),
                                  confounds, noise_model, smoothing_fwhm)

    inputnode = pe.Node(IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")

    load = pe.MapNode(
        LoadBIDSRun(model=model_text, model_source=model_source, confounds_strategy=confounds,
                    slice_time_ref=slice_time_ref, hrf_model=hrf_model, high_pass=high_pass,
                    drift_order=drift_order, min_onset=float(min_onset)),
        iterfield=["bold_file", "events_file", "confounds_file", "metadata"],
        name="load_run",
    )
    scaling = list(signal_scaling) if isinstance(signal_scaling, tuple) else signal_scaling
    jobs = pe.Node(ContrastJobs(), name="contrast_jobs")
    contrast_fields = ["model_files", "contrast_name", "contrast_def", "stat_type"]
    if surface:
        # Each run as a list of files; ComputeSurfaceMask takes a list of runs, hence [[run]].
        runs = pe.Node(Function(input_names=["bold_files", "mask_files"],
                                output_names=["runs", "run_lists", "masks"],
                                function=_surface_runs), name="surface_runs")
        mask = pe.MapNode(ComputeSurfaceMask(), iterfield=["bold_files", "mask_files"],
                          name="mask")
        fit = pe.MapNode(
            FitSurfaceGLM(noise_model=noise_model, smoothing_fwhm=smoothing_fwhm,
                          mesh=mesh if mesh is None or isinstance(mesh, str)
                          else [str(m) for m in mesh],
                          signal_scaling=scaling, minimize_memory=not model_maps),
            iterfield=["bold_file", "design_file", "mask_files", "sample_mask_file", "t_r"],
            name="fit",
        )
        contrast = pe.MapNode(EstimateSurfaceContrast(), iterfield=contrast_fields,
                              name="contrast")
        bold_source, bold_field = runs, "runs"
        mask_out, map_suffix = "mask_files", "_files"
        fit_maps = (("r_square_files", "r_square_files"), ("residuals_files", "residuals_files"))
        workflow.connect([
            (inputnode, runs, [("bold_files", "bold_files"), ("mask_files", "mask_files")]),
            (runs, mask, [("run_lists", "bold_files"), ("masks", "mask_files")]),
        ])
    else:
        mask = pe.MapNode(ComputeMask(), iterfield=["bold_files", "mask_file"], name="mask")
        fit = pe.MapNode(
            FitGLM(noise_model=noise_model, smoothing_fwhm=smoothing_fwhm,
                   signal_scaling=scaling, minimize_memory=not model_maps),
            iterfield=["bold_file", "design_file", "mask_file", "sample_mask_file", "t_r"],
            name="fit",
        )
        contrast = pe.MapNode(EstimateContrast(), iterfield=contrast_fields, name="contrast")
        bold_source, bold_field = inputnode, "bold_files"
        mask_out, map_suffix = "mask_file", "_file"
        fit_maps = (("r_square_file", "r_square_files"), ("residuals_file", "residuals_files"))
        workflow.connect([
            (inputnode, mask, [("bold_files", "bold_files"), ("mask_files", "mask_file")]),
        ])
    contrast_maps = [(f"{stat}{map_suffix}", f"{stat}_files")
                     for stat in ("effect", "variance", "stat", "z", "p")]
    # fmt: off
    workflow.connect([
        (bold_source, load, [(bold_field, "bold_file")]),
        (inputnode, load, [("events_files", "events_file"),
                           ("confounds_files", "confounds_file"), ("metadata", "metadata")]),
        (bold_source, fit, [(bold_field, "bold_file")]),
        (load, fit, [("design_file", "design_file"), ("sample_mask_file", "sample_mask_file"),
                     ("t_r", "t_r")]),
        (mask, fit, [(mask_out, mask_out)]),
        (fit, jobs, [("model_file", "model_files")]),
        (load, jobs, [("contrasts_file", "contrasts_files")]),
        (jobs, contrast, [("model_files", "model_files"), ("contrast_names", "contrast_name"),
                          ("contrast_defs", "contrast_def"), ("stat_types", "stat_type")]),
        (load, outputnode, [("design_file", "design_files"),
                            ("sample_mask_file", "sample_mask_files"),
                            ("provenance_file", "provenance_files"),
                            ("contrasts_file", "contrasts_files")]),
        (mask, outputnode, [(mask_out, "mask_files")]),
        (fit, outputnode, [("model_file", "model_files")]),
        (jobs, outputnode, [("contrast_names", "contrast_names"),
                            ("run_index", "contrast_runs")]),
        (contrast, outputnode, [*contrast_maps, ("stat_type", "stat_types"), ("dof", "dofs")]),
    ])
    if model_maps:
        workflow.connect([(fit, outputnode, list(fit_maps))])
    if report:
        group = pe.Node(GroupByRun(), name="group_z")
        glm_report = pe.MapNode(
            GLMReport(parameters=json.dumps({"noise_model": noise_model,
                                             "smoothing_fwhm": smoothing_fwhm,
                                             "confounds": confounds}),
                      methods=workflow.__desc__,
                      # set explicitly: a MapNode loses this Tuple trait's default
                      report_dims=(1600, 800)),
            iterfield=["design_files", "mask_file", "z_files", "contrast_names", "contrasts"],
            name="report",
        )
        if surface:  # the report reads a surface mask as one file (a GIFTI pair merged)
            report_mask = pe.MapNode(ReportMap(), iterfield=["in_file"], name="report_mask")
            workflow.connect([(mask, report_mask, [(mask_out, "in_file")]),
                              (report_mask, glm_report, [("out_file", "mask_file")])])
        else:
            workflow.connect([(mask, glm_report, [(mask_out, "mask_file")])])
        workflow.connect([
            (contrast, group, [(f"z{map_suffix}", "in_files")]),
            (jobs, group, [("run_index", "run_index"), ("n_runs", "n_runs")]),
            (load, glm_report, [("design_file", "design_files")]),
            (group, glm_report, [("out_files", "z_files")]),
            (jobs, glm_report, [("run_contrast_names", "contrast_names"),
                                ("run_contrasts", "contrasts")]),
            (glm_report, outputnode, [("report_file", "report_files")]),
        ])
    if output_dir is not None:
        analysis = {"NoiseModel": noise_model, "SmoothingFWHM": smoothing_fwhm,
                    "SignalScaling": signal_scaling, **(analysis_metadata or {})}
        sink = pe.Node(
            DerivativesSink(output_dir=str(Path(output_dir).resolve()), analysis=analysis,
                            source_datasets=[str(s) for s in source_datasets],
                            overwrite=overwrite, clusters=not surface),
            name="derivatives_sink",
        )
        if command:
            sink.inputs.command = command
        workflow.connect([
            (bold_source, sink, [(bold_field, "bold_files")]),
            (inputnode, sink, [("entities", "entities"), ("source_files", "source_files")]),
            (load, sink, [("design_file", "design_files"),
                          ("provenance_file", "provenance_files"),
                          ("contrasts_file", "contrasts_files")]),
            (mask, sink, [(mask_out, "mask_files")]),
            (jobs, sink, [("run_index", "run_index")]),
            (contrast, sink, [*contrast_maps, ("stat_type", "stat_types"), ("dof", "dofs")]),
            (sink, outputnode, [("out_files", "out_files")]),
        ])
        if model_maps:
            workflow.connect([(fit, sink, list(fit_maps))])
        if report:
            workflow.connect([(glm_report, sink, [("report_file", "report_files")])])
    # fmt: on
    return workflow


def _surface_runs(bold_files, mask_files=None):
    """Surface runs as lists of files, as ``[[run]]`` for ComputeSurfaceMask, and one mask
    entry per run (``[]``: none given)."""
    runs = [[run] if isinstance(run, str) else [str(f) for f in run] for run in bold_files]
    if mask_files is None or mask_files == [] or type(mask_files).__name__ == "_Undefined":
        masks = [[] for _ in runs]
    else:
        masks = [[m] if isinstance(m, str) else [str(f) for f in (m or [])] for m in mask_files]
        if len(masks) != len(runs):
            raise ValueError(
                f"{len(masks)} surface masks for {len(runs)} runs; give one per run "
                "(each [left, right] GIFTI or [mask.dscalar.nii]).")
    return runs, [[run] for run in runs], masks


def _describe(model, confounds, noise_model, smoothing_fwhm):
    smoothing = (f", smoothed with a {smoothing_fwhm} mm FWHM Gaussian kernel"
                 if smoothing_fwhm else "")
    return (
        "Run-level general linear models of the fMRIPrep-preprocessed BOLD series"
        f"{smoothing} were fitted with glmflow (nilearn FirstLevelModel semantics), "
        f"following {model}. Events came from the raw BIDS events files, the repetition "
        "time and slice-timing reference from the BOLD sidecars; confound regressors "
        f"({confounds}) and the volumes to censor were selected from fMRIPrep's confounds "
        f"table with nilearn's load_confounds. The noise model was {noise_model}."
    )
