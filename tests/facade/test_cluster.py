"""The facade on live SLURM and SGE schedulers (marker ``cluster``)."""

from __future__ import annotations

import os
import subprocess

import pytest

from glmflow import FirstLevelModel

from . import simulate as sim
from .conftest import assert_same_maps, quiet

pytestmark = pytest.mark.cluster

PLUGIN_ARGS = {
    "SLURM": {"sbatch_args": "-p debug -t 10", "max_jobs": 16},
    "SGE": {"qsub_args": "-q all.q", "max_jobs": 16},
}


def _scheduler_answers(plugin):
    command = ["scontrol", "ping"] if plugin == "SLURM" else ["qstat", "-f"]
    if plugin == "SGE":
        os.environ.setdefault("SGE_ROOT", "/var/lib/gridengine")
        os.environ.setdefault("SGE_CELL", "default")
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and (plugin == "SGE" or "UP" in proc.stdout)


@pytest.mark.parametrize("plugin", ["SLURM", "SGE"])
def test_fit_on_scheduler_equals_linear(plugin, tmp_path):
    if not _scheduler_answers(plugin):
        message = f"{plugin} does not answer (start it with ../shared/cluster/*-up.sh)"
        if os.environ.get("GLMFLOW_REQUIRE_CLUSTER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    events = [sim.events(70 + r, 60) for r in range(2)]
    imgs = [sim.bold(70 + r, 60, events_df=events[r]) for r in range(2)]
    linear = quiet(FirstLevelModel(t_r=2.0).fit, imgs, events)
    batch = quiet(FirstLevelModel(t_r=2.0, plugin=plugin, plugin_args=PLUGIN_ARGS[plugin],
                                  base_dir=tmp_path).fit, imgs, events)
    assert all(str(tmp_path) in path for path in batch.model_files_)
    assert_same_maps(quiet(batch.compute_contrast, "audio - video", output_type="all"),
                     quiet(linear.compute_contrast, "audio - video", output_type="all"),
                     z_tol=1e-15, rtol=0)
