"""Interfaces between fMRIPrep/BIDS files and the GLM nodes, and the derivatives sink.

* :class:`LoadBIDSRun` — one run's events, confounds and sidecar metadata → design matrix,
  sample mask (scrubbing, non-steady-state volumes) and contrast matrices;
* :class:`ContrastJobs` — the (run, contrast) pairs to estimate, flattened for a MapNode;
* :class:`GroupByRun` — per-job files back into one list per run (for the reports);
* :class:`ReportMap` — a surface map (GIFTI pair) as one file the report can read;
* :class:`DerivativesSink` — every output under its BIDS-derivatives name, with sidecars.
"""

import json
import os

import numpy as np
from nipype.interfaces.base import (
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from glmflow.interfaces.base import GLMFlowInputSpec, optional


class _LoadBIDSRunInputSpec(GLMFlowInputSpec):
    bold_file = traits.Either(
        File(exists=True), traits.List(File(exists=True)), mandatory=True,
        desc="preprocessed BOLD (desc-preproc_bold), or a surface run: [hemi-L, hemi-R] "
             ".func.gii or [.dtseries.nii]")
    events_file = File(exists=True, mandatory=True, desc="the run's BIDS events.tsv")
    confounds_file = File(exists=True, mandatory=True,
                          desc="fMRIPrep desc-confounds_timeseries.tsv")
    confounds_json = traits.Either(None, File(exists=True), default=None, usedefault=True,
                                   desc="the confounds table's JSON (CompCor); default: beside it")
    metadata = traits.Dict(mandatory=True,
                           desc="BOLD metadata (RepetitionTime, StartTime/SliceTiming, ...)")
    model = traits.Str("", usedefault=True,
                       desc="BIDS Stats Model document as JSON text; '' for one contrast per "
                            "trial_type")
    model_source = traits.Str("", usedefault=True, desc="where the model came from (recorded)")
    confounds_strategy = traits.Str("motion,wm_csf", usedefault=True,
                                    desc="confound strategy (glmflow.bids.confounds grammar)")
    slice_time_ref = traits.Either(None, traits.Float, default=None, usedefault=True,
                                   desc="override the slice-timing reference (0-1)")
    hrf_model = traits.Str("glover", usedefault=True, desc="HRF of the default model")
    high_pass = traits.Float(0.01, usedefault=True, desc="cut-off (Hz) of the default model")
    drift_order = traits.Int(1, usedefault=True, desc="polynomial drift order")
    min_onset = traits.Float(-24.0, usedefault=True, desc="earliest onset modelled (s)")


class _LoadBIDSRunOutputSpec(TraitedSpec):
    design_file = File(exists=True, desc="design matrix TSV")
    sample_mask_file = File(exists=True, desc="kept volume indices (0-based) TSV")
    contrasts_file = File(exists=True, desc="JSON list of the run's contrasts (matrices)")
    provenance_file = File(exists=True, desc="JSON: timing, model, confounds, drift, volumes")
    t_r = traits.Float(desc="repetition time (s)")


class LoadBIDSRun(SimpleInterface):
    """Build one run's design, sample mask and contrasts from BIDS/fMRIPrep inputs."""

    input_spec = _LoadBIDSRunInputSpec
    output_spec = _LoadBIDSRunOutputSpec

    def _run_interface(self, runtime):
        from glmflow.bids.confounds import parse_strategy
        from glmflow.bids.run import prepare_run
        from glmflow.bids.stats_model import default_model, parse_model
        from glmflow.core.design import save_design
        from glmflow.core.io import save_json, save_sample_mask

        if self.inputs.model:
            model = parse_model(json.loads(self.inputs.model),
                                source=self.inputs.model_source or None)
        else:
            model = default_model(hrf_model=self.inputs.hrf_model,
                                  high_pass=self.inputs.high_pass)
        bold = self.inputs.bold_file
        design, sample_mask, contrasts, provenance = prepare_run(
            bold_file=bold if isinstance(bold, str) else list(bold),
            events_file=self.inputs.events_file,
            confounds_file=self.inputs.confounds_file,
            metadata=dict(self.inputs.metadata),
            model=model,
            confounds_spec=parse_strategy(self.inputs.confounds_strategy),
            slice_time_ref=optional(self.inputs.slice_time_ref),
            drift_order=self.inputs.drift_order,
            min_onset=self.inputs.min_onset,
        )
        cwd = runtime.cwd
        if sample_mask is None:  # keep every volume: same numbers, one wiring for all runs
            sample_mask = np.arange(provenance["NumberOfVolumes"])
        self._results["design_file"] = save_design(design, os.path.join(cwd, "design.tsv"))
        self._results["sample_mask_file"] = save_sample_mask(
            sample_mask, os.path.join(cwd, "sample_mask.tsv"))
        self._results["contrasts_file"] = save_json(contrasts, os.path.join(cwd, "contrasts.json"))
        self._results["provenance_file"] = save_json(
            provenance, os.path.join(cwd, "provenance.json"))
        self._results["t_r"] = provenance["RepetitionTime"]
        return runtime


class _ContrastJobsInputSpec(GLMFlowInputSpec):
    model_files = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="fitted model of each run")
    contrasts_files = InputMultiObject(File(exists=True), mandatory=True,
                                       desc="contrasts JSON of each run (from LoadBIDSRun)")


