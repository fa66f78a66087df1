"""The usual workflow path (given mask, events, confounds, Linear) imports no nilearn.

Importing ``nilearn.glm`` costs a process 1.3 s (scikit-learn, ``scipy.stats``); the
workflow's steps get by without it, and this keeps it so. Building a workflow does not
even import pandas or scipy's linear algebra and special functions (0.25 s): the steps
import them when they run, while the first run is being read ahead.
"""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
from conftest import simulate_study

CHILD = """
import json, sys
from glmflow.execution import run_workflow
from glmflow.workflows import init_first_level_wf
from glmflow.workflows.outputs import collect_outputs

files = json.loads(sys.argv[1])
wf = init_first_level_wf(t_r=2.0, contrasts={"a_minus_b": "a - b", "both": "a + b"},
                         report=False)
wf.inputs.inputnode.bold_files = files["bold"]
wf.inputs.inputnode.events_files = files["events"]
wf.inputs.inputnode.confounds_files = files["confounds"]
wf.inputs.inputnode.mask_file = files["mask"]
graph = run_workflow(wf, plugin="Linear", base_dir=files["work"])
assert len(collect_outputs(wf, graph)["z_files"]) == 2
heavy = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("nilearn", "sklearn")}
               | {m for m in sys.modules if m.startswith(("scipy.stats", "scipy.signal"))})
print(json.dumps(heavy))
"""


def test_workflow_runs_without_importing_nilearn(tmp_path):
    bold, events = simulate_study(tmp_path / "data", n_runs=2)
    img = nib.load(bold[0])
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image((np.asanyarray(img.dataobj)[..., 0] > 100).astype(np.uint8),
                             img.affine), mask)
    confounds = []
    for index, _ in enumerate(bold):
        path = tmp_path / f"confounds-{index}.tsv"
        rng = np.random.default_rng(index)
        pd.DataFrame(rng.standard_normal((img.shape[3], 2)), columns=["x", "y"]).to_csv(
            path, sep="\t", index=False)
        confounds.append(str(path))
    files = {"bold": bold, "events": events, "confounds": confounds, "mask": str(mask),
             "work": str(tmp_path / "work")}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(files)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


BUILD = """
import json, sys
from glmflow.execution import run_workflow  # noqa: F401
from glmflow.workflows import init_first_level_wf
from glmflow.workflows.outputs import collect_outputs  # noqa: F401

init_first_level_wf(t_r=2.0, contrasts={"a_minus_b": "a - b"}, report=False)
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in ("pandas", "nilearn", "sklearn")
                        or m.startswith(("scipy.linalg", "scipy.special")))))
"""


def test_building_a_workflow_imports_no_pandas_or_scipy_linalg():
    out = subprocess.run([sys.executable, "-c", BUILD], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
