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


def _processes_of(token: str) -> list[int]:
    """Pids of the processes started with TP_RUN=`token` in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if f"TP_RUN={token}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(120)
def test_a_killed_runners_workers_end_and_their_tasks_run_once(tmp_path: Path) -> None:
    """SIGKILL the runner alone (as the OOM killer does): its workers, which lead process
    groups of their own, end within seconds, and a second runner started at once never runs
    a task that the first one's workers finished or were still running."""
    cache, log = tmp_path / "cache", tmp_path / "log"
    log.mkdir()
    a = _runner(cache, 0, log, "process", env={"TP_RUN": "a", "TP_DELAY": "0.4"})
    try:
        deadline = time.monotonic() + 30
        while not list(cache.glob("shared_pipeline.Shared/results/*/claim")):
            assert time.monotonic() < deadline, "the first runner never claimed a task"
            time.sleep(0.02)
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        killed = time.monotonic()
        b = _runner(cache, 0, log, "process", env={"TP_RUN": "b"})
        while _processes_of("a") and time.monotonic() - killed < 10:
            time.sleep(0.05)
        gone = time.monotonic() - killed
        out, err = b.communicate(timeout=100)
    finally:
        for pid in _processes_of("a") + _processes_of("b"):
            os.kill(pid, signal.SIGKILL)
    assert gone < 5, f"the dead runner's processes lived {gone:.1f} s on"
    assert b.returncode == 0, err
    assert f"ANSWER {expected(0)}" in out
    ends = Counter(line.split()[0] for line in (log / "ends.log").read_text().splitlines())
    assert set(ends.values()) == {1}, f"tasks finished twice: {ends}"
    assert not list(cache.rglob("claim")), "claims left behind"