class _ContrastJobsOutputSpec(TraitedSpec):
    model_files = traits.List(traits.List(File(exists=True)),
                              desc="per job: the run's model file (as a one-item list)")
    contrast_names = traits.List(traits.Str, desc="per job: contrast name")
    contrast_defs = traits.List(traits.Str, desc="per job: encoded contrast matrix")
    stat_types = traits.List(traits.Str, desc="per job: 't' or 'F'")
    run_index = traits.List(traits.Int, desc="per job: index of its run")
    run_contrast_names = traits.List(traits.List(traits.Str), desc="per run: contrast names")
    run_contrasts = traits.List(traits.Str, desc="per run: GLMReport's contrasts JSON")
    n_runs = traits.Int(desc="number of runs")


class ContrastJobs(SimpleInterface):
    """Flatten (run, contrast) pairs so one MapNode estimates them all in parallel."""

    input_spec = _ContrastJobsInputSpec
    output_spec = _ContrastJobsOutputSpec

    def _run_interface(self, runtime):
        from glmflow.interfaces.contrast import encode_contrast

        if len(self.inputs.model_files) != len(self.inputs.contrasts_files):
            raise ValueError(
                f"ContrastJobs: {len(self.inputs.model_files)} model files but "
                f"{len(self.inputs.contrasts_files)} contrasts files; one of each per run."
            )
        out = {key: [] for key in ("model_files", "contrast_names", "contrast_defs",
                                   "stat_types", "run_index", "run_contrast_names",
                                   "run_contrasts")}
        for index, (model_file, path) in enumerate(
            zip(self.inputs.model_files, self.inputs.contrasts_files, strict=True)
        ):
            with open(path) as handle:
                contrasts = json.load(handle)
            names, report = [], {}
            for contrast in contrasts:
                matrix = contrast["matrix"]
                definition = matrix[0] if contrast["stat_type"] == "t" else matrix
                out["model_files"].append([model_file])
                out["contrast_names"].append(contrast["name"])
                out["contrast_defs"].append(encode_contrast(definition))
                out["stat_types"].append(contrast["stat_type"])
                out["run_index"].append(index)
                names.append(contrast["name"])
                report[contrast["name"]] = {"def": definition,
                                            "stat_type": contrast["stat_type"]}
            out["run_contrast_names"].append(names)
            out["run_contrasts"].append(json.dumps(report))
        self._results.update(out)
        self._results["n_runs"] = len(self.inputs.model_files)
        return runtime


def _file_or_files(**kwargs):
    """A map: one file (NIfTI, CIFTI) or a list of files (a [left, right] GIFTI pair)."""
    return traits.Either(File(exists=True), traits.List(File(exists=True)), **kwargs)


