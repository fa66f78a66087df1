"""``glmflow BIDS_DIR OUTPUT_DIR participant --derivatives FMRIPREP_DIR ...``: the BIDS app.

Finds the fMRIPrep-preprocessed runs of the chosen participants, tasks and space, builds one
:func:`~glmflow.workflows.bids.init_bids_first_level_wf` per run inside one Nipype workflow
(so the runs go in parallel on MultiProc or as batch jobs on SLURM/SGE), reports progress
per subject/run/node, and ends with a summary of what was written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

from glmflow import __version__

DESCRIPTION = """\
Run-level (first-level) GLM statistics of fMRIPrep-preprocessed BOLD data, written as BIDS
derivatives. The numbers are those of nilearn's FirstLevelModel (|dz| < 1e-9); the work runs
as a Nipype workflow on any plugin.

Inputs: from BIDS_DIR the raw events (sub-*/[ses-*/]func/*_events.tsv) and the BOLD JSON
sidecars (RepetitionTime; StartTime / SliceTiming for the slice-timing reference), read with
BIDS inheritance (a top-level task-<label>_bold.json applies to every run of the task); from
--derivatives the fMRIPrep outputs of each run in --space: *_space-<S>_desc-preproc_bold.nii.gz,
*_space-<S>_desc-brain_mask.nii.gz and *_desc-confounds_timeseries.tsv (+ .json).

Surface spaces: --space fsaverage5 (or fsaverage, fsaverage3/4/6, fsnative) fits fMRIPrep's
GIFTI runs, *_hemi-L_space-<S>_bold.func.gii paired with its hemi-R sibling; --space fsLR
(fsLR:den-91k|170k when both exist) fits the CIFTI-2 runs *_space-fsLR_den-91k_bold.dtseries.nii
(cortical vertices and subcortical voxels). fMRIPrep writes no surface brain mask: without
--surface-mask every vertex/grayordinate finite in the run is analysed (nilearn's rule). The
confounds table is the one of the volume run with the same entities.

Outputs in OUTPUT_DIR/sub-<label>/[ses-<label>/]func/, per run and contrast, named like
nilearn's save_glm_to_bids:
  <run>_space-<S>_contrast-<name>_stat-<effect|variance|t|F|z|p>_statmap.nii.gz (+ .json)
  <run>_space-<S>_contrast-<name>_clusters.tsv (+ .json)
  <run>_space-<S>_design.tsv (+ .json), _mask.nii.gz, _stat-rsquared_statmap.nii.gz,
  _stat-errorts_statmap.nii.gz, _report.html
On surfaces the maps keep the input's format, with no cluster tables:
  <run>_hemi-<L|R>_space-<S>_contrast-<name>_stat-<stat>_statmap.func.gii (+ .json)
  <run>_space-fsLR_den-91k_contrast-<name>_stat-<stat>_statmap.dscalar.nii (+ .json)
  (mask and R-square likewise; residuals as .func.gii series or .dtseries.nii)
and OUTPUT_DIR/dataset_description.json (GeneratedBy, SourceDatasets).
"""

EPILOG = """\
confound strategies (--confounds), nilearn's load_confounds / load_confounds_strategy:
  presets      simple | scrubbing | compcor   (each includes fMRIPrep's cosine regressors,
               which then replace the GLM's own drift model)
  components   motion, wm_csf, global_signal, compcor, scrub, high_pass, non_steady_state,
               comma-separated, each optionally followed by key=value parameters of nilearn's
               load_confounds: motion=basic|power2|derivatives|full (or 6|12|24),
               wm_csf=..., global_signal=..., scrub=N, fd_threshold=MM,
               std_dvars_threshold=X, compcor=anat_combined|anat_separated|temporal|...,
               n_compcor=N|all, demean=true|false
  none         no confound regressors
  Scrubbing (scrub / the scrubbing preset: volumes whose framewise displacement exceeds
  fd_threshold mm or whose standardized DVARS exceeds std_dvars_threshold, and segments
  shorter than scrub volumes between them) and fMRIPrep's non_steady_state_outlier columns
  remove volumes from the fit (a sample mask), as nilearn does.
  Default: motion,wm_csf (24 motion parameters + mean WM and CSF) without --model; with
  --model, only the confounds its Model.X names (add --confounds to add a strategy).

examples:
  glmflow /data/bids /data/derivatives/glmflow participant \\
      --derivatives /data/derivatives/fmriprep --participant-label 01 02 --task auditory
  glmflow /data/bids /out participant --derivatives /data/fmriprep \\
      --model model-auditory_smdl.json --confounds scrubbing,fd_threshold=0.3 \\
      --plugin MultiProc --plugin-args n_procs=4 -w /scratch/work
  glmflow /data/bids /out participant --derivatives /data/fmriprep \\
      --plugin SLURM --plugin-args 'sbatch_args=-p short -t 30'
  glmflow /data/bids /out participant --derivatives /data/fmriprep \\
      --space fsaverage5 --smoothing-fwhm 6 \\
      --surface-mask cortex_hemi-L.func.gii cortex_hemi-R.func.gii
  glmflow /data/bids /out participant --derivatives /data/fmriprep --space fsLR
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="glmflow",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, metavar="BIDS_DIR",
                        help="the raw BIDS dataset (events.tsv and BOLD sidecars)")
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR",
                        help="where the BIDS-derivatives statistics are written")
    parser.add_argument("analysis_level", choices=["participant"],
                        help="'participant': run-level statistics of each participant")
    parser.add_argument("--version", action="version", version=f"glmflow {__version__}")

    data = parser.add_argument_group("which data")
    data.add_argument("--derivatives", type=Path, required=True, metavar="FMRIPREP_DIR",
                      help="the fMRIPrep output folder (preprocessed BOLD, brain masks, "
                           "confounds tables)")
    data.add_argument("--participant-label", nargs="+", metavar="LABEL",
                      help="participants to analyse (with or without 'sub-'); default: all")
    data.add_argument("--task", nargs="+", metavar="LABEL",
                      help="tasks to analyse (with or without 'task-'); default: the model's "
                           "Input.task, else all")
    data.add_argument("--session", nargs="+", metavar="LABEL",
                      help="sessions to analyse; default: all")
    data.add_argument("--run", nargs="+", metavar="LABEL", help="runs to analyse; default: all")
    data.add_argument("--space", default="MNI152NLin2009cAsym",
                      help="fMRIPrep output space of the BOLD and mask, optionally with "
                           ":res-<label> when several resolutions exist "
                           "(default: %(default)s; 'func' for the boldref space). Surface "
                           "spaces: fsaverage5 (fsaverage, fsaverage3/4/6, fsnative): the "
                           "hemi-L/hemi-R .func.gii pairs; fsLR[:den-<label>]: the CIFTI-2 "
                           ".dtseries.nii runs")
    data.add_argument("--surface-mask", nargs="+", type=Path, metavar="MASK",
                      help="with a surface --space: the vertices/grayordinates to analyse "
                           "(non-zero = in), as two GIFTI files LEFT RIGHT (e.g. cortex "
                           "without the medial wall) or one .dscalar.nii for fsLR. Default: "
                           "those finite in the run (nilearn's rule; fMRIPrep writes no "
                           "surface mask)")

    model = parser.add_argument_group("model")
    model.add_argument("--model", type=Path, metavar="MODEL.json",
                       help="a BIDS Stats Models file; its run-level node gives Model.X "
                            "(wildcards allowed), HRF, Options.HighPassFilterCutoffHz, "
                            "Contrasts (t/F) and DummyContrasts, after the Factor / Scale / "
                            "Convolve transformations. Default: one regressor and one t "
                            "contrast per trial_type")
    model.add_argument("--confounds", metavar="STRATEGY",
                       help="confound strategy (see below); default: motion,wm_csf without "
                            "--model, none (the model's X) with it")
    model.add_argument("--hrf-model", default="glover",
                       help="HRF of the default model, nilearn names: glover, spm, "
                            "'spm + derivative', 'glover + derivative + dispersion', fir "
                            "(default: %(default)s; a --model sets its own)")
    model.add_argument("--high-pass", type=float, default=0.01, metavar="HZ",
                       help="cosine drift cut-off of the default model, or of a model without "
                            "HighPassFilterCutoffHz (default: %(default)s Hz)")
    model.add_argument("--slice-time-ref", default="auto", metavar="FRACTION|auto",
                       help="time of each volume within its TR, as a fraction (0-1); 'auto' "
                            "(default): StartTime/RepetitionTime when fMRIPrep recorded "
                            "StartTime, else the middle of SliceTiming when slice timing was "
                            "corrected, else 0. The rule used is written in every sidecar")
    model.add_argument("--smoothing-fwhm", type=float, metavar="MM",
                       help="Gaussian smoothing of the BOLD before the fit (default: none). "
                            "On fsaverage* / fsnative: nilearn's surface smoothing on the "
                            "pial mesh (fsnative: the subject's *_hemi-<L|R>_pial.surf.gii "
                            "from --derivatives); not available for fsLR")
    model.add_argument("--noise-model", default="ar1",
                       help="'ols' or 'arN' (default: %(default)s)")
    model.add_argument("--signal-scaling", type=int, choices=[0, 1], default=0,
                       help="0: percent signal change of each voxel's mean (default); 1: of "
                            "each volume's mean")

    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--no-model-maps", action="store_true",
                         help="skip the R-square and residual (errorts) maps; faster, and the "
                              "residuals are as large as the input")
    outputs.add_argument("--no-report", action="store_true", help="skip the HTML reports")
    outputs.add_argument("--overwrite", action="store_true",
                         help="replace existing outputs that differ (default: stop with an "
                              "error rather than silently replace a result)")

    run = parser.add_argument_group("execution")
    run.add_argument("--plugin", default="MultiProc",
                     choices=["Linear", "MultiProc", "SLURM", "SGE", "SLURMGraph", "SGEGraph"],
                     help="Nipype plugin (default: %(default)s)")
    run.add_argument("--plugin-args", nargs="+", metavar="KEY=VALUE",
                     help="plugin arguments as KEY=VALUE pairs (values parsed as JSON when "
                          "they can be, e.g. n_procs=4 'sbatch_args=-p short') or one JSON "
                          "object")
    run.add_argument("-w", "--work-dir", type=Path, default=Path("work"),
                     help="Nipype working folder (the cache; rerun with the same one to "
                          "resume). Must be shared with the nodes on SLURM/SGE "
                          "(default: ./work)")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="print only errors and the final summary")
    return parser


def parse_plugin_args(items):
    """``["n_procs=2", "sbatch_args=-p x"]`` or ``['{"n_procs": 2}']`` → dict."""
    from glmflow.core.errors import ParameterError

    if not items:
        return {}
    if len(items) == 1 and items[0].strip().startswith("{"):
        try:
            value = json.loads(items[0])
        except json.JSONDecodeError as exc:
            raise ParameterError(f"--plugin-args is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ParameterError("--plugin-args JSON must be an object.")
        return value
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"--plugin-args: {item!r} is not KEY=VALUE.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _slice_time_ref(text):
    from glmflow.core.errors import ParameterError

    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise ParameterError(f"--slice-time-ref must be 'auto' or a number; got {text!r}.") from exc
    if not 0 <= value <= 1:
        raise ParameterError(f"--slice-time-ref must be within [0, 1]; got {value}.")
    return value


def _node_name(label):
    return re.sub(r"\W", "_", label) + "_wf"


class Progress:
    """Nipype status callback: which subject/run/node starts and ends, and how many are left."""

    # No open stream is kept: Nipype pickles plugin arguments (and so this object) for
    # MapNodes, and a file object cannot be pickled.
    def __init__(self, labels, total, *, quiet=False):
        self.labels = labels  # sub-workflow name → run label
        self.total = total
        self.done = 0
        self.quiet = quiet
        self.started = time.time()
        self.failed = []

    def _label(self, node):
        parts = node.fullname.split(".")
        run = next((self.labels[p] for p in parts if p in self.labels), "")
        return run, parts[-1]

    def __call__(self, node, status):
        if node.name.startswith("_"):  # one item of a MapNode: its MapNode is reported
            return
        run, step = self._label(node)
        if status == "end":
            self.done += 1
        elif status == "exception":
            self.done += 1
            self.failed.append(f"{run} {step}")
        if self.quiet:
            return
        verb = {"start": "start", "end": "done ", "exception": "FAIL "}.get(status, status)
        left = self.total - self.done
        elapsed = time.time() - self.started
        print(f"[{self.done:>3}/{self.total}, {left} left, {elapsed:6.1f} s] {verb} "
              f"{run}: {step}", flush=True)


def main(argv=None):
    """Run the command; return the exit code (0 success, 1 failure, 2 usage error)."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    from glmflow.core.errors import GLMFlowError
    from glmflow.core.run_errors import WorkflowError

    try:
        return _run(args, argv)
    except (GLMFlowError, WorkflowError) as exc:
        print(f"glmflow: error: {exc}", file=sys.stderr)
        return 1


def _run(args, argv):
    # Only light imports until the inputs are checked: a wrong path or an empty query is
    # reported before nipype and nilearn are loaded.
    from glmflow.bids.confounds import DEFAULT_STRATEGY, parse_strategy
    from glmflow.bids.layout import collect_runs, space_kind
    from glmflow.bids.stats_model import load_model
    from glmflow.core.errors import ParameterError

    started = time.time()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    plugin_args = parse_plugin_args(args.plugin_args)
    slice_time_ref = _slice_time_ref(args.slice_time_ref)
    model = load_model(args.model, default_high_pass=args.high_pass) if args.model else None
    confounds = args.confounds or ("none" if model is not None else DEFAULT_STRATEGY)
    tasks = args.task or (model.input_filters.get("task") if model else None)
    subjects = args.participant_label or (model.input_filters.get("subject") if model else None)
    kind = space_kind(args.space)
    surface_mask = _surface_mask(args.surface_mask, kind, args.space)
    if kind == "cifti" and args.smoothing_fwhm:
        raise ParameterError(
            f"--smoothing-fwhm is not available for --space {args.space} (CIFTI): cortex and "
            "subcortical voxels need different kernels. Smooth with wb_command "
            "-cifti-smoothing beforehand, or analyse an fsaverage space.")
    runs = collect_runs(args.bids_dir, args.derivatives, participant_label=subjects, task=tasks,
                        space=args.space, session=args.session, run=args.run)
    subjects_found = sorted({r.subject for r in runs})
    say(f"glmflow {__version__}: {len(runs)} run(s) of {len(subjects_found)} participant(s) "
        f"({', '.join('sub-' + s for s in subjects_found)}) in space {args.space}; model: "
        f"{args.model or 'one contrast per trial_type'}; confounds: {confounds}")
    for run in runs:
        say(f"  {run.label}: {' + '.join(p.name for p in run.bold_files)}")
    parse_strategy(confounds)

    from nipype import config, logging
    from nipype.pipeline import engine as pe

    from glmflow.execution import apply_node_resources, run_workflow
    from glmflow.workflows.bids import init_bids_first_level_wf

    config.set("logging", "workflow_level", "WARNING")
    config.set("logging", "interface_level", "WARNING")
    logging.update_logging(config)
    output_dir = args.output_dir.resolve()
    command = "glmflow " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                             else sys.argv[1:]))
    top = pe.Workflow(name="glmflow_wf")
    labels = {}
    for run in runs:
        name = _node_name(run.label)
        labels[name] = run.label
        wf = init_bids_first_level_wf(
            name=name,
            model=model,
            confounds=confounds,
            slice_time_ref=slice_time_ref,
            hrf_model=args.hrf_model,
            high_pass=args.high_pass,
            smoothing_fwhm=args.smoothing_fwhm,
            signal_scaling=args.signal_scaling,
            noise_model=args.noise_model,
            model_maps=not args.no_model_maps,
            report=not args.no_report,
            output_dir=output_dir,
            source_datasets=[args.bids_dir, args.derivatives],
            command=command,
            overwrite=args.overwrite,
            space_kind=kind,
            mesh=_surface_mesh(run, args) if kind == "gifti" else None,
        )
        if kind == "volume":
            bold, mask = str(run.bold), str(run.mask)
        else:
            bold = [str(p) for p in run.bold_files]
            mask = surface_mask
        wf.inputs.inputnode.bold_files = [bold]
        wf.inputs.inputnode.mask_files = [mask]
        wf.inputs.inputnode.confounds_files = [str(run.confounds)]
        wf.inputs.inputnode.events_files = [str(run.events)]
        wf.inputs.inputnode.metadata = [run.metadata]
        wf.inputs.inputnode.entities = [run.output_entities]
        wf.inputs.inputnode.source_files = [{
            "bold": bold, "mask": mask, "confounds": str(run.confounds),
            "events": str(run.events), "metadata": run.metadata_files,
        }]
        if kind == "volume":  # the memory estimates are for the volume nodes
            apply_node_resources(wf, [str(run.bold)])
        top.add_nodes([wf])
    n_nodes = sum(1 for node in top._create_flat_graph().nodes()
                  if node.name not in ("inputnode", "outputnode"))
    progress = Progress(labels, n_nodes, quiet=args.quiet)
    plugin_args["status_callback"] = progress
    if args.plugin == "MultiProc":
        plugin_args.setdefault("n_procs", os.cpu_count() or 1)
    say(f"Running {n_nodes} nodes on {args.plugin} (work folder {args.work_dir.resolve()})")
    graph = run_workflow(top, plugin=args.plugin, plugin_args=plugin_args,
                         base_dir=args.work_dir.resolve())
    written = []
    for node in graph.nodes():
        if node.name == "derivatives_sink":
            written += list(node.result.outputs.out_files)
    _summary(output_dir, runs, written, time.time() - started)
    return 0


def _surface_mask(files, kind, space):
    """Check ``--surface-mask`` against the space: [left, right] GIFTI or [dscalar]."""
    from glmflow.core.errors import InputFileError, ParameterError

    if not files:
        return []
    if kind == "volume":
        raise ParameterError(
            f"--surface-mask is for surface spaces (fsaverage*, fsnative, fsLR); --space "
            f"{space} is a volume space, whose runs use fMRIPrep's desc-brain_mask.")
    for path in files:
        if not path.is_file():
            raise InputFileError(f"--surface-mask: {path} does not exist.")
    names = [p.name for p in files]
    if kind == "gifti" and (len(files) != 2 or not all(n.endswith(".gii") for n in names)):
        raise ParameterError(
            f"--surface-mask for --space {space} takes two GIFTI files, LEFT RIGHT; got "
            f"{names}.")
    if kind == "cifti" and (len(files) != 1 or not names[0].endswith(".dscalar.nii")):
        raise ParameterError(
            f"--surface-mask for --space {space} takes one .dscalar.nii file; got {names}.")
    return [str(p.resolve()) for p in files]


def _surface_mesh(run, args):
    """The mesh smoothing needs: the template's name, or fsnative's own pial surfaces."""
    from glmflow.core.errors import InputFileError

    if not args.smoothing_fwhm:
        return None  # the mesh is used for smoothing only (a template may need a download)
    if run.space != "fsnative":
        return run.space
    subject = args.derivatives / f"sub-{run.subject}"
    pairs = []
    for hemi in ("L", "R"):
        found = sorted(subject.glob(f"**/anat/sub-{run.subject}*_hemi-{hemi}_pial.surf.gii"))
        if not found:
            raise InputFileError(
                f"--smoothing-fwhm on fsnative needs the subject's pial surfaces; no "
                f"{subject}/**/anat/sub-{run.subject}*_hemi-{hemi}_pial.surf.gii found.")
        pairs.append(str(found[0]))
    return pairs


def _summary(output_dir, runs, written, seconds):
    import nibabel as nib
    import numpy as np

    from glmflow.bids.layout import parse_bids_filename

    print(f"\nglmflow: done in {seconds:.1f} s; {len(set(written))} files in {output_dir}")
    parsed = []
    for path in sorted(set(written)):
        if Path(path).name.startswith("sub-"):
            parsed.append((Path(path), parse_bids_filename(path)))
    for run in runs:
        wanted = run.output_entities
        files = [(path, p) for path, p in parsed
                 if all(p.entities.get(k) == v for k, v in wanted.items())]
        z_maps = {}  # contrast -> its z map files (a GIFTI pair: two)
        for path, p in files:
            if p.entities.get("stat") == "z" and p.suffix == "statmap" and \
                    not p.extension.endswith(".json"):
                z_maps.setdefault(p.entities["contrast"], []).append(path)
        print(f"  {run.label}: {len(files)} files, {len(z_maps)} contrast(s)")
        for contrast, paths in sorted(z_maps.items()):
            values = np.concatenate([_values(nib.load(path)) for path in paths])
            print(f"    {contrast}: z from {values.min():.2f} to {values.max():.2f} -> "
                  f"{', '.join(path.name for path in sorted(paths))}")


def _values(img):
    import numpy as np

    if hasattr(img, "darrays"):  # GIFTI
        return np.concatenate([np.ravel(d.data) for d in img.darrays])
    return np.ravel(np.asanyarray(img.dataobj))


if __name__ == "__main__":
    sys.exit(main())
