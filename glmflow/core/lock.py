"""One run at a time per working directory.

Two runs sharing a Nipype working directory would write the same node folders at once and
can leave a cache that looks complete but mixes both. The lock makes the second run fail at
once with an error naming the first.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from glmflow.core.errors import GLMFlowError

LOCK_NAME = ".glmflow.lock"


class WorkdirLockedError(GLMFlowError, RuntimeError):
    """Another glmflow run holds the working directory."""


class WorkdirLock:
    """An exclusive, non-blocking lock on ``<folder>/.glmflow.lock``.

    The lock is an OS file lock (``flock``): it is released when the process ends, even by a
    crash or ``kill -9``, so a stale lock file never blocks a later run.

    Parameters
    ----------
    folder : str or Path
        The working directory to protect (created if missing).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd = None

    def acquire(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirLockedError(
                f"The working directory {self.folder} is in use by another glmflow run "
                f"({holder}). Wait for it to finish, or use another working directory."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _read_holder(fd):
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return "holder unknown"
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
