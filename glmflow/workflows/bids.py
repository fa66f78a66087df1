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
"""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from glmflow.bids.confounds import DEFAULT_STRATEGY, parse_strategy
from glmflow.bids.stats_model import RunModel, load_model, parse_model
from glmflow.core.glm import parse_noise_model
from glmflow.interfaces import ComputeMask, EstimateContrast, FitGLM
from glmflow.interfaces.bids import ContrastJobs, DerivativesSink, GroupByRun, LoadBIDSRun
from glmflow.interfaces.report import GLMReport

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

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` (lists, one entry per run): ``bold_files`` (``desc-preproc_bold``),
        ``mask_files`` (``desc-brain_mask``), ``confounds_files``
        (``desc-confounds_timeseries.tsv``), ``events_files`` (raw ``events.tsv``),
        ``metadata`` (dicts with at least ``RepetitionTime``), optionally ``entities``
        (dicts naming the outputs; default: parsed from the BOLD names) and ``source_files``.
        ``outputnode``: see :data:`OUTPUT_FIELDS` (per-run lists, and per-(run, contrast)
        lists aligned with ``contrast_runs``/``contrast_names``).
    """
    parse_noise_model(noise_model)
    parse_strategy(confounds)  # fail now on a bad strategy
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
    mask = pe.MapNode(ComputeMask(), iterfield=["bold_files", "mask_file"], name="mask")
    fit = pe.MapNode(
        FitGLM(noise_model=noise_model, smoothing_fwhm=smoothing_fwhm,
               signal_scaling=list(signal_scaling) if isinstance(signal_scaling, tuple)
               else signal_scaling,
               minimize_memory=not model_maps),
        iterfield=["bold_file", "design_file", "mask_file", "sample_mask_file", "t_r"],
        name="fit",
    )
    jobs = pe.Node(ContrastJobs(), name="contrast_jobs")
    contrast = pe.MapNode(
        EstimateContrast(),
        iterfield=["model_files", "contrast_name", "contrast_def", "stat_type"],
        name="contrast",
    )
    # fmt: off
    workflow.connect([
        (inputnode, load, [("bold_files", "bold_file"), ("events_files", "events_file"),
                           ("confounds_files", "confounds_file"), ("metadata", "metadata")]),
        (inputnode, mask, [("bold_files", "bold_files"), ("mask_files", "mask_file")]),
        (inputnode, fit, [("bold_files", "bold_file")]),
        (load, fit, [("design_file", "design_file"), ("sample_mask_file", "sample_mask_file"),
                     ("t_r", "t_r")]),
        (mask, fit, [("mask_file", "mask_file")]),
        (fit, jobs, [("model_file", "model_files")]),
        (load, jobs, [("contrasts_file", "contrasts_files")]),
        (jobs, contrast, [("model_files", "model_files"), ("contrast_names", "contrast_name"),
                          ("contrast_defs", "contrast_def"), ("stat_types", "stat_type")]),
        (load, outputnode, [("design_file", "design_files"),
                            ("sample_mask_file", "sample_mask_files"),
                            ("provenance_file", "provenance_files"),
                            ("contrasts_file", "contrasts_files")]),
        (mask, outputnode, [("mask_file", "mask_files")]),
        (fit, outputnode, [("model_file", "model_files")]),
        (jobs, outputnode, [("contrast_names", "contrast_names"),
                            ("run_index", "contrast_runs")]),
        (contrast, outputnode, [("effect_file", "effect_files"),
                                ("variance_file", "variance_files"),
                                ("stat_file", "stat_files"), ("z_file", "z_files"),
                                ("p_file", "p_files"), ("stat_type", "stat_types"),
                                ("dof", "dofs")]),
    ])
    if model_maps:
        workflow.connect([(fit, outputnode, [("r_square_file", "r_square_files"),
                                             ("residuals_file", "residuals_files")])])
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
        workflow.connect([
            (contrast, group, [("z_file", "in_files")]),
            (jobs, group, [("run_index", "run_index"), ("n_runs", "n_runs")]),
            (load, glm_report, [("design_file", "design_files")]),
            (mask, glm_report, [("mask_file", "mask_file")]),
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
                            overwrite=overwrite),
            name="derivatives_sink",
        )
        if command:
            sink.inputs.command = command
        workflow.connect([
            (inputnode, sink, [("bold_files", "bold_files"), ("entities", "entities"),
                               ("source_files", "source_files")]),
            (load, sink, [("design_file", "design_files"),
                          ("provenance_file", "provenance_files"),
                          ("contrasts_file", "contrasts_files")]),
            (mask, sink, [("mask_file", "mask_files")]),
            (jobs, sink, [("run_index", "run_index")]),
            (contrast, sink, [("effect_file", "effect_files"),
                              ("variance_file", "variance_files"),
                              ("stat_file", "stat_files"), ("z_file", "z_files"),
                              ("p_file", "p_files"), ("stat_type", "stat_types"),
                              ("dof", "dofs")]),
            (sink, outputnode, [("out_files", "out_files")]),
        ])
        if model_maps:
            workflow.connect([(fit, sink, [("r_square_file", "r_square_files"),
                                           ("residuals_file", "residuals_files")])])
        if report:
            workflow.connect([(glm_report, sink, [("report_file", "report_files")])])
    # fmt: on
    return workflow


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
