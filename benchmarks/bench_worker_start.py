"""How fast a prefix command's worker reaches the first line of a task's code.

    python benchmarks/bench_worker_start.py [--tasks 20] [--as-is]

Runs TASKS tasks one at a time through the prefix ``bash -c 'echo $EPOCHREALTIME >> LOG;
exec "$@"'``: the prefix notes the time just before it becomes ``python -m taskproc.run.worker
JOB``, and each task's first line notes the time again. The difference is the worker's start:
the interpreter, taskproc's imports, reading the job, the claim, output capture. The peer, in
the same run, is the same interpreter reaching the first line of ``python -c`` (no taskproc),
through the same prefix. Also prints the CPU time each process had used at that line (steadier
than wall times on a loaded machine), how many modules the worker had imported, and how many
of them are taskproc's.

taskproc's modules are compiled to bytecode first, as installing a package does: a source
checkout under ``PYTHONDONTWRITEBYTECODE=1`` has no ``.pyc`` files, and every worker would
compile taskproc again (``--as-is`` measures that).

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

    def run_task(self) -> tuple[float, float, int, int]:
        now, cpu = time.time(), time.process_time()
        return now, cpu, len(sys.modules), sum(m.startswith("taskproc") for m in sys.modules)

class Probes(Task):
    def __init__(self, n: int) -> None:
        self.probes = FutureList([Probe(i) for i in range(n)])

    def run_task(self) -> list[tuple[float, float, int, int]]:
        return self.probes.get_result()
"""


def stamping_prefix(log: Path) -> str:
    return f"bash -c 'echo $EPOCHREALTIME >> {log}; exec \"$@\"' bash"


def worker_starts(tmp: Path, tasks: int) -> tuple[list[float], list[float], int, int]:
    """Seconds from the prefix's exec to each task's first line, CPU seconds at that line;
    modules at that line."""
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
    firsts = sorted(first for first, _, _, _ in spans)
    cpus = [cpu for _, cpu, _, _ in spans]
    starts = [f - e for e, f in zip(execs, firsts, strict=True)]
    return starts, cpus, spans[0][2], spans[0][3]


def peer_starts(tmp: Path, runs: int) -> tuple[list[float], list[float]]:
    """The same through `python -c` whose first line notes the time."""
    log = tmp / "peer.log"
    out, cpus = [], []
    for _ in range(runs):
        proc = subprocess.run(
            [
                "bash",
                "-c",
                f'echo $EPOCHREALTIME >> {log}; exec "$@"',
                "bash",
                sys.executable,
                "-c",
                "import time; print(time.time(), time.process_time())",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        now, cpu = map(float, proc.stdout.split())
        out.append(now - float(log.read_text().split()[-1]))
        cpus.append(cpu)
    return out, cpus


def compile_taskproc() -> None:
    """Compile taskproc's modules to bytecode where it is missing or stale, as installing the
    package does (`py_compile` writes it whatever PYTHONDONTWRITEBYTECODE says)."""
    import compileall

    import taskproc

    compileall.compile_dir(Path(taskproc.__file__).parent, quiet=2)


def ms(xs: list[float]) -> str:
    return f"min {min(xs) * 1000:.0f} ms, median {statistics.median(xs) * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument(
        "--as-is", action="store_true", help="do not compile taskproc's modules to bytecode first"
    )
    args = parser.parse_args(argv)
    if not args.as_is:
        compile_taskproc()
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        peer, peer_cpu = peer_starts(Path(tmp), args.tasks)
        starts, cpus, modules, ours = worker_starts(Path(tmp), args.tasks)
    import taskproc

    bytecode = "as it is" if args.as_is else "compiled first"

    print(
        textwrap.dedent(
            f"""\
            worker start to a task's first line, {args.tasks} tasks one at a time, load
            average {load} (python {sys.version.split()[0]}, taskproc from
            {Path(taskproc.__file__).parent}, its bytecode {bytecode}):
              python -m taskproc.run.worker JOB: {ms(starts)}; CPU {ms(cpus)}
              python -c (the peer):              {ms(peer)}; CPU {ms(peer_cpu)}
              ratio of the medians: {statistics.median(starts) / statistics.median(peer):.1f}x
              modules imported at the first line: {modules} ({ours} of taskproc)"""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
