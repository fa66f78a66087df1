"""glmflow.execution without a cluster: errors, threads, polling, resource requests."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
from nipype.interfaces.utility import Function
from nipype.pipeline import engine as pe

from glmflow.core.run_errors import WorkflowError
from glmflow.execution import (
    THREAD_VARIABLES,
    _has_option,
    check_scheduler,
    configure,
    estimate_node_resources,
    run_workflow,
)


def _fail_on(x, bad):
    if x == bad:
        raise ValueError(f"boom {x}")
    return x * 2


def _blas_threads(x):
    import os

    from threadpoolctl import threadpool_info

    counts = sorted({pool["num_threads"] for pool in threadpool_info()})
    return counts, os.environ.get("OMP_NUM_THREADS")


def _map_wf(function, items, name="wf", **inputs):
    wf = pe.Workflow(name=name)
    node = pe.MapNode(
        Function(input_names=["x", *inputs], output_names=["out"], function=function),
        iterfield=["x"],
        name="work",
    )
    node.inputs.x = list(items)
    for key, value in inputs.items():
        setattr(node.inputs, key, value)
    wf.add_nodes([node])
    return wf


def test_linear_failure_is_one_workflow_error(tmp_path):
    wf = pe.Workflow(name="wf")
    node = pe.Node(
        Function(input_names=["x", "bad"], output_names=["out"], function=_fail_on), name="boom"
    )
    node.inputs.x, node.inputs.bad = 42, 42
    wf.add_nodes([node])
    with pytest.raises(WorkflowError) as info:
        run_workflow(wf, plugin="Linear", base_dir=tmp_path)
    err = info.value
    assert isinstance(err, RuntimeError)  # what nipype raises, so old handlers still work
    assert err.node == "wf.boom" and err.job_id is None
    assert err.failures[0].reason.startswith("ValueError: boom 42")
    crash = err.failures[0].crash_file
    assert crash.startswith(str(tmp_path / "wf" / "crash")) and os.path.isfile(crash)
    assert "Node 'wf.boom' failed: ValueError: boom 42" in str(err)


def test_multiproc_names_the_failed_map_item(tmp_path):
    wf = _map_wf(_fail_on, [1, 2, 3], bad=2)
    with pytest.raises(WorkflowError) as info:
        run_workflow(wf, plugin="MultiProc", plugin_args={"n_procs": 2}, base_dir=tmp_path)
    (failure,) = info.value.failures
    assert failure.node == "wf.work[1]"
    assert failure.reason.startswith("ValueError: boom 2")
    # the other items finished and stay cached for a rerun
    assert (tmp_path / "wf/work/mapflow/_work0/result__work0.pklz").is_file()
    assert (tmp_path / "wf/work/mapflow/_work2/result__work2.pklz").is_file()


def test_multiproc_workers_use_one_blas_thread(tmp_path):
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    wf = _map_wf(_blas_threads, [0, 1])
    graph = run_workflow(wf, plugin="MultiProc", plugin_args={"n_procs": 2}, base_dir=tmp_path)
    (node,) = [n for n in graph.nodes() if n.name == "work"]
    for counts, omp in node.result.outputs.out:
        assert counts == [1]
        assert omp == "1"
    # the caller's environment is restored
    assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == before


def test_configure_polls_fast_unless_chosen(tmp_path):
    wf = configure(pe.Workflow(name="a"), plugin="MultiProc", base_dir=tmp_path)
    assert float(wf.config["execution"]["poll_sleep_duration"]) == 0.05
    assert wf.config["execution"]["crashdump_dir"] == str(tmp_path / "a" / "crash")
    chosen = pe.Workflow(name="b")
    chosen.config["execution"]["poll_sleep_duration"] = 1.5
    assert configure(chosen, plugin="SLURM").config["execution"]["poll_sleep_duration"] == 1.5


def test_unknown_plugin_is_a_parameter_error():
    with pytest.raises(ValueError, match="plugin must be one of"):
        run_workflow(pe.Workflow(name="x"), plugin="Condor")


def test_missing_scheduler_tools_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WorkflowError, match="needs the sbatch command"):
        check_scheduler("SLURM")
    with pytest.raises(WorkflowError, match="needs the qsub command"):
        check_scheduler("SGE")


@pytest.mark.parametrize(
    ("args", "short", "long", "expected"),
    [
        ("-p debug --export=ALL", "-e", "--error", False),  # nipype's substring test says yes
        ("-p debug -e /x/err", "-e", "--error", True),
        ("--output=/x/%j.out", "-o", "--output", True),
        ("-o/x/out", "-o", "--output", True),
        ("--mem-per-cpu=2G", None, "--mem", False),
        ("--mem=2G -c 2", "-c", "--cpus-per-task", True),
    ],
)
def test_option_detection(args, short, long, expected):
    assert _has_option(args, short, long) is expected


class _FakeNode:
    mem_gb = 1.5
    n_procs = 2


def _batch_plugin(plugin, plugin_args):
    from glmflow.execution import _make_batch_plugin

    return _make_batch_plugin(plugin, plugin_args)


def test_slurm_job_requests(tmp_path):
    plugin = _batch_plugin("SLURM", {"sbatch_args": "-p debug"})
    extra = plugin._extra_args(_FakeNode(), "-p debug", str(tmp_path))
    assert extra.split() == [
        "--mem=1536M",
        "--cpus-per-task=2",
        "-o",
        str(tmp_path / "slurm-%j.out"),
    ]
    # the user's own memory/cpu/log options win
    assert plugin._extra_args(_FakeNode(), "--mem=4G -c 1 -o /x/%j", str(tmp_path)) == ""
    assert "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}" in plugin._template
    # glmflow's own keys are not passed to nipype
    off = _batch_plugin("SLURM", {"request_resources": False})
    assert "request_resources" not in off.plugin_args
    assert off._extra_args(_FakeNode(), "", str(tmp_path)).startswith("-o ")


def test_sge_job_requests(tmp_path):
    plugin = _batch_plugin("SGE", {"qsub_args": "-q all.q"})
    extra = plugin._extra_args(_FakeNode(), "-q all.q", str(tmp_path))
    assert extra.split() == [
        "-l",
        "mem_free=1536M",
        "-pe",
        "smp",
        "2",
        "-o",
        str(tmp_path),
        "-j",
        "y",
    ]
    vmem = _batch_plugin("SGE", {"sge_memory_resource": "h_vmem"})
    assert "-l h_vmem=1536M" in vmem._extra_args(_FakeNode(), "", str(tmp_path))
    assert "export OMP_NUM_THREADS=${NSLOTS:-1}" in plugin._template
    assert plugin._template.lstrip().startswith("#$ -V")


def _write_run(path, shape, n_scans, seed=0):
    rng = np.random.default_rng(seed)
    data = 100 + rng.standard_normal((*shape, n_scans)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def test_resource_estimates_scale_with_the_data(tmp_path):
    small, large = tmp_path / "small.nii", tmp_path / "large.nii"
    _write_run(small, (10, 10, 10), 20)
    _write_run(large, (20, 20, 20), 40)  # 16x the voxels x volumes
    s, big = estimate_node_resources([small]), estimate_node_resources([large, small])
    run_gib = 20 * 20 * 20 * 40 * 8 / 1024**3
    assert big["ComputeMask"].mem_gb == pytest.approx(
        math.ceil((0.3 + 1.2 * run_gib) * 10 - 1e-9) / 10
    )
    assert big["FitGLM"].mem_gb >= s["FitGLM"].mem_gb >= 0.35
    assert all(r.n_procs == 1 for r in big.values())


_PEAK_CHILD = textwrap.dedent(
    """
    import json, os, sys
    os.environ["NIPYPE_NO_ET"] = "1"
    from glmflow.interfaces import ComputeMask, FitGLM, MakeDesignMatrix
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024**2
    kind, folder = sys.argv[1], sys.argv[2]
    os.chdir(folder)
    bold = os.path.join(folder, "bold.nii.gz")
    if kind == "ComputeMask":
        ComputeMask(bold_files=[bold]).run()
    elif kind == "MakeDesignMatrix":
        MakeDesignMatrix(bold_file=bold, events_file="events.tsv", t_r=2.0).run()
    else:
        FitGLM(bold_file=bold, design_file=sys.argv[3], mask_file=sys.argv[4], t_r=2.0,
               minimize_memory=kind != "FitGLMKeep").run()
    print(json.dumps(hwm()))
    """
)


@pytest.mark.slow
def test_resource_estimates_cover_the_measured_peak(tmp_path):
    """Each estimate is at least the node's real peak memory, and not wildly more."""
    from glmflow.core.simulate import Region, block_events, simulate_run

    events = block_events(150, 2.0)
    img, _ = simulate_run(
        events,
        shape=(64, 64, 32),
        n_scans=150,
        t_r=2.0,
        regions=(Region("a", "audio", (20, 20, 10), 3.0, 3.0),),
    )
    nib.save(img, tmp_path / "bold.nii.gz")
    events.to_csv(tmp_path / "events.tsv", sep="\t", index=False)
    estimates = estimate_node_resources([tmp_path / "bold.nii.gz"])

    def peak(kind, *extra):
        out = subprocess.run(
            [sys.executable, "-c", _PEAK_CHILD, kind, str(tmp_path), *extra],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    measured = {"ComputeMask": peak("ComputeMask"), "MakeDesignMatrix": peak("MakeDesignMatrix")}
    mask = next(tmp_path.glob("*mask*.nii*"))
    design = next(tmp_path.glob("*design*.tsv"))
    measured["FitGLM"] = peak("FitGLM", str(design), str(mask))
    for kind, gib in measured.items():
        assert gib <= estimates[kind].mem_gb <= 2.5 * gib + 0.2, (kind, gib, estimates[kind])
    # minimize_memory=False keeps the residual and predicted series: a larger request
    keep = peak("FitGLMKeep", str(design), str(mask))
    keeping = estimate_node_resources([tmp_path / "bold.nii.gz"], minimize_memory=False)
    assert measured["FitGLM"] < keep <= keeping["FitGLM"].mem_gb <= 2.5 * keep + 0.2, (
        keep, keeping["FitGLM"])


def test_file_digest_is_nipypes_hash_once_per_file_version(tmp_path, monkeypatch):
    """The memoised digest equals Nipype's own ``hash_infile`` (so batch jobs, which use
    Nipype's, agree), is computed once for concurrent callers, and anew after an edit
    (even one that restores the modification time)."""
    import threading

    import glmflow.execution as execution

    path = tmp_path / "bold.nii.gz"
    path.write_bytes(os.urandom(3 * 2**20 + 17))
    original = execution.hash_infile_original  # Nipype's, even once glmflow's is installed
    assert execution.file_digest(str(path)) == original(str(path))

    calls = []
    real = execution._hash_file
    gate = threading.Event()

    def slow_hash(*args, **kwargs):
        calls.append(args[0])
        gate.wait(5)
        return real(*args, **kwargs)

    monkeypatch.setattr(execution, "_hash_file", slow_hash)
    fresh = tmp_path / "fresh.nii.gz"
    fresh.write_bytes(os.urandom(2**20))
    results = []
    workers = [threading.Thread(target=lambda: results.append(execution.file_digest(str(fresh))))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    gate.set()
    for worker in workers:
        worker.join(10)
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 4

    stat = fresh.stat()
    fresh.write_bytes(os.urandom(2**20))  # same size, new content...
    os.utime(fresh, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and the old time stamp
    assert execution.file_digest(str(fresh)) == original(str(fresh)) != results[0]


def test_file_digest_survives_fork_while_hashing(tmp_path, monkeypatch):
    """A process forked while a background thread hashes (MultiProc forks its workers)
    does not wait for that thread, which does not exist in the child."""
    import threading

    import glmflow.execution as execution

    path = tmp_path / "bold.nii.gz"
    path.write_bytes(os.urandom(2**20))
    gate = threading.Event()
    real = execution._hash_file
    monkeypatch.setattr(execution, "_hash_file",
                        lambda *a, **k: (gate.wait(10), real(*a, **k))[1])
    (thread,) = execution.prefetch_digests([str(path)])
    pid = os.fork()
    if pid == 0:  # child: must hash by itself, at once
        monkeypatch.setattr(execution, "_hash_file", real)
        os._exit(0 if execution.file_digest(str(path)) else 1)
    _, status = os.waitpid(pid, 0)
    gate.set()
    thread.join(10)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize(("plugin", "plugin_args", "n_fits", "expected"), [
    ("Linear", {}, 3, "cores"),
    ("MultiProc", {"n_procs": 2}, 1, 2),
    ("MultiProc", {"n_procs": 2}, 4, 1),
    ("MultiProc", {"n_procs": 8}, 3, 2),
    ("SLURM", {}, 1, 1),
    ("SGE", {"fit_threads": 4}, 1, 4),
    ("Linear", {"fit_threads": 1}, 1, 1),
])
def test_fit_threads_fill_the_machine(plugin, plugin_args, n_fits, expected):
    from glmflow.execution import available_cores, fit_threads_for

    if expected == "cores":
        expected = available_cores()
    assert fit_threads_for(plugin, plugin_args, n_fits) == expected


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_fit_threads_must_be_a_positive_integer(bad):
    from glmflow.core.errors import ParameterError
    from glmflow.execution import fit_threads_for

    with pytest.raises(ParameterError, match="fit_threads"):
        fit_threads_for("Linear", {"fit_threads": bad}, 1)


def test_nipype_plugins_load_without_ipython():
    """Nipype's plugin package would import IPython (0.4 s) for a plugin glmflow does not
    use: glmflow loads it without, and IPython stays importable afterwards."""
    code = textwrap.dedent("""
        import importlib.util, sys
        from glmflow.execution import import_nipype_plugins
        import_nipype_plugins()
        import nipype.pipeline.plugins as plugins
        assert hasattr(plugins, "LinearPlugin") and hasattr(plugins, "SLURMPlugin")
        assert "IPython" not in sys.modules
        if importlib.util.find_spec("IPython") is not None:
            import IPython  # still importable by the user
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_fit_nodes_keeping_outputs_ask_for_more_memory(tmp_path, capfd):
    from glmflow.execution import apply_node_resources
    from glmflow.workflows import init_first_level_wf

    bold = tmp_path / "bold.nii"
    _write_run(bold, (64, 64, 40), 100)  # 0.12 GiB in float64
    requests = {}
    for minimize in (True, False):
        wf = init_first_level_wf(t_r=2.0, contrasts={"a": "a"}, minimize_memory=minimize,
                                 report=False)
        applied = apply_node_resources(wf, [str(bold)])
        requests[minimize] = applied["first_level_wf.fit"].mem_gb
    assert requests[False] > requests[True]
    # Only fit nodes are asked: reading a missing input of a MapNode (the contrasts) adds
    # it as a trait, and traits prints an exception from the MapNode's handler.
    assert "Exception occurred in traits notification" not in capfd.readouterr().err
