"""One benchmark case, run in a fresh process by ``run_benchmarks.py``.

Every case does the same work end to end: read the runs, mask them with the given brain
mask, build the design from events and confounds, fit AR(1) (or the chosen noise model),
compute two contrasts with all five outputs (effect, variance, stat, z, p) and write them
as ``.nii.gz``. The z maps are saved as ``<out>/<contrast>_z.nii.gz`` so the runner can
compare tools.

Usage (what the runner calls)::

    python benchmarks/cases.py <tool> <data.json> <out_dir> [--runs N] [--noise-model ar1]

with ``tool`` in ``nilearn``, ``facade``, ``wf-linear``, ``wf-multiproc``. It prints one
JSON line: the time spent after imports (``work_s``) and the import time (``import_s``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("NIPYPE_NO_ET", "1")

TOOLS = ("nilearn", "facade", "wf-linear", "wf-multiproc")


def _inputs(files, n_runs):
    import pandas as pd

    return (
        files["bold"][:n_runs],
        [pd.read_csv(f, sep="\t") for f in files["events"][:n_runs]],
        [pd.read_csv(f, sep="\t") for f in files["confounds"][:n_runs]],
    )


def _save_all(maps, out_dir, name):
    """Write a contrast's output dict (nilearn's output_type='all' keys)."""
    for key, img in maps.items():
        suffix = "z" if key == "z_score" else key
        img.to_filename(os.path.join(out_dir, f"{name}_{suffix}.nii.gz"))


def run_nilearn(files, out_dir, n_runs, noise_model):
    from nilearn.glm.first_level import FirstLevelModel

    bold, events, confounds = _inputs(files, n_runs)
    model = FirstLevelModel(t_r=files["t_r"], noise_model=noise_model, mask_img=files["mask"])
    model.fit(bold, events=events, confounds=confounds)
    for name, definition in files["contrasts"].items():
        _save_all(model.compute_contrast(definition, output_type="all"), out_dir, name)


def run_facade(files, out_dir, n_runs, noise_model):
    import glmflow

    bold, events, confounds = _inputs(files, n_runs)
    model = glmflow.FirstLevelModel(
        t_r=files["t_r"], noise_model=noise_model, mask_img=files["mask"]
    )
    model.fit(bold, events=events, confounds=confounds)
    for name, definition in files["contrasts"].items():
        _save_all(model.compute_contrast(definition, output_type="all"), out_dir, name)


def run_workflow_case(files, out_dir, n_runs, noise_model, plugin):
    import inspect

    from glmflow.execution import run_workflow
    from glmflow.workflows.first_level import init_first_level_wf
    from glmflow.workflows.outputs import collect_outputs

    # No HTML report: the comparison is the statistics nilearn computes.
    extra = {"report": False} if "report" in inspect.signature(init_first_level_wf).parameters else {}
    workflow = init_first_level_wf(
        t_r=files["t_r"], contrasts=files["contrasts"], noise_model=noise_model, **extra
    )
    workflow.inputs.inputnode.bold_files = files["bold"][:n_runs]
    workflow.inputs.inputnode.events_files = files["events"][:n_runs]
    workflow.inputs.inputnode.confounds_files = files["confounds"][:n_runs]
    workflow.inputs.inputnode.mask_file = files["mask"]
    plugin_args = {"n_procs": 2} if plugin == "MultiProc" else {}
    graph = run_workflow(
        workflow, plugin=plugin, plugin_args=plugin_args, base_dir=os.path.join(out_dir, "work")
    )
    outputs = collect_outputs(workflow, graph)
    for name, z_file in zip(outputs["contrast_names"], outputs["z_files"], strict=True):
        shutil.copyfile(z_file, os.path.join(out_dir, f"{name}_z.nii.gz"))


def main(argv=None):
    start = time.perf_counter()
    parser = argparse.ArgumentParser()
    parser.add_argument("tool", choices=TOOLS)
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--noise-model", default="ar1")
    args = parser.parse_args(argv)
    with open(args.data) as fobj:
        files = json.load(fobj)
    os.makedirs(args.out, exist_ok=True)
    # Import what the tool needs before timing the work (reported separately).
    if args.tool == "nilearn":
        import nilearn.glm.first_level  # noqa: F401
    elif args.tool == "facade":
        import glmflow.model  # noqa: F401
    else:
        import glmflow.execution  # noqa: F401
        import glmflow.workflows.first_level  # noqa: F401
    imported = time.perf_counter()
    if args.tool == "nilearn":
        run_nilearn(files, args.out, args.runs, args.noise_model)
    elif args.tool == "facade":
        run_facade(files, args.out, args.runs, args.noise_model)
    else:
        plugin = "Linear" if args.tool == "wf-linear" else "MultiProc"
        run_workflow_case(files, args.out, args.runs, args.noise_model, plugin)
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - start, "work_s": done - imported}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
