"""Several runners on one cache run each task exactly once and all get the right answer; a
runner that died holding a task does not block the others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from shared_pipeline import expected  # noqa: E402


def _runner(
    cache: Path, r: int, log: Path, exec_type: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    kwargs = json.dumps({"r": r, "log": str(log)})
    cmd = [
        sys.executable,
        "-m",
        "taskproc",
        str(HERE / "shared_pipeline.py"),
        "-o",
        str(cache),
        "-t",
        exec_type,
        "-n",
        "3",
        "--kwargs",
        kwargs,
        "--dont-show-progress",
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("runners", "exec_type"), [(2, "thread"), (4, "thread"), (3, "process")])
def test_each_task_runs_once(tmp_path: Path, runners: int, exec_type: str) -> None:
    cache, log = tmp_path / "cache", tmp_path / "log"
    log.mkdir()
    procs = [_runner(cache, r, log, exec_type) for r in range(runners)]
    outs = [p.communicate(timeout=240) for p in procs]
    for r, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, err
        assert f"ANSWER {expected(r)}" in out
    counts = Counter((log / "ran.log").read_text().splitlines())
    assert counts == Counter(
        [f"Shared {i}" for i in range(12)]
        + [f"Own {r} {i}" for r in range(runners) for i in range(12)]
    )
    assert not list(cache.rglob("claim")), "claims left behind"


@pytest.mark.timeout(120)
def test_dead_runner_is_taken_over(tmp_path: Path) -> None:
    cache, log = tmp_path / "cache", tmp_path / "log"
    log.mkdir()
    stuck = _runner(cache, 0, log, "process", env={"TP_GATE": str(tmp_path / "never")})
    deadline = time.monotonic() + 30
    while not list(cache.glob("shared_pipeline.Shared/results/*/claim")):
        assert time.monotonic() < deadline, "the first runner never claimed a task"
        time.sleep(0.02)
    os.killpg(stuck.pid, signal.SIGKILL)  # the runner and its workers die holding claims
    stuck.wait()
    start = time.monotonic()
    other = _runner(cache, 0, log, "process")
    out, err = other.communicate(timeout=100)
    assert other.returncode == 0, err
    assert f"ANSWER {expected(0)}" in out
    assert time.monotonic() - start < 30  # it did not wait for the stale claims to age
