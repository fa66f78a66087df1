"""The first-level workflow on live SLURM and SGE: same bytes as Linear, clear faults, resume.

Each test runs ``workflows/run_first_level.py`` (in this process) on a simulated three-run
study with two contrasts. See ``conftest.py`` for how the schedulers are found or started.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import JobKiller, cli_args, hold_template, read_outputs, without_report

pytestmark = pytest.mark.cluster


def _result_mtimes(work, pattern):
    """{result file: mtime} under ``work`` for the node folders matching ``pattern``."""
    return {
        str(p): p.stat().st_mtime_ns
        for p in Path(work).glob(f"first_level_wf/{pattern}/result_*.pklz")
    }


def test_same_bytes_as_linear(scheduler, study, linear_outputs, run_first_level, tmp_path):
    plugin, plugin_args = scheduler
    rc = run_first_level.main(
        cli_args(study, tmp_path / "work", tmp_path / "out", plugin, plugin_args)
    )
    assert rc == 0
    outputs = read_outputs(tmp_path / "out")
    assert sorted(outputs) == sorted(linear_outputs)
    different = [name for name in outputs if outputs[name] != linear_outputs[name]]
    assert different == []

    # Every node ran as a batch job with this interpreter and one BLAS thread per cpu granted.
    scripts = list((tmp_path / "work" / "first_level_wf" / "batch").glob("batchscript_*.sh"))
    assert scripts, "no batch job scripts were written"
    text = scripts[0].read_text()
    assert sys.executable in text
    cpu_var = "SLURM_CPUS_PER_TASK" if plugin == "SLURM" else "NSLOTS"
    assert f"export OMP_NUM_THREADS=${{{cpu_var}:-1}}" in text
    if plugin == "SLURM":
        _check_slurm_requests(tmp_path / "work", study["bold"])


def test_graph_plugins_wait_and_give_the_same_bytes(
    graph_scheduler, study, linear_outputs, run_first_level, tmp_path
):
    """The Graph plugins return before their jobs ran; run_workflow waits for them."""
    plugin, plugin_args = graph_scheduler
    rc = run_first_level.main(
        cli_args(study, tmp_path / "work", tmp_path / "out", plugin, plugin_args)
    )
    assert rc == 0
    assert read_outputs(tmp_path / "out") == linear_outputs


#: job name (nipype: node, hierarchy, user; reversed) -> interface whose estimate it asks for
JOB_KINDS = {
    r"mask\.first_level_wf\.": "ComputeMask",
    r"report\.first_level_wf\.": "GLMReport",
    r"_design\d\.": "MakeDesignMatrix",
    r"_fit\d\.": "FitGLM",
    r"_contrast\d\.": "EstimateContrast",
}


def _check_slurm_requests(work, bold_files):
    """Each job asked SLURM for its node's estimated memory and one cpu."""
    from glmflow.execution import estimate_node_resources

    estimates = estimate_node_resources(bold_files)
    jobs = subprocess.run(
        ["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    seen = {}
    for job in (j for j in jobs if str(work) in j):
        name = re.search(r"JobName=(\S+)", job).group(1)
        kind = next(k for pattern, k in JOB_KINDS.items() if re.match(pattern, name))
        mem_gb = estimates[kind].mem_gb  # glue nodes run in-process: no job of their own
        assert re.search(r"MinMemoryNode=(\d+)M", job).group(1) == str(math.ceil(mem_gb * 1024)), (
            name
        )
        assert "NumCPUs=1 " in job, name
        seen[kind] = seen.get(kind, 0) + 1
    # MapNode items are separate jobs; the MapNodes' collation runs in this process
    assert seen.get("MakeDesignMatrix") == 3 and seen.get("FitGLM") == 3
    assert seen.get("ComputeMask") == 1 and seen.get("EstimateContrast") == 2
    assert seen.get("GLMReport") == 1


def test_killed_job_reports_and_resumes(
    scheduler, study, linear_outputs, run_first_level, tmp_path, capsys
):
    plugin, plugin_args = scheduler
    work, out = tmp_path / "work", tmp_path / "out"
    prefix = "_fit1"
    killer = JobKiller(plugin, rf"^J?{prefix}\.", work)
    killer.start()
    held = dict(plugin_args, template=hold_template(plugin, prefix))
    rc = run_first_level.main(cli_args(study, work, out, plugin, held, report=False))
    killer.join(timeout=5)
    err = capsys.readouterr().err
    assert killer.killed is not None, "the fit job was never seen running"
    assert rc == 1
    # one error, naming the node, the job and its log
    assert err.count("run_first_level: error:") == 1
    assert "Traceback" not in err and "TypeError" not in err
    assert "Node 'first_level_wf.fit[1]' failed" in err
    assert f"{plugin} job {killer.killed}:" in err
    assert "without writing a result" in err
    log = re.search(r"job log: (\S+)", err).group(1)
    assert Path(log).is_file() and killer.killed in Path(log).name
    # nothing half-written: the output folder was never filled
    assert not out.exists() or not any(out.iterdir())

    # the other runs finished and are reused; the rerun gives Linear's bytes
    before = _result_mtimes(work, "fit/mapflow/_fit[02]") | _result_mtimes(work, "design")
    assert len(before) == 3  # _fit0, _fit2 and the design MapNode
    rc = run_first_level.main(cli_args(study, work, out, plugin, plugin_args, report=False))
    assert rc == 0
    assert _result_mtimes(work, "fit/mapflow/_fit[02]") | _result_mtimes(work, "design") == before
    assert read_outputs(out) == without_report(linear_outputs)


def test_failing_node_reports_and_resumes(
    scheduler, study, linear_outputs, run_first_level, tmp_path, capsys
):
    plugin, plugin_args = scheduler
    work, out = tmp_path / "work", tmp_path / "out"
    broken = tmp_path / "run-2_events.tsv"
    broken.write_text(Path(study["events"][1]).read_text().replace("onset", "start"))
    events = [study["events"][0], str(broken), study["events"][2]]
    rc = run_first_level.main(
        cli_args(study, work, out, plugin, plugin_args, events=events, report=False)
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("run_first_level: error:") == 1
    match = re.search(
        rf"Node 'first_level_wf.design\[1\]' failed in {plugin} job (\d+): (.*)", err
    )
    assert match, err
    assert "EventsError" in match.group(2) and "onset" in match.group(2)
    log = re.search(r"job log: (\S+)", err).group(1)
    assert Path(log).is_file() and match.group(1) in Path(log).name
    crash = re.search(r"crash file: (\S+)", err).group(1)
    assert "EventsError" in Path(crash).read_text()
    assert not out.exists() or not any(out.iterdir())

    # fix the file (same name): only the broken run's design and fit run again
    before = _result_mtimes(work, "design/mapflow/_design[02]") | _result_mtimes(work, "mask")
    assert len(before) == 3
    broken.write_text(Path(study["events"][1]).read_text())
    rc = run_first_level.main(
        cli_args(study, work, out, plugin, plugin_args, events=events, report=False)
    )
    assert rc == 0
    after = _result_mtimes(work, "design/mapflow/_design[02]") | _result_mtimes(work, "mask")
    assert after == before
    assert read_outputs(out) == without_report(linear_outputs)
