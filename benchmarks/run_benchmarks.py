"""glmflow vs nilearn, side by side: wall time, peak memory, speedup, and max |Δz|.

Every measurement is a fresh Python process (``benchmarks/cases.py``) doing the whole job
(read, mask, design, fit, two contrasts with all outputs written). The tools are
interleaved (nilearn, glmflow..., nilearn, glmflow... when ``--repeat`` > 1) so drifts of
the machine hit them alike. Memory is reported two ways:

* ``peak`` — ``ru_maxrss`` of the case process from ``os.wait4`` (the largest single
  process of its tree: Linux folds waited-for children into it);
* ``tree`` — the largest sum of RSS over the case process and all its children, sampled
  every 20 ms (what a parallel run costs the machine; meaningful for MultiProc).

Time is reported two ways: ``wall`` (the whole process) and ``net`` = wall minus the tool's
``floor``, the wall time of a fresh process that imports exactly the modules the case ended
with and exits (interpreter start-up, imports and exit: about 1.7 s for nilearn and 2.2 s
for glmflow here, whether a tool imports everything up front or on first use).

Usage::

    python benchmarks/run_benchmarks.py --sizes small medium mni2mm
    python benchmarks/run_benchmarks.py --sizes tiny --repeat 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_data import SIZES  # noqa: E402

CASES = Path(__file__).resolve().parent / "cases.py"
GENERATOR = Path(__file__).resolve().parent / "generate_data.py"
TOOLS = ("nilearn", "facade", "wf-linear", "wf-multiproc")
#: Which tools run with 4 runs (nilearn's 4-run fit is the long pole at mni2mm).
MULTI_RUN_TOOLS = ("nilearn", "facade", "wf-linear", "wf-multiproc")


def facade_available():
    try:
        import importlib.util

        return importlib.util.find_spec("glmflow.model") is not None
    except ImportError:
        return False


def _tree_rss(proc):
    """Sum of RSS (bytes) of ``proc`` and its descendants (0 if gone)."""
    import psutil

    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for item in procs:
        try:
            total += item.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(cmd, *, env=None):
    """Run ``cmd``; return wall time, ru_maxrss (MiB), sampled tree peak (MiB), stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak_tree = [0]
    stop = threading.Event()

    def sample():
        try:
            import psutil

            handle = psutil.Process(proc.pid)
        except Exception:  # psutil missing or process already gone
            return
        while not stop.is_set():
            peak_tree[0] = max(peak_tree[0], _tree_rss(handle))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # Read the pipes in threads so a chatty child cannot block on a full pipe.
    out, err = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    sampler.join()
    for reader in readers:
        reader.join()
    stdout = out[0].decode() if out else ""
    stderr = err[0].decode() if err else ""
    return {
        "wall_s": wall,
        "peak_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "tree_mib": peak_tree[0] / 2**20,
        "returncode": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
    }


def max_abs_dz(dir_a, dir_b, contrasts):
    """Largest |Δz| between two cases' z maps (over all voxels and contrasts)."""
    import nibabel as nib

    worst = 0.0
    for name in contrasts:
        a = np.asanyarray(nib.load(os.path.join(dir_a, f"{name}_z.nii.gz")).dataobj)
        b = np.asanyarray(nib.load(os.path.join(dir_b, f"{name}_z.nii.gz")).dataobj)
        worst = max(worst, float(np.max(np.abs(a.astype(float) - b.astype(float)))))
    return worst


