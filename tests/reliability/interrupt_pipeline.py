"""Quick tasks that finish, then sleepers that start a long child process and wait on it."""

from __future__ import annotations

import os
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

    def __init__(self, i: int, log: str) -> None:
        self.i, self.log = i, log

    def run_task(self) -> int:
        child = subprocess.Popen(["sleep", "300"])
        Path(self.log, f"pids.{self.i}").write_text(f"{os.getpid()} {child.pid}")
        child.wait()
        return self.i


class Main(Task):
    def __init__(self, log: str, n: int = 2) -> None:
        self.quick = FutureList([Quick(i) for i in range(5)])
        self.sleepers = FutureList([Sleeper(i, log) for i in range(n)])

    def run_task(self) -> int:
        return sum(self.quick.get_result()) + sum(self.sleepers.get_result())
