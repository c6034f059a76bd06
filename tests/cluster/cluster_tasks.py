"""Tasks and helpers shared by the cluster tests.

This is a plain module (not a test file) so that every process that runs a task can import it:
pool workers, dask workers started with the `dask` command, and `srun`-launched workers.

Concurrency is proven by counting, never by timing: each task records its span (start and end
on this machine's clock, which all processes share) as one file in an events folder, and
`max_overlap` counts how many spans were open at once. Tasks that must overlap meet at a
`barrier` (files in a folder) with a deadline, so a broken scheduler fails fast instead of
hanging.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskproc import FutureList, Task

SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_PARTITION",
    "SLURMD_NODENAME",
    "CUDA_VISIBLE_DEVICES",
)


# ---- recording ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """One execution of one task, as recorded by the task itself."""

    task: str
    start: float
    end: float
    pid: int
    host: str
    env: dict[str, str]


def host_name() -> str:
    """The host name taskproc uses for claims (``TASKPROC_HOSTNAME`` overrides the real one)."""
    return os.environ.get("TASKPROC_HOSTNAME") or socket.gethostname()


def write_span(events: str, task: str, start: float) -> Span:
    """Record that `task` ran from `start` until now; return the record."""
    span = Span(
        task=task,
        start=start,
        end=time.time(),
        pid=os.getpid(),
        host=host_name(),
        env={k: os.environ[k] for k in SLURM_VARS if k in os.environ},
    )
    folder = Path(events)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.json"
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(span)))
    tmp.rename(folder / name)
    return span


def read_spans(events: str | Path) -> list[Span]:
    """Every span recorded in `events` (none if the folder does not exist)."""
    folder = Path(events)
    if not folder.is_dir():
        return []
    return [Span(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]


def max_overlap(spans: Iterable[Span]) -> int:
    """The largest number of spans open at one instant (a span ending at t and one starting
    at t do not overlap)."""
    edges = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans])
    best = open_now = 0
    for _, step in edges:
        open_now += step
        best = max(best, open_now)
    return best


def barrier(folder: str, parties: int, timeout: float = 60.0) -> None:
    """Wait until `parties` callers have reached this barrier (one file each in `folder`)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + timeout
    while (arrived := sum(1 for _ in path.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {folder}: {arrived} of {parties} arrived in {timeout} s")
        time.sleep(0.02)


# ---- tasks ------------------------------------------------------------------------------------


class CpuProbe(Task):
    """Reports where it ran (its Slurm variables) and records its span."""

    def __init__(self, events: str, i: int) -> None:
        self.events = events
        self.i = i

    def run_task(self) -> dict[str, str]:
        start = time.time()
        span = write_span(self.events, repr(self), start)
        return {**span.env, "task_dir": str(self.task_directory.parent), "i": str(self.i)}


class GpuProbe(CpuProbe):
    task_label = "gpu"


class Gather(Task):
    """Depends on every task in `parts` and returns their results as a list."""

    def __init__(self, parts: Sequence[Task]) -> None:
        self.parts = FutureList(parts)

    def run_task(self) -> list[Any]:
        return list(self.parts.get_result())


class Rendezvous(Task):
    """Waits at a barrier of `parties` tasks (so that they provably run at once)."""

    task_label = "meet"

    def __init__(self, events: str, i: int, barrier_dir: str, parties: int) -> None:
        self.events = events
        self.i = i
        self.barrier_dir = barrier_dir
        self.parties = parties

    def run_task(self) -> int:
        start = time.time()
        barrier(self.barrier_dir, self.parties)
        write_span(self.events, repr(self), start)
        return self.i


class Short(Task):
    """A short job: `seconds` of waiting (a stand-in for remote work), its span recorded."""

    def __init__(self, events: str, i: int, seconds: float) -> None:
        self.events = events
        self.i = i
        self.seconds = seconds

    def run_task(self) -> int:
        start = time.time()
        time.sleep(self.seconds)
        write_span(self.events, repr(self), start)
        return self.i


class Fails(Task):
    """Prints a marker to stdout and stderr, then raises."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def run_task(self) -> int:
        print(f"stdout {self.marker}", flush=True)
        print(f"stderr {self.marker}", file=sys.stderr, flush=True)
        raise ValueError(f"boom {self.marker}")


class Square(Task):
    """x * x, with its span recorded."""

    task_label = "light"

    def __init__(self, events: str, x: int) -> None:
        self.events = events
        self.x = x

    def run_task(self) -> int:
        start = time.time()
        print(f"squaring {self.x}")
        write_span(self.events, repr(self), start)
        return self.x * self.x


class Sleeper(Task):
    """Announces itself with a file in `started`, then runs until it is killed."""

    def __init__(self, started: str, i: int) -> None:
        self.started = started
        self.i = i

    def run_task(self) -> int:
        Path(self.started).mkdir(parents=True, exist_ok=True)
        job = os.environ.get("SLURM_JOB_ID", "")
        Path(self.started, f"sleeper-{self.i}").write_text(job)
        time.sleep(600)
        return self.i


class Leaf(Task):
    """A leaf of the shared-cache graph. Records which host ran it; with `hosts` > 1 it waits
    until that many hosts have started a leaf, so every runner provably takes part."""

    def __init__(self, events: str, i: int, hosts: int) -> None:
        self.events = events
        self.i = i
        self.hosts = hosts

    def run_task(self) -> int:
        start = time.time()
        started = Path(self.events).parent / "hosts"
        started.mkdir(parents=True, exist_ok=True)
        (started / host_name()).touch()
        deadline = time.monotonic() + 60
        while len(list(started.iterdir())) < self.hosts:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {sorted(os.listdir(started))} started a leaf")
            time.sleep(0.02)
        if os.environ.get("CLUSTER_TEST_BLOCK") == str(self.i):
            (Path(self.events).parent / f"blocked-{self.i}").touch()
            time.sleep(600)  # this "host" dies here
        write_span(self.events, f"Leaf {self.i}", start)
        return self.i


class Root(Task):
    """Sums the leaves."""

    def __init__(self, events: str, n: int, hosts: int) -> None:
        self.leaves = FutureList([Leaf(events, i, hosts) for i in range(n)])
        self.events = events

    def run_task(self) -> int:
        start = time.time()
        total = sum(self.leaves.get_result())
        write_span(self.events, "Root", start)
        return total
