"""Overlapping graphs for several runners on one cache. Every task body appends its name to
`<log>/ran.log`, so the test can count how often each one really ran."""

from __future__ import annotations

import os
import time

from taskproc import FutureList, Task


def record(log: str, what: str) -> None:
    fd = os.open(os.path.join(log, "ran.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{what}\n".encode())
    finally:
        os.close(fd)


class Shared(Task):
    def __init__(self, i: int, log: str, delay: float) -> None:
        self.i, self.log, self.delay = i, log, delay

    def run_task(self) -> int:
        record(self.log, f"Shared {self.i}")
        time.sleep(self.delay + float(os.environ.get("TP_DELAY", "0")))  # not in its identity
        gate = os.environ.get("TP_GATE")  # tests hold a runner here until they kill it
        while gate and not os.path.exists(gate):
            time.sleep(0.01)
        fd = os.open(os.path.join(self.log, "ends.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:  # which run finished it (the runner's token), for the tests of takeovers
            os.write(fd, f"{self.i} {os.environ.get('TP_RUN', '')}\n".encode())
        finally:
            os.close(fd)
        return self.i


class Own(Task):
    def __init__(self, r: int, i: int, log: str, up: Shared) -> None:
        self.r, self.i, self.log, self.up = r, i, log, up

    def run_task(self) -> int:
        record(self.log, f"Own {self.r} {self.i}")
        return self.up.get_result() * 1000 + self.r


class Main(Task):
    def __init__(self, r: int, log: str, n: int = 12, delay: float = 0.03) -> None:
        shared = [Shared(i, log, delay) for i in range(n)]
        self.mine = FutureList([Own(r, i, log, s) for i, s in enumerate(shared)])
        self.all_shared = FutureList(shared)

    def run_task(self) -> int:
        answer = sum(self.mine.get_result()) + sum(self.all_shared.get_result())
        print(f"ANSWER {answer}")
        return answer


def expected(r: int, n: int = 12) -> int:
    return sum(i * 1000 + r for i in range(n)) + sum(range(n))
