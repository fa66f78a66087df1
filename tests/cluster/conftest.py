"""Fixtures for the cluster suite: live single-node SLURM and SGE, a small 3-run study.

The daemons come from ``../shared/cluster`` (``GLMFLOW_SHARED_CLUSTER``). When they do not
answer, the fixtures start them with the shared up-scripts (this needs root, as in CI).
Tests skip with the reason when that is impossible; with ``GLMFLOW_REQUIRE_CLUSTER=1``
(set by ``.ci/run``) they fail instead, so CI cannot pass without running them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import nibabel as nib
import pytest

REPO = Path(__file__).resolve().parents[2]
T_R = 2.0
CONTRASTS = ("audio=audio", "avmv=audio - visual")
#: plugin_args that keep the requests inside the test cluster's partition/queue
PLUGIN_ARGS = {
    "SLURM": {"sbatch_args": "-p debug -t 10", "max_jobs": 16},
    "SGE": {"qsub_args": "-q all.q", "max_jobs": 16},
    "SLURMGraph": {"sbatch_args": "-p debug -t 10"},
    "SGEGraph": {"qsub_args": "-q all.q"},
}


def cluster_scripts():
    env = os.environ.get("GLMFLOW_SHARED_CLUSTER")
    return Path(env) if env else REPO.parent / "shared" / "cluster"


def _unavailable(reason):
    if os.environ.get("GLMFLOW_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"{reason} (GLMFLOW_REQUIRE_CLUSTER=1)")
    pytest.skip(reason)


def _answers(cmd):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and (cmd[0] != "scontrol" or "UP" in proc.stdout)


def _load_sge_env(scripts):
    """Export what sge-env.sh exports (SGE_ROOT, SGE_CELL, ports)."""
    for env_file in (scripts / "sge-env.sh", Path("/run/sge-env.sh")):
        if env_file.is_file():
            for key, value in re.findall(r"^export (\w+)=([^$\s]+)$", env_file.read_text(), re.M):
                os.environ.setdefault(key, value)
            return
    if Path("/var/lib/gridengine").is_dir():
        os.environ.setdefault("SGE_ROOT", "/var/lib/gridengine")
        os.environ.setdefault("SGE_CELL", "default")


def ensure_up(kind):
    """Make sure ``slurm`` or ``sge`` answers, starting it with the shared script if needed."""
    from glmflow.execution import prepare_environment

    prepare_environment()  # LOGNAME, NIPYPE_NO_ET
    scripts = cluster_scripts()
    if kind == "sge":
        _load_sge_env(scripts)
    check = ["scontrol", "ping"] if kind == "slurm" else ["qstat", "-f"]
    if _answers(check):
        return
    script = scripts / f"{kind}-up.sh"
    if not script.is_file():
        _unavailable(f"{kind} is not running and {script} is absent (set GLMFLOW_SHARED_CLUSTER)")
    if os.geteuid() != 0:
        _unavailable(f"{kind} is not running, and starting it with {script} needs root")
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    if kind == "sge":
        _load_sge_env(scripts)
    if proc.returncode != 0 or not _answers(check):
        _unavailable(f"{script.name} could not start {kind}: {last}\n{proc.stderr[-800:]}")


@pytest.fixture(params=["SLURM", "SGE"])
def scheduler(request):
    """(plugin name, plugin_args) for a live scheduler."""
    ensure_up(request.param.lower())
    return request.param, dict(PLUGIN_ARGS[request.param])


@pytest.fixture(params=["SLURMGraph", "SGEGraph"])
def graph_scheduler(request):
    """(plugin name, plugin_args) for a Graph plugin on a live scheduler."""
    ensure_up(request.param[: -len("Graph")].lower())
    return request.param, dict(PLUGIN_ARGS[request.param])


def load_script():
    spec = importlib.util.spec_from_file_location(
        "run_first_level", REPO / "workflows" / "run_first_level.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def run_first_level():
    return load_script()


def write_study(folder, *, shape=(20, 20, 10), n_scans=60, n_runs=3, seed=7):
    """Three seeded simulated runs (NIfTI) with events TSVs; returns (bold, events) lists."""
    from glmflow.core.simulate import Region, block_events, simulate_run

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    regions = (
        Region("auditory", "audio", (6, 8, 4), 3.0, 3.0),
        Region("visual", "visual", (13, 12, 6), 3.0, 3.0),
    )
    bold, events = [], []
    for run in range(1, n_runs + 1):
        frame = block_events(n_scans, T_R, seed=seed + run)
        img, _ = simulate_run(
            frame,
            shape=shape,
            n_scans=n_scans,
            t_r=T_R,
            regions=regions,
            seed=seed * 100 + run,
            noise=2.0,
        )
        bold.append(str(folder / f"sub-01_task-sim_run-{run}_bold.nii.gz"))
        nib.save(img, bold[-1])
        events.append(str(folder / f"sub-01_task-sim_run-{run}_events.tsv"))
        frame.to_csv(events[-1], sep="\t", index=False)
    return bold, events


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    bold, events = write_study(tmp_path_factory.mktemp("study"))
    return {"bold": bold, "events": events}


def cli_args(study, work, out, plugin="Linear", plugin_args=None, events=None, report=True):
    args = [
        "--bold",
        *study["bold"],
        "--events",
        *(events or study["events"]),
        "--t-r",
        str(T_R),
        "--plugin",
        plugin,
        "-w",
        str(work),
        "-o",
        str(out),
        "--quiet",
    ]
    if not report:  # the fault tests skip the report job (one graph level less)
        args.append("--no-report")
    for contrast in CONTRASTS:
        args += ["--contrast", contrast]
    if plugin_args:
        import json

        args += ["--plugin-args", json.dumps(plugin_args)]
    return args


def read_outputs(folder):
    """{file name: bytes} of everything in ``folder``."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def without_report(outputs):
    return {name: data for name, data in outputs.items() if not name.endswith("_report.html")}


