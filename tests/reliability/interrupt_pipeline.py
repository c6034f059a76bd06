"""Quick tasks that finish, then sleepers that start a long child process and wait on it
(stubborn ones ignore SIGTERM, as do their children)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from taskproc import FutureList, Task


class Quick(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        return self.i


class Sleeper(Task):
    task_label = "sleepy"

    def __init__(self, i: int, log: str, stubborn: bool = False) -> None:
        self.i, self.log, self.stubborn = i, log, stubborn

    def run_task(self) -> int:
        if self.stubborn:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the sleep inherits it
        child = subprocess.Popen(["sleep", "300"])
        Path(self.log, f"pids.{self.i}").write_text(f"{os.getpid()} {child.pid}")
        child.wait()
        return self.i


class Main(Task):
    def __init__(self, log: str, n: int = 2, stubborn: bool = False) -> None:
        self.quick = FutureList([Quick(i) for i in range(5)])
        self.sleepers = FutureList([Sleeper(i, log, stubborn) for i in range(n)])

    def run_task(self) -> int:
        return sum(self.quick.get_result()) + sum(self.sleepers.get_result())