class _GroupByRunInputSpec(GLMFlowInputSpec):
    in_files = InputMultiObject(_file_or_files(), mandatory=True,
                                desc="one map per job (a file, or a [left, right] GIFTI pair)")
    run_index = traits.List(traits.Int, mandatory=True, desc="run index of each job")
    n_runs = traits.Int(mandatory=True, desc="number of runs")


class _GroupByRunOutputSpec(TraitedSpec):
    out_files = traits.List(traits.List(File(exists=True)), desc="per run: its jobs' files")


class GroupByRun(SimpleInterface):
    """Regroup per-job files into one list per run (job order kept).

    A GIFTI pair becomes one file (see :func:`report_map`), the form the report reads.
    """

    input_spec = _GroupByRunInputSpec
    output_spec = _GroupByRunOutputSpec

    def _run_interface(self, runtime):
        groups = [[] for _ in range(self.inputs.n_runs)]
        for job, (path, index) in enumerate(zip(self.inputs.in_files, self.inputs.run_index,
                                                 strict=True)):
            groups[index].append(report_map(path, os.path.join(runtime.cwd, f"job{job:04d}")))
        self._results["out_files"] = groups
        return runtime


def report_map(files, stem):
    """One file for the report: a NIfTI/CIFTI path as is, a GIFTI pair merged into one.

    The report reads surface maps for their values only (no figures), so both hemispheres
    go into one GIFTI file, left then right, as ``<stem>.func.gii``.
    """
    import nibabel as nib

    if isinstance(files, str):
        return files
    files = list(files)
    if len(files) == 1:
        return files[0]
    darrays = [darray for path in files for darray in nib.load(path).darrays]
    target = f"{stem}.func.gii"
    nib.GiftiImage(darrays=darrays).to_filename(target, mode="force")
    return target


class _ReportMapInputSpec(GLMFlowInputSpec):
    in_file = _file_or_files(mandatory=True, desc="a map: one file or a GIFTI pair")


class _ReportMapOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the map as one file")


class ReportMap(SimpleInterface):
    """A map as one file for GLMReport (a GIFTI pair merged, see :func:`report_map`)."""

    input_spec = _ReportMapInputSpec
    output_spec = _ReportMapOutputSpec

    def _run_interface(self, runtime):
        self._results["out_file"] = report_map(self.inputs.in_file,
                                               os.path.join(runtime.cwd, "map"))
        return runtime


class _DerivativesSinkInputSpec(GLMFlowInputSpec):
    output_dir = Directory(mandatory=True, desc="BIDS-derivatives output folder")
    bold_files = InputMultiObject(_file_or_files(), mandatory=True,
                                  desc="runs' BOLD (a file, or a [left, right] GIFTI pair)")
    entities = traits.List(traits.Dict, desc="per run: entities naming its outputs "
                                             "(default: parsed from the BOLD names)")
    source_files = traits.List(traits.Dict, desc="per run: input files to record")
    design_files = InputMultiObject(File(exists=True), mandatory=True, desc="per run")
    mask_files = InputMultiObject(_file_or_files(), mandatory=True, desc="per run")
    provenance_files = InputMultiObject(File(exists=True), mandatory=True, desc="per run")
    contrasts_files = InputMultiObject(File(exists=True), mandatory=True, desc="per run")
    r_square_files = traits.List(traits.Any, desc="per run: R-square map (optional)")
    residuals_files = traits.List(traits.Any, desc="per run: residuals 4D (optional)")
    report_files = traits.List(traits.Any, desc="per run: HTML report (optional)")
    run_index = traits.List(traits.Int, mandatory=True, desc="per job: run index")
    stat_types = traits.List(traits.Str, mandatory=True, desc="per job: t or F")
    dofs = traits.List(traits.Float, mandatory=True, desc="per job: degrees of freedom")
    effect_files = InputMultiObject(_file_or_files(), mandatory=True, desc="per job")
    variance_files = InputMultiObject(_file_or_files(), mandatory=True, desc="per job")
    stat_files = InputMultiObject(_file_or_files(), mandatory=True, desc="per job")
    z_files = InputMultiObject(_file_or_files(), mandatory=True, desc="per job")
    p_files = InputMultiObject(_file_or_files(), mandatory=True, desc="per job")
    analysis = traits.Dict(desc="fit options recorded in each sidecar")
    source_datasets = traits.List(traits.Str, desc="input dataset folders (SourceDatasets)")
    command = traits.Str(desc="command line recorded in GeneratedBy")
    clusters = traits.Bool(True, usedefault=True,
                           desc="write cluster tables (nilearn's; volume maps only)")
    overwrite = traits.Bool(False, usedefault=True,
                            desc="replace existing outputs that differ (else: error)")