@pytest.fixture(scope="session")
def linear_outputs(study, run_first_level, tmp_path_factory):
    """The reference: the same study on the Linear plugin, {file name: bytes}."""
    root = tmp_path_factory.mktemp("linear")
    rc = run_first_level.main(cli_args(study, root / "work", root / "out"))
    assert rc == 0
    outputs = read_outputs(root / "out")
    assert len(outputs) == 3 + 1 + 2 * 5 + 1  # designs, mask, 5 maps per contrast, report
    return outputs


# ------------------------------------------------------------------ killing a running job
def running_jobs(plugin):
    """{job id: job name} of the running jobs."""
    if plugin == "SLURM":
        out = subprocess.run(
            ["squeue", "-h", "-t", "R", "-o", "%i %j"], capture_output=True, text=True
        ).stdout
        return dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    out = subprocess.run(["qstat", "-s", "r", "-xml"], capture_output=True, text=True).stdout
    jobs = {}
    if out.strip():
        for job in ET.fromstring(out).iter("job_list"):
            jobs[job.findtext("JB_job_number")] = job.findtext("JB_name") or ""
    return jobs


def job_script(plugin, job_id):
    """The batch script a job runs (to tell our jobs from anyone else's)."""
    if plugin == "SLURM":
        out = subprocess.run(
            ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True
        ).stdout
        match = re.search(r"Command=(\S+)", out)
    else:
        out = subprocess.run(["qstat", "-j", job_id], capture_output=True, text=True).stdout
        match = re.search(r"^script_file:\s+(\S+)", out, re.M)
    return match.group(1) if match else ""


class JobKiller(threading.Thread):
    """Cancel (scancel/qdel) the first running job of ours whose name matches ``pattern``.

    Only jobs whose batch script lies under ``work`` are candidates: the schedulers may be
    shared with other test runs.
    """

    def __init__(self, plugin, pattern, work, timeout=240):
        super().__init__(daemon=True)
        self.plugin, self.pattern, self.timeout = plugin, re.compile(pattern), timeout
        self.work = str(work)
        self.killed = None

    def run(self):
        cancel = "scancel" if self.plugin == "SLURM" else "qdel"
        deadline = time.monotonic() + self.timeout
        while self.killed is None and time.monotonic() < deadline:
            for job_id, name in running_jobs(self.plugin).items():
                if self.pattern.match(name.strip()) and job_script(self.plugin, job_id).startswith(
                    self.work
                ):
                    subprocess.run([cancel, job_id], capture_output=True)
                    self.killed = job_id
                    return
            time.sleep(0.2)


def hold_template(plugin, job_prefix, seconds=60):
    """A job template that makes the job named ``job_prefix.*`` wait, so it is still
    running when the test kills it. Everything else is nipype's default template."""
    if plugin == "SLURM":
        return f'#!/bin/bash\ncase "$SLURM_JOB_NAME" in {job_prefix}.*) sleep {seconds};; esac\n'
    return (
        f'#$ -V\n#$ -S /bin/sh\ncase "$JOB_NAME" in J{job_prefix}.*|{job_prefix}.*) '
        f"sleep {seconds};; esac\n"
    )
