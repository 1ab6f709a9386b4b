"""Processes a test started in a session of their own (`subprocess.Popen(..., start_new_session=True)`):
list them and end them by pid, never by name, so that nothing else on the machine is touched."""
from __future__ import annotations

import os
import signal
import time


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(pid))
    return pids


def kill_session(sid: int, timeout: float = 30.0) -> None:
    """SIGKILL every process of session `sid` (one a test started), until none is left."""
    deadline = time.monotonic() + timeout
    while (pids := session_processes(sid)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    assert not session_processes(sid), f"session {sid} left processes behind"
