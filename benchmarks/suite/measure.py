"""Running one measurement in its own fresh process, with a timeout and its peak memory.

The child gets a session of its own so that a timeout kills its whole tree (pool workers,
the subprocesses taskproc 0.25.3 starts per task). It is reaped with ``os.wait4``; the
``ru_maxrss`` that returns is only a fallback for the peak memory, because Linux carries the
parent's peak into it across ``exec``: the workload reports its own (``common.peak_rss_bytes``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MARKER = "BENCH_RESULT "
_POLL_S = 0.02
# A traceback's last line names the exception: "module.SomeError: message".
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Group|Interrupt)\b")


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    returncode: int | None  # None: killed at the timeout
    wall_s: float
    peak_rss: int
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def run_process(
    command: Sequence[str], env: Mapping[str, str], cwd: Path, timeout_s: float, logs: Path
) -> ProcessOutcome:
    """Run ``command`` to completion or until ``timeout_s``; output goes to files in ``logs``."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "stdout.txt", logs / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            list(command), stdout=out, stderr=err, env=dict(env), cwd=cwd, start_new_session=True
        )
        returncode: int | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - t0 > timeout_s:
                _kill_group(proc.pid)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(_POLL_S)
        wall = time.monotonic() - t0
        # Popen must not try to reap the child again; it was reaped above.
        proc.returncode = -1 if returncode is None else returncode
        _kill_group(proc.pid)  # stray members of the tree (e.g. orphaned pool workers)
    return ProcessOutcome(
        returncode=returncode,
        wall_s=wall,
        peak_rss=usage.ru_maxrss * 1024,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The workload's ``BENCH_RESULT`` line, or None if it printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(_MARKER):
            parsed = json.loads(line[len(_MARKER) :])
            return parsed if isinstance(parsed, dict) else None
    return None


def error_line(stderr: str, stdout: str) -> str:
    """The last line of the error (the exception and its message), for the table."""
    for text in (stderr, stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # Prefer the exception line: warnings may be printed after it at interpreter exit.
        named = [line for line in lines if _EXCEPTION_LINE.match(line)]
        if named or lines:
            return (named or lines)[-1][:300]
    return ""
