"""Throughput of the cluster back ends: local process pool vs dask vs Slurm ``srun`` prefix.

    python benchmarks/bench_cluster.py [--jobs 200] [--limit 8] [--seconds 0.5] [--batch 25]

Runs JOBS independent short tasks (each waits SECONDS, standing in for remote work) with at most
LIMIT at once (``rate_limits={'*': LIMIT}``) on each back end, and prints a markdown table:

- *parallelism* = sum of the tasks' own durations / wall time (LIMIT is the ideal);
- *max at once* = the most task spans open at one instant, counted from the spans;
- *overhead/job* = wall * LIMIT / JOBS - SECONDS: the per-job cost at full parallelism;
- *runner threads* = the most threads the runner process had (executor threads, the prefix
  waiters, dask's client threads): waiting on srun takes one light thread per running job.

Back ends: ``process`` (a process pool of LIMIT workers), ``dask`` (a LocalCluster of LIMIT
single-threaded workers, through ``taskproc.dask_executor``), ``slurm`` (every task through
``srun --quiet -p cpu``, run from a one-worker pool: waiting on srun takes no executor slot),
``slurm-batch`` (the same with ``batch_sizes={'*': BATCH}``: one ``srun`` runs up to BATCH
tasks one after another, and the limit counts ``srun`` commands).
Slurm needs the cluster of ``.ci/cluster-up.sh`` (its env file is read); a back end that is not
available is reported as skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from taskproc import FutureList, Graph, Task
from taskproc.run import process_pool

ENV_FILE = Path(os.environ.get("TASKPROC_CLUSTER_ENV", "/tmp/taskproc-cluster.env"))


class Job(Task):
    """Waits `seconds`; returns its own (start, end) on this host's clock."""

    def __init__(self, i: int, seconds: float) -> None:
        self.i = i
        self.seconds = seconds

    def run_task(self) -> tuple[float, float]:
        start = time.time()
        time.sleep(self.seconds)
        return start, time.time()


class Sweep(Task):
    """The root: collects every job's span."""

    def __init__(self, n: int, seconds: float) -> None:
        self.jobs = FutureList([Job(i, seconds) for i in range(n)])

    def run_task(self) -> list[tuple[float, float]]:
        return list(self.jobs.get_result())


@dataclass(frozen=True, slots=True)
class Row:
    backend: str
    jobs: int
    limit: int
    seconds: float
    wall: float
    parallelism: float
    max_at_once: int
    peak_threads: int = 0
    note: str = ""

    def markdown(self) -> str:
        if self.note:
            head = f"| {self.backend} | {self.jobs} | {self.limit} | {self.seconds}"
            return f"{head} | {self.note} |||||"
        rate = self.jobs / self.wall
        overhead = self.wall * self.limit / self.jobs - self.seconds
        return (
            f"| {self.backend} | {self.jobs} | {self.limit} | {self.seconds} | {self.wall:.1f} "
            f"| {rate:.1f} | {self.parallelism:.2f} | {self.max_at_once} "
            f"| {overhead * 1000:.0f} ms | {self.peak_threads} |"
        )


HEADER = (
    "| back end | jobs | limit | job s | wall s | jobs/s | parallelism | max at once "
    "| overhead/job | runner threads |\n|---|---|---|---|---|---|---|---|---|---|"
)


def max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def measure(
    backend: str,
    make_executor: Callable[[], AbstractContextManager[Executor]],
    prefixes: dict[str, str],
    jobs: int,
    limit: int,
    seconds: float,
    batch: int | None = None,
) -> Row:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        with Graph(tmp), make_executor() as executor, ThreadSampler() as threads:
            root = Sweep(jobs, seconds)
            start = time.perf_counter()
            spans, stats = root.run_graph(
                executor=executor,
                prefixes=prefixes,
                rate_limits={"*": limit},
                batch_sizes={"*": batch} if batch else None,
            )
            wall = time.perf_counter() - start
    assert stats["stats"][Job.task_name] == jobs
    busy = sum(end - begin for begin, end in spans)
    return Row(backend, jobs, limit, seconds, wall, busy / wall, max_overlap(spans), threads.peak)


class ThreadSampler:
    """Samples the runner's thread count (its own sampling thread excluded) every 10 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, threading.active_count() - 1)

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load_cluster_env() -> None:
    if not ENV_FILE.is_file():
        return
    for line in ENV_FILE.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            os.environ.setdefault(name, value)


def slurm_ready() -> str:
    """Why Slurm cannot be benchmarked here ('' if it can)."""
    load_cluster_env()
    if shutil.which("srun") is None or not os.environ.get("SLURM_CONF"):
        return "skipped: no Slurm cluster (run .ci/cluster-up.sh)"
    probe = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=20)
    return "" if probe.returncode == 0 else f"skipped: {probe.stderr.strip()}"


def run(backends: list[str], jobs: int, limit: int, seconds: float, batch: int = 25) -> list[Row]:
    rows = []
    for backend in backends:
        skipped = ""
        if backend == "process":
            rows.append(measure(backend, lambda: process_pool(limit), {}, jobs, limit, seconds))
            continue
        if backend == "dask":
            try:
                import distributed  # noqa: F401

                from taskproc import dask_executor
            except ImportError:
                skipped = "skipped: dask.distributed is not installed"
            else:
                rows.append(
                    measure(
                        backend,
                        lambda: dask_executor(n_workers=limit),
                        {},
                        jobs,
                        limit,
                        seconds,
                    )
                )
                continue
        if backend in ("slurm", "slurm-batch"):
            skipped = slurm_ready()
            if not skipped:
                partition = os.environ.get("TASKPROC_SLURM_CPU_PARTITION", "cpu")
                prefixes = {Job.task_name: f"srun --quiet -p {partition}"}
                size = batch if backend == "slurm-batch" else None
                name = f"slurm srun, batches of {batch}" if size else "slurm srun"
                pool = lambda: process_pool(1)  # noqa: E731
                rows.append(measure(name, pool, prefixes, jobs, limit, seconds, size))
                continue
        rows.append(Row(backend, jobs, limit, seconds, 0, 0, 0, note=skipped or "unknown back end"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one job")
    parser.add_argument("--batch", type=int, default=25, help="batch size of slurm-batch")
    parser.add_argument("--backends", default="process,dask,slurm,slurm-batch")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead")
    args = parser.parse_args(argv)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    rows = run(args.backends.split(","), args.jobs, args.limit, args.seconds, args.batch)
    if args.json:
        print(json.dumps([dataclasses.asdict(row) for row in rows], indent=1))
        return 0
    print(
        f"{args.jobs} jobs of {args.seconds} s, at most {args.limit} at once, on {os.cpu_count()}"
        f" cores, load average {load} before the run (python {sys.version.split()[0]})\n"
    )
    print(HEADER)
    for row in rows:
        print(row.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
