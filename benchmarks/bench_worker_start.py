"""How fast a prefix command's worker reaches the first line of a task's code.

    python benchmarks/bench_worker_start.py [--tasks 20]

Runs TASKS tasks one at a time through the prefix ``bash -c 'echo $EPOCHREALTIME >> LOG;
exec "$@"'``: the prefix notes the time just before it becomes ``python -m taskproc.run.worker
JOB``, and each task's first line notes the time again. The difference is the worker's start:
the interpreter, taskproc's imports, reading the job, the claim, output capture. The peer, in
the same run, is the same interpreter reaching the first line of ``python -c`` (no taskproc),
through the same prefix. Also prints how many modules the worker had imported at that line,
and how many of them are taskproc's.

Figures are wall times on a shared machine: read the minimum and the median together, and the
ratio to the peer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PIPELINE = """
import sys, time

from taskproc import FutureList, Task

class Probe(Task):
    task_label = "probe"

    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> tuple[float, int, int]:
        now = time.time()
        return now, len(sys.modules), sum(m.startswith("taskproc") for m in sys.modules)

class Probes(Task):
    def __init__(self, n: int) -> None:
        self.probes = FutureList([Probe(i) for i in range(n)])

    def run_task(self) -> list[tuple[float, int, int]]:
        return self.probes.get_result()
"""


def stamping_prefix(log: Path) -> str:
    return f"bash -c 'echo $EPOCHREALTIME >> {log}; exec \"$@\"' bash"


def worker_starts(tmp: Path, tasks: int) -> tuple[list[float], int, int]:
    """Seconds from the prefix's exec to each task's first line; modules at that line."""
    sys.path.insert(0, str(tmp))
    (tmp / "startpipe.py").write_text(PIPELINE)
    log = tmp / "starts.log"
    from startpipe import Probes  # type: ignore[import-not-found]

    from taskproc import Graph, InlineExecutor

    with Graph(str(tmp / "cache")):
        spans, _ = Probes(tasks).run_graph(
            executor=InlineExecutor(),
            prefixes={"probe": stamping_prefix(log)},
            rate_limits={"probe": 1},  # one at a time: the log's order is the tasks' order
        )
    execs = [float(x) for x in log.read_text().split()]
    firsts = sorted(first for first, _, _ in spans)
    return [f - e for e, f in zip(execs, firsts, strict=True)], spans[0][1], spans[0][2]


def peer_starts(tmp: Path, runs: int) -> list[float]:
    """The same through `python -c` whose first line notes the time."""
    log = tmp / "peer.log"
    out = []
    for _ in range(runs):
        proc = subprocess.run(
            [
                "bash",
                "-c",
                f'echo $EPOCHREALTIME >> {log}; exec "$@"',
                "bash",
                sys.executable,
                "-c",
                "import time; print(time.time())",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(float(proc.stdout) - float(log.read_text().split()[-1]))
    return out


def ms(xs: list[float]) -> str:
    return f"min {min(xs) * 1000:.0f} ms, median {statistics.median(xs) * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args(argv)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        peer = peer_starts(Path(tmp), args.tasks)
        starts, modules, ours = worker_starts(Path(tmp), args.tasks)
    import taskproc

    print(
        textwrap.dedent(
            f"""\
            worker start to a task's first line, {args.tasks} tasks one at a time, load
            average {load} (python {sys.version.split()[0]}, taskproc from
            {Path(taskproc.__file__).parent}):
              python -m taskproc.run.worker JOB: {ms(starts)}
              python -c (the peer):              {ms(peer)}
              ratio of the medians: {statistics.median(starts) / statistics.median(peer):.1f}x
              modules imported at the first line: {modules} ({ours} of taskproc)"""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
