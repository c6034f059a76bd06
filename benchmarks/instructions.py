"""Instructions per task, this checkout against another: an A/B that a busy machine cannot blur.

    python benchmarks/instructions.py --against /path/to/other/checkout [--fanin 2000]
        [--chain 1000]

Timings on a shared 2-core machine move by 2-3x from one minute to the next; the number of
instructions a run executes does not (valgrind's callgrind counts them, whatever else the
machine does). Each case runs in a new process under ``valgrind --tool=callgrind``: a fresh
fan-in of N tasks on 2 threads, its cached rerun, and a chain of M tasks; a one-task fan-in
measures what is not per task (interpreter start, imports), which is taken off. Both
checkouts' modules are compiled first (as an installed package is), so neither pays for
compiling. Prints instructions per task for each checkout and their ratio.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN = """
import sys
repo, case, n, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path[:0] = [repo, repo + "/benchmarks/workloads"]
from concurrent.futures import ThreadPoolExecutor
from tp_tasks import ChainInit, FanIn
from taskproc import Graph
with Graph(work + "/cache"):
    root = ChainInit(n) if case == "chain" else FanIn(n)
    root.run_graph(executor=ThreadPoolExecutor(2), show_progress=False, detect_source_change=False)
"""


def instructions(repo: Path, case: str, n: int, work: Path) -> int:
    """Instructions of one run of `case` with `n` tasks, from `repo`, caching into `work`."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
        + ["-c", RUN, str(repo), case, str(n), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"{repo} {case} {n}: {proc.stderr[-2000:]}")
    return int(found.group(1))


def per_task(repo: Path, fanin: int, chain: int) -> dict[str, float]:
    """Instructions per task of each case, start-up taken off."""
    compileall.compile_dir(str(repo / "taskproc"), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="taskproc-instr-"))
    try:
        fixed = instructions(repo, "fanin", 1, work / "one")
        fresh = instructions(repo, "fanin", fanin, work / "fan")
        cached = instructions(repo, "fanin", fanin, work / "fan")
        chained = instructions(repo, "chain", chain, work / "chain")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        f"fresh fan-in {fanin}, 2 threads": (fresh - fixed) / fanin,
        f"cached rerun {fanin}": (cached - fixed) / fanin,
        f"chain {chain}, 2 threads": (chained - fixed) / chain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, required=True, help="the other checkout (A)")
    parser.add_argument("--fanin", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind: apt-get install -y valgrind")
    here = HERE.parent
    a = per_task(args.against.resolve(), args.fanin, args.chain)
    b = per_task(here, args.fanin, args.chain)
    print(f"{'case':32} {'A':>12} {'B (this)':>12} {'B/A':>6}   instructions per task")
    for case in a:
        print(f"{case:32} {a[case]:12,.0f} {b[case]:12,.0f} {b[case] / a[case]:6.3f}")


if __name__ == "__main__":
    main()
