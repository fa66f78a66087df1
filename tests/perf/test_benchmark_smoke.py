"""Smoke run of the benchmark script on the tiny size (not a timing test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_benchmark_tiny_runs_and_agrees(tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(BENCHMARKS / "run_benchmarks.py"), "--sizes", "tiny",
           "--runs", "1", "--tools", "nilearn", "wf-linear", "--data", str(tmp_path / "data"),
           "--work", str(tmp_path), "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {row["tool"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"nilearn", "wf-linear"}
    for row in rows.values():
        assert row["wall_s"] > 0 and row["peak_mib"] > 50  # a Python with numpy is > 50 MiB
        # the floor process imported the case's modules (numpy, nibabel, nilearn...) and
        # did no work: seconds, not more than the case itself plus noise
        assert 0.3 < row["floor_s"] < row["wall_s"] + 1.0
        assert row["net_s"] == pytest.approx(row["wall_s"] - row["floor_s"])
    # Both tools computed the same statistics on the generated data.
    assert rows["wf-linear"]["max_abs_dz"] < 1e-9
    assert rows["wf-linear"]["speedup"] > 0
    assert "speedup" in proc.stdout and "net x" in proc.stdout and "tiny" in proc.stdout


def test_floor_loads_the_modules_of_the_case_and_no_others(tmp_path):
    """``cases.py floor`` imports what the case had loaded, refusing anything else."""
    modules = tmp_path / "modules.json"
    listing = subprocess.run(
        [sys.executable, "-c", "import json, sys, numpy; print(json.dumps(list(sys.modules)))"],
        capture_output=True, text=True, check=True)
    modules.write_text(listing.stdout)
    cases = str(BENCHMARKS / "cases.py")
    code = ("import runpy, sys; sys.argv = ['cases.py', 'floor', sys.argv[1]]; "
            f"runpy.run_path({cases!r}, run_name='__main__'); "
            "print('numpy' in sys.modules, 'pandas' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(modules)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "True False"


def test_generated_data_matches_request(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from generate_data import SIZES, generate
    finally:
        sys.path.remove(str(BENCHMARKS))
    files = generate("tiny", tmp_path, n_runs=2, seed=3, log=lambda text: None)
    size = SIZES["tiny"]
    mask = np.asarray(nib.load(files["mask"]).dataobj) > 0
    assert abs(int(mask.sum()) - size.n_mask) <= 0.02 * size.n_mask
    bold = nib.load(files["bold"][1])
    assert bold.shape == (*size.shape, size.n_scans)
    data = np.asanyarray(bold.dataobj)
    assert np.all(data[~mask] == 0) and np.all(data[mask] > 0)
    # Lag-1 autocorrelation of the in-brain noise is clearly positive (AR(1) simulated).
    series = data[mask].astype(float)
    resid = series - series.mean(axis=1, keepdims=True)
    lag1 = (resid[:, 1:] * resid[:, :-1]).sum(1) / (resid**2).sum(1)
    assert np.median(lag1) > 0.1
    # Cached: asking again does not rewrite the files.
    mtime = Path(files["bold"][0]).stat().st_mtime_ns
    generate("tiny", tmp_path, n_runs=2, seed=3, log=lambda text: None)
    assert Path(files["bold"][0]).stat().st_mtime_ns == mtime
