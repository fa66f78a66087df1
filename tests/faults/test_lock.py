"""The working-directory lock: a second run fails clearly, a dead holder does not block."""

import subprocess
import sys
import time

import pytest

from glmflow.core.lock import WorkdirLock, WorkdirLockedError

HOLD = """
import sys, time
from glmflow.core.lock import WorkdirLock
lock = WorkdirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_second_holder_gets_a_clear_error(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "30"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirLockedError) as info:
            WorkdirLock(tmp_path).acquire()
        message = str(info.value)
        assert str(tmp_path) in message and f"pid {holder.pid}" in message
    finally:
        holder.kill()
        holder.wait()
    # killed holder: the OS released the lock, the stale file does not block
    with WorkdirLock(tmp_path):
        pass


def test_lock_is_reentrant_after_release(tmp_path):
    lock = WorkdirLock(tmp_path)
    with lock:
        with pytest.raises(WorkdirLockedError):
            WorkdirLock(tmp_path).acquire()
    start = time.time()
    with WorkdirLock(tmp_path):
        pass
    assert time.time() - start < 1.0
