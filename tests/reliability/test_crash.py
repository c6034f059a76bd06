"""Crash safety: SIGKILL the runner, or one of its workers, at random moments; the next run
(or the same run, for a worker) must finish with the right answer. 50 trials by default,
more with --stress."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from crash_pipeline import EXPECTED  # noqa: E402

TRIALS = {"runner-thread": 16, "runner-process": 16, "worker": 18}
STRESS = 10  # times more trials with --stress
# A runner killed between creating a claim file and writing it leaves an empty claim, taken for
# dead after `stale_after` unchanged seconds (60 by default): a few seconds here, so that such
# a trial does not wait a minute (the recovery is the same, sooner).
ENV = {**os.environ, "TASKPROC_STALE_AFTER": "3", "TASKPROC_HEARTBEAT_INTERVAL": "0.5"}


def _cmd(cache: Path, exec_type: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "taskproc",
        str(HERE / "crash_pipeline.py"),
        "-o",
        str(cache),
        "-t",
        exec_type,
        "-n",
        "2",
        "--dont-show-progress",
        "--dont-force-entrypoint",
    ]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _finish(cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cmd(cache, "thread"), capture_output=True, text=True, timeout=120, env=ENV
    )


def _trials(kind: str, request: pytest.FixtureRequest) -> int:
    return TRIALS[kind] * (STRESS if request.config.getoption("--stress") else 1)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("exec_type", ["thread", "process"])
def test_kill_the_runner(tmp_path: Path, exec_type: str, request: pytest.FixtureRequest) -> None:
    rng = random.Random(1234)
    failures = []
    for trial in range(_trials(f"runner-{exec_type}", request)):
        cache = tmp_path / f"c{trial}"
        # Kill once or twice at random moments, then run to the end.
        for _ in range(rng.choice([1, 1, 2])):
            proc = subprocess.Popen(
                _cmd(cache, exec_type),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=ENV,
            )
            time.sleep(rng.uniform(0.1, 0.65))
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers, like a power cut
            proc.wait()
        done = _finish(cache)
        if done.returncode != 0 or f"ANSWER {EXPECTED}" not in done.stdout:
            failures.append((trial, done.returncode, done.stdout[-500:], done.stderr[-2000:]))
    assert not failures, failures


@pytest.mark.timeout(900)
def test_kill_a_worker(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    rng = random.Random(99)
    failures = []
    killed = 0
    for trial in range(_trials("worker", request)):
        cache = tmp_path / f"w{trial}"
        proc = subprocess.Popen(
            _cmd(cache, "process"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        # Kill at a random point of progress: after k leaves have finished.
        k = rng.randint(1, 200)
        leaves = cache / "crash_pipeline.Leaf" / "results"
        while proc.poll() is None and len(list(leaves.glob("*/result.pkl.gz"))) < k:
            time.sleep(0.005)
        workers = _children(proc.pid)
        if workers:
            os.kill(rng.choice(workers), signal.SIGKILL)
            killed += 1
        out, err = proc.communicate(timeout=120)
        # The run itself recovers: the killed worker's task is retried.
        if proc.returncode != 0 or f"ANSWER {EXPECTED}" not in out:
            failures.append((trial, proc.returncode, out[-500:], err[-2000:]))
    assert not failures, failures
    assert killed >= _trials("worker", request) * 2 // 3  # the trials really killed workers
