"""``glmflow demo`` end to end, as a user runs it."""

import subprocess
import sys

import nibabel as nib
import numpy as np

from glmflow.core.simulate import DEMO_REGIONS


def test_demo_recovers_the_simulated_regions(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "glmflow.cli", "demo", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for region in DEMO_REGIONS:
        assert f"{region.name}" in result.stdout
    assert result.stdout.count("-> recovered") == len(DEMO_REGIONS)
    assert "NOT recovered" not in result.stdout
    func = out / "derivatives" / "glmflow" / "sub-01" / "func"
    z_file = func / "sub-01_task-demo_contrast-audioMinusVisual_stat-z_statmap.nii.gz"
    z = nib.load(z_file).get_fdata()
    shape = z.shape
    audio = DEMO_REGIONS[0].mask(shape) | DEMO_REGIONS[1].mask(shape)
    visual = DEMO_REGIONS[2].mask(shape)
    assert z[audio].max() > 5 and z[visual].min() < -5  # audio - visual: signs as simulated
    f_file = func / "sub-01_task-demo_contrast-effectsOfInterest_stat-F_statmap.nii.gz"
    assert np.nanmax(nib.load(f_file).get_fdata()) > 20
    for name in ("sub-01_task-demo_mask.nii.gz", "sub-01_task-demo_run-01_design.tsv",
                 "sub-01_task-demo_report.html"):
        assert (func / name).is_file(), name
    assert (out / "derivatives" / "glmflow" / "dataset_description.json").is_file()
    assert str(func.parent.parent) in result.stdout