def run_size(name, args, data_root, log):
    # Generate in a child process: a runner grown by the simulation would pass its size on
    # to every measured process (a forked child's RSS before exec counts in ru_maxrss).
    gen = subprocess.run(
        [sys.executable, str(GENERATOR), "--sizes", name, "--out", str(data_root),
         "--runs", str(max(args.runs)), "--seed", str(args.seed), "--quiet"],
        capture_output=True, text=True, check=False,
    )
    if gen.returncode != 0:
        raise RuntimeError(f"data generation failed:\n{gen.stderr[-3000:]}")
    if gen.stdout.strip():
        log(gen.stdout.strip())
    data_json = Path(data_root) / name / f"files-{max(args.runs)}.json"
    files = json.loads(data_json.read_text())
    tools = [t for t in args.tools if t != "facade" or facade_available()]
    if "facade" in args.tools and "facade" not in tools:
        log("glmflow.model (the facade) is not available yet: skipping it.")
    rows = []
    for n_runs in args.runs:
        run_tools = tools if n_runs == 1 else [t for t in tools if t in MULTI_RUN_TOOLS]
        results = {tool: [] for tool in run_tools}
        for repeat in range(args.repeat):
            for tool in run_tools:
                out = tempfile.mkdtemp(prefix=f"bench-{name}-{tool}-", dir=args.work)
                cmd = [sys.executable, str(CASES), tool, str(data_json), out,
                       "--runs", str(n_runs), "--noise-model", args.noise_model]
                res = measure(cmd, env=dict(os.environ, NIPYPE_NO_ET="1"))
                if res["returncode"] != 0:
                    log(f"FAILED {name} {tool} runs={n_runs}:\n{res['stderr'][-3000:]}")
                    shutil.rmtree(out, ignore_errors=True)
                    continue
                res.update(json.loads(res["stdout"].strip().splitlines()[-1]))
                res["out"] = out
                # The floor: a process importing the very modules this case ended with,
                # then exiting (start-up, imports and exit, however the tool imports).
                floor = measure([sys.executable, str(CASES), "floor",
                                 os.path.join(out, "modules.json")])
                res["floor_s"] = floor["wall_s"] if floor["returncode"] == 0 else float("nan")
                results[tool].append(res)
                log(f"  {name:7s} runs={n_runs} #{repeat + 1} {tool:15s} "
                    f"{res['wall_s']:7.2f} s  floor {res['floor_s']:5.2f} s  "
                    f"peak {res['peak_mib']:7.0f} MiB  tree {res['tree_mib']:7.0f} MiB")
        base = results.get("nilearn", [])
        for tool, measured in results.items():
            if not measured:
                continue
            wall = float(np.median([m["wall_s"] for m in measured]))
            peak = float(max(m["peak_mib"] for m in measured))
            tree = float(max(m["tree_mib"] for m in measured))
            floor = float(np.median([m["floor_s"] for m in measured]))
            row = {"size": name, "runs": n_runs, "tool": tool, "wall_s": wall,
                   "floor_s": floor, "net_s": wall - floor,
                   "work_s": float(np.median([m["work_s"] for m in measured])),
                   "peak_mib": peak, "tree_mib": tree, "n": len(measured)}
            if base and tool != "nilearn":
                base_wall = float(np.median([m["wall_s"] for m in base]))
                base_floor = float(np.median([m["floor_s"] for m in base]))
                row["speedup"] = base_wall / wall
                # Without each tool's own start-up, imports and exit (its floor).
                if base_wall - base_floor > 0 and row["net_s"] > 0:  # not within noise
                    row["net_speedup"] = (base_wall - base_floor) / row["net_s"]
                row["mem_ratio"] = max(m["peak_mib"] for m in base) / peak
                row["max_abs_dz"] = max_abs_dz(base[0]["out"], measured[0]["out"],
                                               files["contrasts"])
            rows.append(row)
        for measured in results.values():
            for m in measured:
                shutil.rmtree(m["out"], ignore_errors=True)
    return rows


def format_table(rows):
    head = (f"{'size':8s} {'runs':>4s} {'tool':15s} {'wall s':>8s} {'floor s':>8s} "
            f"{'net s':>8s} {'peak MiB':>9s} {'tree MiB':>9s} {'speedup':>8s} {'net x':>7s} "
            f"{'mem x':>6s} {'max|dz|':>9s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        speed = f"{r['speedup']:7.1f}x" if "speedup" in r else f"{'-':>8s}"
        net = f"{r['net_speedup']:6.1f}x" if "net_speedup" in r else f"{'-':>7s}"
        mem = f"{r['mem_ratio']:5.1f}x" if "mem_ratio" in r else f"{'-':>6s}"
        dz = f"{r['max_abs_dz']:9.1e}" if "max_abs_dz" in r else f"{'-':>9s}"
        lines.append(f"{r['size']:8s} {r['runs']:4d} {r['tool']:15s} {r['wall_s']:8.2f} "
                     f"{r['floor_s']:8.2f} {r['net_s']:8.2f} {r['peak_mib']:9.0f} "
                     f"{r['tree_mib']:9.0f} {speed} {net} {mem} {dz}")
    return "\n".join(lines)


def machine_summary():
    import nilearn

    import glmflow

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{platform.node()} | {os.cpu_count()} cores | load {load} | {platform.processor() or platform.machine()}"
            f" | Python {platform.python_version()} | numpy {np.__version__} | nilearn "
            f"{nilearn.__version__} | glmflow {glmflow.__version__}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "medium", "mni2mm"],
                        choices=list(SIZES))
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--runs", nargs="+", type=int, default=[1, 4],
                        help="numbers of runs to benchmark (default: 1 and 4)")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per tool")
    parser.add_argument("--noise-model", default="ar1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(),
                                                       "glmflow-bench-data"),
                        help="where the generated data are cached")
    parser.add_argument("--work", default=None, help="scratch folder for outputs")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    def log(text):
        print(text, flush=True)

    log(machine_summary())
    rows = []
    for name in args.sizes:
        rows.extend(run_size(name, args, args.data, log))
    log("")
    log(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_summary(), "rows": rows},
                                              indent=1))
    return rows


if __name__ == "__main__":
    main()
