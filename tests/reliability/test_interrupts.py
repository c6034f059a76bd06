"""Ctrl-C and SIGTERM stop running work (workers, prefix commands and what tasks started),
keep finished results, leave no claim, and the command exits with 130 / 143."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("mode", "how", "code"),
    [
        ("process", "SIGINT", 130),
        ("process", "SIGTERM", 143),
        ("process", "group-SIGINT", 130),
        ("dask", "SIGINT", 130),  # a LocalCluster that taskproc starts (-t dask)
        ("dask", "SIGTERM", 143),
        ("dask", "group-SIGINT", 130),
        ("prefix", "SIGINT", 130),
        ("prefix", "SIGTERM", 143),
        ("batch", "SIGINT", 130),
        ("batch", "SIGTERM", 143),
        ("thread", "SIGINT", 130),  # tasks in the runner's process: their children end too
        ("thread", "SIGTERM", 143),
        ("thread", "group-SIGINT", 130),
        ("local", "SIGTERM", 143),
        ("local", "SIGINT", 130),
    ],
)
def test_interrupt_stops_everything(tmp_path: Path, mode: str, how: str, code: int) -> None:
    if mode == "dask":
        pytest.importorskip("distributed")
    cache, log = tmp_path / "cache", tmp_path / "log"
    log.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "taskproc",
        str(HERE / "interrupt_pipeline.py"),
        "-o",
        str(cache),
        "-n",
        "2",
        "--kwargs",
        json.dumps({"log": str(log)}),
        "--dont-show-progress",
    ]
    if mode == "prefix":
        cmd += ["--prefixes", json.dumps({"sleepy": "env IN_PREFIX=1"})]
    if mode in ("dask", "thread", "local"):
        cmd += ["-t", mode]
    sleepers = 2
    if mode == "local":  # one task at a time
        sleepers = 1
        cmd[cmd.index("--kwargs") + 1] = json.dumps({"log": str(log), "n": 1})
    if mode == "batch":  # two commands of two sleepers each: the second of each never starts
        cmd[cmd.index("--kwargs") + 1] = json.dumps({"log": str(log), "n": 4})
        cmd += ["--prefixes", json.dumps({"sleepy": "env IN_PREFIX=1"})]
        cmd += ["--batch-sizes", json.dumps({"sleepy": 2}), "--rate-limits", '{"sleepy": 2}']
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while len(list(log.glob("pids.*"))) < sleepers:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    pids = [int(p) for f in log.glob("pids.*") for p in f.read_text().split()]
    assert all(_alive(p) for p in pids)
    if how == "group-SIGINT":  # what a terminal does on Ctrl-C
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(getattr(signal, how))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)], "processes left running"
    assert not list(cache.rglob("claim")), "claims left behind"
    assert not list((cache / ".taskproc" / "runners").iterdir()), "heartbeat left behind"
    jobs = list(cache.rglob("job.pkl"))  # kept for the interrupted tasks only
    assert len(jobs) <= (2 if mode in ("prefix", "batch") else 0), jobs
    # finished results are kept: rerunning runs only the sleepers (and Main)
    quick = list(cache.glob("interrupt_pipeline.Quick/results/*/result.pkl.gz"))
    assert len(quick) == 5


@pytest.mark.timeout(120)
def test_a_killed_runners_dask_workers_end_with_what_their_tasks_started(tmp_path: Path) -> None:
    """SIGKILL the runner alone: the workers of the LocalCluster it started (their nannies
    died with it) end their process groups, the tasks' children included, within seconds."""
    pytest.importorskip("distributed")
    log = tmp_path / "log"
    log.mkdir()
    cmd = [sys.executable, "-m", "taskproc", str(HERE / "interrupt_pipeline.py")]
    cmd += ["-o", str(tmp_path / "cache"), "-n", "2", "-t", "dask", "--dont-show-progress"]
    cmd += ["--kwargs", json.dumps({"log": str(log)})]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(list(log.glob("pids.*"))) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        pids = [int(p) for f in log.glob("pids.*") for p in f.read_text().split()]
        proc.kill()
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], "processes left running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start_stubborn(tmp_path: Path, n: int) -> tuple[subprocess.Popen[str], Path, list[int]]:
    """A run of `n` prefix jobs that ignore SIGTERM (the prefix, the worker and its child),
    once all of them are running; with the pids of their workers and children."""
    cache, log = tmp_path / "cache", tmp_path / "log"
    log.mkdir()
    stubborn_prefix = 'sh -c \'trap "" TERM; "$@"\' sh'
    cmd = [
        sys.executable,
        "-m",
        "taskproc",
        str(HERE / "interrupt_pipeline.py"),
        "-o",
        str(cache),
        "--kwargs",
        json.dumps({"log": str(log), "n": n, "stubborn": True}),
        "--prefixes",
        json.dumps({"sleepy": stubborn_prefix}),
        "--dont-show-progress",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 90
    while len(list(log.glob("pids.*"))) < n:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(proc.communicate())
        time.sleep(0.05)
    pids = [int(p) for f in log.glob("pids.*") for p in f.read_text().split()]
    return proc, cache, pids


def _nothing_left(proc: subprocess.Popen[str], cache: Path, pids: list[int]) -> None:
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert not [p for p in pids if _alive(p)], "processes left running"
    assert not list(cache.rglob("claim")), "claims left behind"


@pytest.mark.timeout(180)
def test_stubborn_prefix_jobs_are_stopped_together(tmp_path: Path) -> None:
    """12 prefix jobs that ignore SIGTERM: all get SIGTERM, one wait of the grace period for
    all of them, then SIGKILL - seconds, not 12 grace periods one after another."""
    proc, cache, pids = _start_stubborn(tmp_path, 12)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    took = time.monotonic() - start
    _nothing_left(proc, cache, pids)
    assert took < 12, f"stopping 12 jobs took {took:.1f} s"


@pytest.mark.timeout(180)
def test_a_second_ctrl_c_kills_at_once_and_leaves_nothing(tmp_path: Path) -> None:
    proc, cache, pids = _start_stubborn(tmp_path, 6)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # within the grace period of the first: the second escalates
    proc.send_signal(signal.SIGINT)
    _nothing_left(proc, cache, pids)
