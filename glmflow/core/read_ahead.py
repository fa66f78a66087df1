"""Read a run ahead: load the masked run in the background for the fit that will ask.

On the Linear plugin every step runs in this process, one after the other. Before the fit
can start, Nipype hashes the inputs and the mask and design steps run; the fit then spends
half its time reading and decompressing the run, which depends on none of that. When the
mask is a given file (so known before any step runs), :func:`glmflow.execution.run_workflow`
starts that read at once in a background thread (:func:`start`); decompression and
hashing release the GIL, so the two overlap. The fit step takes the result (:func:`take`)
only when it asks for exactly that read: the same file version, the same mask voxels and
the same spilling; otherwise it reads the run itself. Reads nobody took are cancelled
and their spill files released (:func:`discard_all`).
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from glmflow.core.data import ReadCancelled, load_masked_run
from glmflow.core.versions import file_version

_LOCK = threading.Lock()
#: Reads in flight or done, not yet taken: {real path of the run: _Read}.
_READS = {}


class _Read:
    """One masked run being read by a background thread."""

    def __init__(self, bold_file, mask, mask_img, spill_dir, block_size):
        self.version = file_version(bold_file)
        self.mask = mask
        self.spill_dir = spill_dir
        self.block_size = block_size
        self.cancel = threading.Event()
        self.result = self.error = None
        self.thread = threading.Thread(
            target=self._read, args=(bold_file, mask_img), name="glmflow-read-ahead",
            daemon=True,
        )
        self.thread.start()

    def _read(self, bold_file, mask_img):
        try:
            self.result = load_masked_run(bold_file, mask_img, spill_dir=self.spill_dir,
                                          block_size=self.block_size, cancel=self.cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the fit that takes it
            self.error = exc

    def matches(self, bold_file, mask, spill_dir, block_size):
        return (
            self.version == file_version(bold_file)
            and self.spill_dir == spill_dir
            and self.block_size == block_size
            and self.mask.shape == mask.shape
            and np.array_equal(self.mask, mask)
        )

    def wait(self):
        """The masked run (re-raising the read's error)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.result

    def discard(self):
        """Stop the read and release what it wrote."""
        self.cancel.set()
        self.thread.join()
        close = getattr(self.result, "close", None)
        if close is not None:
            close()
        self.result = None


def start(bold_file, mask_img, *, spill_dir=None, block_size=None):
    """Start reading ``bold_file`` through ``mask_img`` in a background thread.

    Parameters are :func:`glmflow.core.data.load_masked_run`'s (the streamed case: no
    smoothing or resampling). A read already started for the same file is replaced.
    """
    mask = np.asarray(mask_img.dataobj) > 0
    read = _Read(bold_file, mask, mask_img, spill_dir, block_size)
    with _LOCK:
        previous = _READS.pop(os.path.realpath(bold_file), None)
        _READS[os.path.realpath(bold_file)] = read
    if previous is not None:
        previous.discard()


def take(bold_file, mask_img, *, spill_dir=None, block_size=None):
    """The read-ahead result for exactly this read, or None (then read the run yourself).

    Waits for a read still in progress. A read for the same file that does not match
    (another version of the file, another mask, other spilling) is discarded.
    """
    with _LOCK:
        read = _READS.pop(os.path.realpath(bold_file), None) if _READS else None
    if read is None:
        return None
    try:
        matches = read.matches(bold_file, np.asarray(mask_img.dataobj) > 0, spill_dir,
                               block_size)
    except OSError:
        matches = False
    if not matches:
        read.discard()
        return None
    try:
        return read.wait()
    except ReadCancelled:
        return None


def discard_all():
    """Cancel every read nobody took and release its spill file."""
    with _LOCK:
        reads = list(_READS.values())
        _READS.clear()
    for read in reads:
        with contextlib.suppress(Exception):
            read.discard()


def _forget_after_fork():
    # A forked worker has none of the reading threads: its copies of the reads are void
    # (dropping them closes only the worker's copies of the spill files' descriptors).
    global _LOCK, _READS
    _LOCK = threading.Lock()
    _READS = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
