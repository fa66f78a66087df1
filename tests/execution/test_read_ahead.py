"""Reading the run ahead (glmflow.core.read_ahead) on the Linear plugin.

The read is only an earlier start of the same work: the fit must take it only when it is
exactly what it would read, give byte-identical results, and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time

import nibabel as nib
import numpy as np
import pytest
from conftest import simulate_study

from glmflow.core import read_ahead
from glmflow.core.data import load_masked_run
from glmflow.execution import run_workflow
from glmflow.workflows import init_first_level_wf
from glmflow.workflows.outputs import collect_outputs


def _given_mask(study_dir, bold_file):
    """A brain mask file on the runs' grid (the read-ahead needs the mask up front)."""
    img = nib.load(bold_file)
    data = np.asanyarray(img.dataobj)[..., 0] > 100
    path = os.path.join(study_dir, "mask.nii.gz")
    nib.save(nib.Nifti1Image(data.astype(np.uint8), img.affine), path)
    return path


def _workflow(study, mask_file, **kwargs):
    wf = init_first_level_wf(t_r=study["t_r"], contrasts={"a_minus_b": "a - b"}, report=False,
                             **kwargs)
    wf.inputs.inputnode.bold_files = study["bold"]
    wf.inputs.inputnode.events_files = study["events"]
    wf.inputs.inputnode.mask_file = mask_file
    return wf


def _z_bytes(wf, graph):
    return [open(f, "rb").read() for f in collect_outputs(wf, graph)["z_files"]]


@pytest.fixture
def spill_dir(tmp_path, monkeypatch):
    """A private TMPDIR, to see every spill file the runs leave."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def taken(monkeypatch):
    """Record whether each fit got its run from the read-ahead (False: it read it itself).

    Only a flag is kept: holding the run would keep its spill file alive.
    """
    results = []
    original = read_ahead.take

    def take(*args, **kwargs):
        result = original(*args, **kwargs)
        results.append(result is not None)
        return result

    monkeypatch.setattr(read_ahead, "take", take)
    return results


def test_linear_fit_takes_the_read_and_gives_identical_maps(study, spill_dir, taken):
    mask = _given_mask(study["dir"], study["bold"][0])
    wf = _workflow(study, mask)
    ahead = _z_bytes(wf, run_workflow(wf, plugin="Linear", base_dir=str(study["dir"] / "a")))
    assert taken == [True, False]  # the first run was read ahead; the fit read the second

    wf = _workflow(study, mask)
    # MultiProc forks workers: nothing is read ahead there; same maps, byte for byte.
    alone = _z_bytes(wf, run_workflow(wf, plugin="MultiProc", plugin_args={"n_procs": 2},
                                      base_dir=str(study["dir"] / "b")))
    assert ahead == alone
    _assert_released(spill_dir)  # every spilled run's file was released


def test_no_read_ahead_for_a_rerun_or_a_computed_mask(study, spill_dir, taken):
    mask = _given_mask(study["dir"], study["bold"][0])
    base = str(study["dir"] / "work")
    run_workflow(_workflow(study, mask), plugin="Linear", base_dir=base)
    taken.clear()
    started = []
    original = read_ahead.start
    read_ahead.start = lambda *a, **k: started.append(a) or original(*a, **k)
    try:
        run_workflow(_workflow(study, mask), plugin="Linear", base_dir=base)  # cached
        run_workflow(_workflow(study, None), plugin="Linear", base_dir=str(study["dir"] / "c"))
        run_workflow(_workflow(study, mask, smoothing_fwhm=4.0), plugin="Linear",
                     base_dir=str(study["dir"] / "d"))
    finally:
        read_ahead.start = original
    assert started == []
    _assert_released(spill_dir)


def test_take_refuses_another_mask_or_file_version(tmp_path, spill_dir):
    bold, _ = simulate_study(tmp_path / "data", n_runs=1)
    mask_img = nib.load(_given_mask(tmp_path, bold[0]))
    other = np.asanyarray(mask_img.dataobj).copy()
    other.flat[np.flatnonzero(other)[0]] = 0
    other_img = nib.Nifti1Image(other, mask_img.affine)

    read_ahead.start(bold[0], mask_img, spill_dir=str(spill_dir), block_size=64)
    assert read_ahead.take(bold[0], other_img, spill_dir=str(spill_dir), block_size=64) is None
    read_ahead.start(bold[0], mask_img, spill_dir=str(spill_dir), block_size=64)
    assert read_ahead.take(bold[0], mask_img, spill_dir=str(spill_dir), block_size=32) is None

    read_ahead.start(bold[0], mask_img, spill_dir=str(spill_dir), block_size=64)
    os.utime(bold[0])  # a new version of the file (e.g. rewritten): read it again
    assert read_ahead.take(bold[0], mask_img, spill_dir=str(spill_dir), block_size=64) is None

    read_ahead.start(bold[0], mask_img, spill_dir=str(spill_dir), block_size=64)
    run = read_ahead.take(bold[0], mask_img, spill_dir=str(spill_dir), block_size=64)
    expected = load_masked_run(bold[0], mask_img)
    assert np.array_equal(np.asarray(run), expected)
    run.close()
    _assert_released(spill_dir)


def test_discard_cancels_a_read_in_progress(tmp_path, spill_dir, monkeypatch):
    bold, _ = simulate_study(tmp_path / "data", n_runs=1, n_scans=200)
    mask_img = nib.load(_given_mask(tmp_path, bold[0]))
    reading, release = threading.Event(), threading.Event()
    from glmflow.core import data

    volumes = data._raw_volumes

    consumed = []

    def slow_volumes(*args, **kwargs):
        for index, volume in enumerate(volumes(*args, **kwargs)):
            consumed.append(index)
            if index == 5:
                reading.set()
                release.wait(5)
            yield volume

    monkeypatch.setattr(data, "_raw_volumes", slow_volumes)
    read_ahead.start(bold[0], mask_img, spill_dir=str(spill_dir), block_size=64)
    assert reading.wait(5)
    assert len(_files_open_in(spill_dir)) == 1  # half written (a file without a name)
    assert not list(spill_dir.iterdir())
    stopper = threading.Thread(target=read_ahead.discard_all)
    stopper.start()
    release.set()
    stopper.join(5)
    assert not stopper.is_alive()
    assert len(consumed) < 10  # stopped, not read to the end (200 volumes)
    _assert_released(spill_dir)  # the half-written spill file too


def _assert_released(folder):
    """No file is left in ``folder`` and, soon (files are closed in the background), none
    is held open either."""
    assert not list(folder.iterdir())
    for _ in range(200):
        if not _files_open_in(folder):
            return
        time.sleep(0.01)
    pytest.fail(f"still open: {_files_open_in(folder)}")


def _files_open_in(folder):
    """The files in ``folder`` this process holds open (named or not)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder) + os.sep):
                found.append(target)
    return found