class _DerivativesSinkOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="every file written")


class DerivativesSink(SimpleInterface):
    """Write each run's statistics, design, mask and report under BIDS-derivatives names."""

    input_spec = _DerivativesSinkInputSpec
    output_spec = _DerivativesSinkOutputSpec

    def _run_interface(self, runtime):
        from glmflow.bids.layout import build_name
        from glmflow.bids.outputs import (
            read_json,
            run_entities_from_bold,
            subject_folder,
            write_dataset_description,
            write_run,
        )
        from glmflow.interfaces.bids import _per_run

        inputs = self.inputs
        n_runs = len(inputs.bold_files)
        entities = list(inputs.entities) if isdefined(inputs.entities) and inputs.entities \
            else [run_entities_from_bold(_plain(path)) for path in inputs.bold_files]
        sources = list(inputs.source_files) if isdefined(inputs.source_files) and \
            inputs.source_files else [{"bold": _plain(path)} for path in inputs.bold_files]
        written = [write_dataset_description(
            inputs.output_dir,
            source_datasets=list(inputs.source_datasets) if isdefined(inputs.source_datasets)
            else [],
            command=inputs.command if isdefined(inputs.command) else None,
            overwrite=True,  # the description is regenerated; it holds no result
        )]
        r_square = _per_run(inputs.r_square_files, n_runs)
        residuals = _per_run(inputs.residuals_files, n_runs)
        reports = _per_run(inputs.report_files, n_runs)
        analysis = dict(inputs.analysis) if isdefined(inputs.analysis) else {}
        for index in range(n_runs):
            jobs = [j for j, run in enumerate(inputs.run_index) if run == index]
            estimates = [{
                "stat_type": inputs.stat_types[j], "dof": inputs.dofs[j],
                "effect_file": _plain(inputs.effect_files[j]),
                "variance_file": _plain(inputs.variance_files[j]),
                "stat_file": _plain(inputs.stat_files[j]), "z_file": _plain(inputs.z_files[j]),
                "p_file": _plain(inputs.p_files[j]),
            } for j in jobs]
            written += write_run(
                inputs.output_dir, entities[index],
                design_file=inputs.design_files[index],
                mask_file=_plain(inputs.mask_files[index]),
                provenance=read_json(inputs.provenance_files[index]),
                contrasts=read_json(inputs.contrasts_files[index]),
                estimates=estimates,
                r_square_file=r_square[index],
                residuals_file=residuals[index],
                analysis=analysis,
                sources=sources[index],
                clusters=inputs.clusters,
                overwrite=inputs.overwrite,
            )
            if reports[index]:
                from glmflow.bids.outputs import copy_file

                target = subject_folder(inputs.output_dir, entities[index]) / build_name(
                    entities[index], "report", ".html")
                written.append(copy_file(reports[index], target, overwrite=True))
        self._results["out_files"] = written
        return runtime


def _per_run(values, n_runs):
    """An optional per-run list (Undefined, empty, or with Undefined items) → list of None/str
    (or of lists, for surface maps)."""
    if not isdefined(values) or not values:
        return [None] * n_runs
    return [_plain(v) if isdefined(v) and v else None for v in values]


def _plain(value):
    """A path as ``str``; a list of paths (a GIFTI pair, or ``[one.dscalar.nii]``) as a list
    of ``str``, a one-item list as its item."""
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
        return items[0] if len(items) == 1 else items
    return str(value)
