"""Ctrl-C and SIGTERM stop running work (workers, prefix commands and what tasks started),
keep finished results, leave no claim, and the command exits with 130 / 143."""

from __future__ import annotations

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
        ("prefix", "SIGINT", 130),
        ("prefix", "SIGTERM", 143),
    ],
)
def test_interrupt_stops_everything(tmp_path: Path, mode: str, how: str, code: int) -> None:
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
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while len(list(log.glob("pids.*"))) < 2:
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
    # finished results are kept: rerunning runs only the sleepers (and Main)
    quick = list(cache.glob("interrupt_pipeline.Quick/results/*/result.pkl.gz"))
    assert len(quick) == 5
