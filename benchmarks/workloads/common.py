"""Helpers shared by every workload script.

Standard library only: the same file runs under our interpreter and under each peer's
virtual environment. A workload script is started by the runner as

    python wl_<system>.py WORKLOAD --params JSON --work DIR

and reports one line ``BENCH_RESULT {json}`` on stdout; anything else it prints is ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_MARKER = "BENCH_RESULT "

# A 16-letter alphabet gives data that gzip halves, like text or small integers would.
_COMPRESSIBLE_TABLE = bytes(b"abcdefghijklmnop"[i % 16] for i in range(256))
_PAYLOAD_CHUNK = 1 << 22


@dataclass(frozen=True)
class Invocation:
    """What the runner asked a workload script to do."""

    workload: str
    params: Mapping[str, Any]
    work: Path


def parse_invocation() -> Invocation:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workload")
    parser.add_argument("--params", type=json.loads, default={})
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    return Invocation(args.workload, args.params, args.work.resolve())


def dispatch(table: Mapping[str, Callable[[Invocation], dict[str, Any]]]) -> None:
    """Run the workload named on the command line and emit its result line."""
    inv = parse_invocation()
    if inv.workload not in table:
        raise SystemExit(f"unknown workload {inv.workload!r}; known: {sorted(table)}")
    inv.work.mkdir(parents=True, exist_ok=True)
    fields = table[inv.workload](inv)
    emit({**fields, "peak_rss": peak_rss_bytes()})


def emit(fields: Mapping[str, Any]) -> None:
    print(RESULT_MARKER + json.dumps(dict(fields)), flush=True)


def check(condition: bool, message: str) -> None:
    """Fail the measurement (not an assert: these checks must survive ``python -O``)."""
    if not condition:
        raise RuntimeError(message)


def self_maxrss_bytes() -> int:
    """Peak RSS of this process's own memory image (``VmHWM``).

    Not ``RUSAGE_SELF``: Linux carries the parent's peak into a child's ``ru_maxrss`` across
    ``exec``, so a big runner would inflate every measurement it starts.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def children_maxrss_bytes() -> int:
    """Peak RSS of the largest child reaped so far (e.g. a shut-down process pool's workers)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def peak_rss_bytes() -> int:
    """Peak RSS of the largest process of this measurement: this one or a reaped child."""
    return max(self_maxrss_bytes(), children_maxrss_bytes())


def make_payload(nbytes: int, kind: str) -> bytearray:
    """``nbytes`` of random or compressible data, built in place so the peak stays ~1x."""
    buf = bytearray(nbytes)
    view = memoryview(buf)
    for start in range(0, nbytes, _PAYLOAD_CHUNK):
        stop = min(start + _PAYLOAD_CHUNK, nbytes)
        chunk = os.urandom(stop - start)
        if kind == "compressible":
            chunk = chunk.translate(_COMPRESSIBLE_TABLE)
        elif kind != "random":
            raise ValueError(f"kind must be 'random' or 'compressible', got {kind!r}")
        view[start:stop] = chunk
    return buf


def write_stamp(path: str) -> None:
    """Record when a task's computation ended, so the runner can time the save after it."""
    Path(path).write_text(repr(time.time()))


def read_stamp(path: Path) -> float:
    return float(path.read_text())


def burn_cpu(seconds: float) -> int:
    """Spin for ``seconds`` of this process's CPU time; returns the loop count."""
    end = time.process_time() + seconds
    count = 0
    while time.process_time() < end:
        for _ in range(1000):
            count += 1
    return count


def gzip_test(path: Path) -> bool:
    """``gzip -t``, the check a user would run on a result file."""
    return subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0


def largest_file(root: Path, name: str) -> Path:
    files = [p for p in root.rglob(name) if p.is_file()]
    check(bool(files), f"no {name} under {root}")
    return max(files, key=lambda p: p.stat().st_size)


def save_timing(cache: Path, stamp: Path) -> dict[str, Any]:
    """Save time of a single big result: from the end of its task to the file's last write."""
    result = largest_file(cache, "result.pkl.gz")
    stat = result.stat()
    return {
        "save_s": stat.st_mtime - read_stamp(stamp),
        "file_bytes": stat.st_size,
        "gzip_ok": gzip_test(result),
    }


def count_choose_tasks(n: int, k: int) -> int:
    """Number of distinct ``Choose`` tasks under ``Choose(n, k)`` (Const leaves excluded)."""
    seen: set[tuple[int, int]] = set()
    stack = [(n, k)]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        nn, kk = node
        if 0 < kk < nn:
            stack.extend(((nn - 1, kk - 1), (nn - 1, kk)))
    return len(seen)


def choose_value(n: int, k: int) -> int:
    """What the seed README's ``Choose(n, k)`` computes: the binomial coefficient."""
    from math import comb

    return comb(n, k)
