"""One benchmark case, run in a fresh process by ``run_benchmarks.py``.

Every case does the same work end to end: read the runs, mask them with the given brain
mask, build the design from events and confounds, fit AR(1) (or the chosen noise model),
compute two contrasts with all five outputs (effect, variance, stat, z, p) and write them
as ``.nii.gz``. The z maps are saved as ``<out>/<contrast>_z.nii.gz`` so the runner can
compare tools.

Usage (what the runner calls)::

    python benchmarks/cases.py <tool> <data.json> <out_dir> [--runs N] [--noise-model ar1]

with ``tool`` in ``nilearn``, ``facade``, ``wf-linear``, ``wf-multiproc``. It prints one
JSON line: the time spent after the script's top-level imports (``work_s``) and their time
(``import_s``), and writes ``<out_dir>/modules.json``: every module the process had loaded
at the end, in import order.

``python benchmarks/cases.py floor <modules.json>`` imports those modules and exits: the
cost of interpreter start-up, imports and exit that a case pays before and after its work
("floor"), whichever way the tool imports (all at once like nilearn, or on first use).
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


class _OnlyThese:
    """A meta-path finder refusing every module the case did not load, so the floor loads
    the same set (e.g. not IPython, which glmflow keeps Nipype from importing)."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            raise ModuleNotFoundError(f"{name} was not loaded by the case", name=name)
        return None  # let the normal finders load it


def import_floor(modules_json):
    """Import the modules a case ended with (what a case costs besides its work)."""
    import importlib
    import warnings

    warnings.simplefilter("ignore")
    with open(modules_json) as fobj:
        names = json.load(fobj)
    sys.meta_path.insert(0, _OnlyThese(names))
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - e.g. modules only importable in a worker
            pass


def main(argv=None):
    start = time.perf_counter()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "floor":
        import_floor(argv[1])
        print(json.dumps({"import_s": time.perf_counter() - start, "work_s": 0.0}))
        return
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
    loaded = [name for name in sys.modules if name not in ("__main__", "__mp_main__")]
    with open(os.path.join(args.out, "modules.json"), "w") as fobj:
        json.dump(loaded, fobj)
    print(json.dumps({"import_s": imported - start, "work_s": done - imported}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
