"""``glmflow demo OUTPUT_DIR``: simulate a two-run study, fit it, and say what was found."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from glmflow import __version__
from glmflow.core.io import atomic_path, bids_label, derivative_name, save_img, save_json, save_tsv
from glmflow.core.simulate import DEMO_REGIONS, block_events, simulate_run

T_R = 2.0
N_SCANS = 120
CONTRASTS = {
    "audio": "audio",
    "visual": "visual",
    "audio - visual": "audio - visual",
    "effects of interest": {"def": [[1, 0], [0, 1]], "stat_type": "F"},
}
#: A region counts as recovered when its peak z passes this (p < 0.001 one-sided).
Z_THRESHOLD = 3.09


def write_inputs(folder, n_runs=2):
    """Write the simulated runs, events and brain mask as a small BIDS-like tree."""
    func = Path(folder) / "sub-01" / "func"
    func.mkdir(parents=True, exist_ok=True)
    bold_files, events_files = [], []
    brain = None
    for run in range(1, n_runs + 1):
        events = block_events(N_SCANS, T_R, seed=run)
        img, brain = simulate_run(events, n_scans=N_SCANS, t_r=T_R, seed=100 + run)
        stem = f"sub-01_task-demo_run-{run:02d}"
        bold_files.append(save_img(img, func / f"{stem}_bold.nii.gz"))
        events_files.append(save_tsv(events, func / f"{stem}_events.tsv"))
    mask = nib.Nifti1Image(brain.astype(np.uint8), img.affine)
    mask_file = save_img(mask, func / "sub-01_task-demo_desc-brain_mask.nii.gz")
    return bold_files, events_files, mask_file


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="glmflow demo",
        description="Simulate a two-run block-design study with known activated regions, fit "
        "the first-level GLM workflow on MultiProc, write BIDS-derivatives outputs and report "
        "whether the regions were recovered.",
    )
    parser.add_argument("output_dir", type=Path, help="where to write inputs and results")
    parser.add_argument("--plugin", default="MultiProc", help="Nipype plugin (default MultiProc)")
    parser.add_argument("--n-procs", type=int, default=2, help="MultiProc processes (default 2)")
    args = parser.parse_args(argv)

    from nipype import config, logging

    from glmflow.execution import run_workflow

    config.set("logging", "workflow_level", "WARNING")
    logging.update_logging(config)
    from glmflow.workflows import init_first_level_wf
    from glmflow.workflows.outputs import collect_outputs

    started = time.time()
    out = args.output_dir.resolve()
    inputs = out / "inputs"
    bold_files, events_files, mask_file = write_inputs(inputs)
    workflow = init_first_level_wf(t_r=T_R, contrasts=CONTRASTS, noise_model="ar1")
    workflow.inputs.inputnode.bold_files = bold_files
    workflow.inputs.inputnode.events_files = events_files
    workflow.inputs.inputnode.mask_file = mask_file
    plugin_args = {"n_procs": args.n_procs} if args.plugin == "MultiProc" else {}
    graph = run_workflow(workflow, plugin=args.plugin, plugin_args=plugin_args,
                         base_dir=out / "work")
    results = collect_outputs(workflow, graph)
    written = write_derivatives(out / "derivatives" / "glmflow", results, bold_files)
    ok = summarize(results)
    print(f"\nOutputs ({len(written)} files) in {out / 'derivatives' / 'glmflow'}")
    print(f"Finished in {time.time() - started:.1f} s.")
    return 0 if ok else 1


def write_derivatives(folder, results, bold_files):
    """Copy the workflow's outputs under BIDS-derivatives names."""
    folder = Path(folder)
    func = folder / "sub-01" / "func"
    written = []
    base = {"sub": "01", "task": "demo"}
    for run, design in enumerate(results["design_files"], start=1):
        name = derivative_name({**base, "run": f"{run:02d}"}, "design", ".tsv")
        written.append(_copy(design, func / name))
    written.append(_copy(results["mask_file"], func / derivative_name(base, "mask", ".nii.gz")))
    if results.get("report_file"):
        written.append(_copy(results["report_file"],
                             func / derivative_name(base, "report", ".html")))
    fields = {"effect_files": "effect", "variance_files": "variance", "stat_files": None,
              "z_files": "z", "p_files": "p"}
    for index, name in enumerate(results["contrast_names"]):
        for field, stat in fields.items():
            stat = stat or results["stat_types"][index]
            entities = {**base, "contrast": bids_label(name), "stat": stat}
            target = func / derivative_name(entities, "statmap", ".nii.gz")
            written.append(_copy(results[field][index], target))
    save_json(
        {
            "Name": "glmflow demo",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "glmflow", "Version": __version__}],
        },
        folder / "dataset_description.json",
    )
    return written


def _copy(source, target):
    # Atomic, and a different existing result is never replaced silently.
    with atomic_path(target, overwrite=False) as tmp:
        shutil.copyfile(source, tmp)
    return target


def summarize(results):
    """Print peak z per contrast and whether each simulated region was recovered."""
    names = results["contrast_names"]
    z_maps = {name: nib.load(path).get_fdata() for name, path in
              zip(names, results["z_files"], strict=True)}
    print("Contrast peaks:")
    for name, z in z_maps.items():
        peak = np.unravel_index(np.argmax(z), z.shape)
        print(f"  {name:22s} max z = {z.max():6.2f} at voxel {tuple(int(i) for i in peak)}")
    print("Simulated regions:")
    all_found = True
    shape = next(iter(z_maps.values())).shape
    for region in DEMO_REGIONS:
        z = z_maps[region.condition][region.mask(shape)]
        found = z.max() > Z_THRESHOLD
        all_found &= bool(found)
        print(f"  {region.name:16s} ({region.condition}): peak z = {z.max():6.2f} -> "
              f"{'recovered' if found else 'NOT recovered'}")
    outside = np.ones(shape, bool)
    for region in DEMO_REGIONS:
        outside &= ~region.mask(shape)
    false_pos = int((z_maps["audio"][outside] > 5).sum() + (z_maps["visual"][outside] > 5).sum())
    print(f"  voxels with z > 5 outside every region: {false_pos}")
    return all_found and false_pos == 0


if __name__ == "__main__":
    sys.exit(main())
