"""Waiting for conditions and checking that the processes a test started (a sweep, a Ray head node) are gone."""
from __future__ import annotations

import os
import signal
import subprocess
import time


def wait_for(predicate, timeout=240.0, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def session_processes(sid: int) -> list[str]:
    """Processes of a session (a sweep's or a head node's: every Ray process it started)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1] == str(sid) and line.split()[0] != str(sid)]


def assert_no_processes_left(sid: int, timeout: float = 30.0) -> None:
    try:
        wait_for(lambda: not session_processes(sid), timeout, 0.5)
    except AssertionError:
        left = session_processes(sid)
        os.killpg(sid, signal.SIGKILL) if left else None
        raise AssertionError(f"left running: {left}") from None

