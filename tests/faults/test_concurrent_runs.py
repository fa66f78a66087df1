"""Two runs on one work directory, and a killed run resumed."""

import filecmp
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import simulate_study

from glmflow.core.lock import LOCK_NAME, WorkdirLockedError

RUN = """
import json, sys, time
from nipype.interfaces.utility import Function
from nipype.pipeline import engine as pe
from glmflow.execution import run_workflow
from glmflow.workflows import init_first_level_wf

bold, events, base, pause = json.loads(sys.argv[1])

def wait(seconds):
    import time
    time.sleep(seconds)
    return None  # feeds mask_file: no mask given, the mask is computed

glm = init_first_level_wf(t_r=2.0, contrasts={"a - b": "a - b"}, report=False)
glm.inputs.inputnode.bold_files = bold
glm.inputs.inputnode.events_files = events
# A slow node ahead of the fits keeps the run busy long enough to be disturbed.
slow = pe.Node(Function(input_names=["seconds"], output_names=["out"], function=wait),
               name="slow")
slow.inputs.seconds = pause
parent = pe.Workflow(name="study")
parent.connect(slow, "out", glm, "inputnode.mask_file")  # out is None: no mask given
run_workflow(parent, base_dir=base)
from pathlib import Path
print(json.dumps(sorted(str(p) for p in Path(base).glob("study/first_level_wf/*/mapflow/*/*.nii.gz"))
                 + sorted(str(p) for p in Path(base).glob("study/first_level_wf/*/mapflow/*/*.npz"))))
"""


def _start(study, base, pause):
    script = base.parent / "run_study.py"  # nipype's Function needs the source in a file
    script.write_text(RUN)
    args = json.dumps([study[0], study[1], str(base), pause])
    return subprocess.Popen([sys.executable, str(script), args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_lock(base, pid, timeout=60):
    lock = base / LOCK_NAME
    deadline = time.time() + timeout
    while time.time() < deadline:
        if lock.exists() and f'"pid": {pid}' in lock.read_text():
            return
        time.sleep(0.1)
    raise AssertionError("the first run never took the lock")


@pytest.fixture
def files(tmp_path):
    return simulate_study(tmp_path / "data")


def _reference(files, tmp_path):
    ref = _start(files, tmp_path / "reference", 0)
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_second_run_on_same_workdir_fails_clearly(files, tmp_path):
    base = tmp_path / "work"
    first = _start(files, base, 15)  # busy long enough for the second to start up
    _wait_for_lock(base, first.pid)
    second = _start(files, base, 0)
    _, err = second.communicate(timeout=120)
    assert second.returncode != 0
    assert WorkdirLockedError.__name__ in err and str(base) in err
    assert f"pid {first.pid}" in err
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    ours = json.loads(out.strip().splitlines()[-1])
    assert len(ours) == 7  # 5 contrast maps + 2 run models
    for a, b in zip(ours, _reference(files, tmp_path), strict=True):
        assert filecmp.cmp(a, b, shallow=False)


def test_killed_run_resumes_with_identical_outputs(files, tmp_path):
    base = tmp_path / "work"
    victim = _start(files, base, 30)
    _wait_for_lock(base, victim.pid)
    time.sleep(1.0)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    resumed = _start(files, base, 0)  # new pause value: only the slow node reruns
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    ours = json.loads(out.strip().splitlines()[-1])
    assert len(ours) == 7  # 5 contrast maps + 2 run models
    for a, b in zip(ours, _reference(files, tmp_path), strict=True):
        assert filecmp.cmp(a, b, shallow=False)
