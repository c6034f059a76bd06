"""The processes that a run's in-process tasks start, stopped when the run is interrupted.

A task on a thread pool (or inline) runs in the runner's own process, so what it starts
(`subprocess.run(...)`, a shell, a server) is a child of the runner. A process pool's
workers lead process groups that taskproc kills whole; threads cannot be killed, so on an
interrupt the runner ends instead the processes its tasks started during the run, and their
descendants: the tasks' threads then return from their waits and the runner can exit. Only
processes that appeared during the run are touched: a program that calls `run_graph` keeps
the children it had before. Linux only (``/proc``); elsewhere nothing is found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time


def child_pids(pid: int | None = None) -> set[int]:
    """The pids of the children of process `pid` (default: this one)."""
    pid = os.getpid() if pid is None else pid
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return set()
    out: set[int] = set()
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.update(int(p) for p in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def descendants(pids: set[int]) -> list[int]:
    """`pids` and all their descendants, parents first."""
    out: list[int] = []
    pending = sorted(pids)
    while pending:
        pid = pending.pop(0)
        if pid not in out:
            out.append(pid)
            pending.extend(sorted(child_pids(pid)))
    return out


def stop_new_children(before: set[int], grace: float = 2.0) -> list[int]:
    """SIGTERM the children started since `before` (and their descendants), wait up to
    `grace` seconds for them to end, then SIGKILL what is left; the pids signalled."""
    targets = descendants(child_pids() - before)
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_running(p) for p in targets):
        time.sleep(0.02)
    for pid in targets:
        if _running(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return targets


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, waiting for its parent to reap it, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
