#!/usr/bin/env python
"""Fit a first-level GLM on one or more runs, on any Nipype plugin, and save the maps.

Example (three runs, two contrasts, on SLURM)::

    python workflows/run_first_level.py \\
        --bold run1.nii.gz run2.nii.gz run3.nii.gz \\
        --events run1_events.tsv run2_events.tsv run3_events.tsv \\
        --t-r 2 --contrast "audio=audio" --contrast "avmv=audio - visual" \\
        --plugin SLURM --plugin-args '{"sbatch_args": "-p debug -t 30"}' \\
        -w work -o results

Outputs (BIDS-derivatives names, written only after the whole run succeeded, each file
atomically): ``<prefix>_contrast-<label>_stat-{effect,variance,t,z,p}_statmap.nii.gz``,
``<prefix>_run-<i>_design.tsv``, ``<prefix>_mask.nii.gz`` and ``<prefix>_report.html``. ``<prefix>`` is built from
the ``sub``/``ses``/``task`` entities of the first BOLD file name (or ``--prefix``).

If a node fails or its batch job is killed, the script prints one error naming the node,
the job id and its log, writes nothing to the output folder and exits with status 1.
Running it again with the same ``-w`` resumes from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

# run from a source checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: outputnode field -> the ``stat-`` entity of the copied file
STAT_OF_FIELD = {
    "effect_files": "effect",
    "variance_files": "variance",
    "stat_files": None,  # t or F
    "z_files": "z",
    "p_files": "p",
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--bold", nargs="+", required=True, help="BOLD runs (4D NIfTI), in order")
    ap.add_argument("--events", nargs="+", required=True, help="events TSV per run")
    ap.add_argument("--confounds", nargs="+", help="confounds TSV per run (optional)")
    ap.add_argument("--mask", help="brain mask (optional; computed from the runs if absent)")
    ap.add_argument("--t-r", type=float, required=True, help="repetition time in seconds")
    ap.add_argument(
        "--contrast",
        action="append",
        required=True,
        metavar="NAME=EXPR",
        help='contrast name and expression, e.g. "avmv=audio - visual" (repeatable); '
        'append ":F" for an F test',
    )
    ap.add_argument("--noise-model", default="ar1", help="ar1 (default), arN or ols")
    ap.add_argument("--hrf-model", default="glover", help="nilearn HRF model (default glover)")
    ap.add_argument(
        "--plugin",
        default="Linear",
        choices=["Linear", "MultiProc", "SLURM", "SGE", "SLURMGraph", "SGEGraph"],
        help="Nipype plugin (default Linear); SLURM/SGE submit one job per node as it "
        "becomes ready, the Graph variants submit all jobs at once with dependencies",
    )
    ap.add_argument(
        "--plugin-args",
        default="{}",
        type=_json_dict,
        metavar="JSON",
        help='plugin arguments as JSON, e.g. \'{"sbatch_args": "-p debug -t 30"}\' or '
        "'{\"n_procs\": 4}'",
    )
    ap.add_argument("-w", "--work-dir", required=True, help="Nipype working directory (cache)")
    ap.add_argument("-o", "--output-dir", required=True, help="where the maps are written")
    ap.add_argument("--prefix", help="file name prefix, e.g. sub-01_task-auditory")
    ap.add_argument("--no-report", action="store_true", help="skip the HTML report node")
    ap.add_argument("--quiet", action="store_true", help="only warnings from Nipype")
    args = ap.parse_args(argv)
    for what in ("events", "confounds"):
        files = getattr(args, what)
        if files is not None and len(files) != len(args.bold):
            ap.error(f"--{what} needs one file per run: {len(args.bold)} runs, {len(files)} given")
    args.contrasts = _parse_contrasts(ap, args.contrast)
    return args


def _json_dict(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--plugin-args is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--plugin-args must be a JSON object ({...})")
    return value


def _parse_contrasts(ap, items):
    contrasts = {}
    for item in items:
        name, sep, expr = item.partition("=")
        name, expr = name.strip(), expr.strip()
        if not sep or not name or not expr:
            ap.error(f"--contrast expects NAME=EXPR; got {item!r}")
        if name in contrasts:
            ap.error(f"--contrast {name!r} given twice")
        if expr.endswith(":F"):
            contrasts[name] = {"def": expr[:-2].strip(), "stat_type": "F"}
        else:
            contrasts[name] = expr
    return contrasts


def default_prefix(bold_file):
    """``sub-X[_ses-Y][_task-Z]`` from a BIDS-like file name, or ``glm``."""
    name = Path(bold_file).name
    parts = [
        m.group(0) for key in ("sub", "ses", "task") if (m := re.search(rf"{key}-[^_.]+", name))
    ]
    return "_".join(parts) or "glm"


def build_workflow(args):
    """The first-level workflow with its inputs set."""
    from glmflow.workflows.first_level import init_first_level_wf

    wf = init_first_level_wf(
        t_r=args.t_r,
        contrasts=args.contrasts,
        noise_model=args.noise_model,
        hrf_model=args.hrf_model,
        report=not args.no_report,
    )
    inputnode = wf.get_node("inputnode")
    inputnode.inputs.bold_files = [os.path.abspath(f) for f in args.bold]
    inputnode.inputs.events_files = [os.path.abspath(f) for f in args.events]
    if args.confounds:
        inputnode.inputs.confounds_files = [os.path.abspath(f) for f in args.confounds]
    if args.mask:
        inputnode.inputs.mask_file = os.path.abspath(args.mask)
    return wf


def planned_outputs(outputs, prefix):
    """Pairs (source file, output file name) for everything the script copies."""
    from glmflow.core.io import bids_label, derivative_name

    entities = _entities(prefix)
    pairs = []
    for i, design in enumerate(_as_list(outputs["design_files"]), start=1):
        pairs.append((design, derivative_name({**entities, "run": str(i)}, "design", ".tsv")))
    pairs.append((outputs["mask_file"], derivative_name(entities, "mask", ".nii.gz")))
    if outputs.get("report_file"):
        pairs.append((outputs["report_file"], derivative_name(entities, "report", ".html")))
    names = _as_list(outputs["contrast_names"])
    stat_types = _as_list(outputs.get("stat_types") or ["t"] * len(names))
    for field, stat in STAT_OF_FIELD.items():
        for name, stat_type, src in zip(names, stat_types, _as_list(outputs[field]), strict=True):
            ents = {**entities, "contrast": bids_label(name), "stat": stat or stat_type or "t"}
            pairs.append((src, derivative_name(ents, "statmap", ".nii.gz")))
    return pairs


def _entities(prefix):
    """``sub-01_task-x`` -> ``{"sub": "01", "task": "x"}`` (order kept)."""
    out = {}
    for part in filter(None, prefix.split("_")):
        key, sep, value = part.partition("-")
        out[key if sep else "desc"] = value if sep else key
    return out


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def copy_outputs(pairs, output_dir):
    """Copy each file to ``output_dir`` atomically; return the written paths."""
    from glmflow.core.io import atomic_path

    written = []
    for src, name in pairs:
        target = Path(output_dir) / name
        with atomic_path(target) as tmp:
            shutil.copyfile(src, tmp)
        written.append(str(target))
    return written


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    from nipype import config, logging

    from glmflow.core.errors import GLMFlowError
    from glmflow.core.run_errors import WorkflowError
    from glmflow.execution import run_workflow
    from glmflow.workflows.outputs import collect_outputs

    if args.quiet:
        config.set("logging", "workflow_level", "WARNING")
        logging.update_logging(config)
    t0 = time.monotonic()
    try:
        wf = build_workflow(args)
        graph = run_workflow(
            wf,
            plugin=args.plugin,
            plugin_args=args.plugin_args,
            base_dir=os.path.abspath(args.work_dir),
        )
        outputs = collect_outputs(wf, graph)
        prefix = args.prefix or default_prefix(args.bold[0])
        written = copy_outputs(planned_outputs(outputs, prefix), args.output_dir)
    except WorkflowError as exc:
        print(f"run_first_level: error: {exc}", file=sys.stderr)
        return 1
    except GLMFlowError as exc:
        print(f"run_first_level: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    wall = time.monotonic() - t0
    print(
        f"run_first_level: {len(written)} files in {args.output_dir} ({args.plugin}, {wall:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
