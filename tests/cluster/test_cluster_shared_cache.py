"""Runners on different hosts sharing one cache folder.

Two "hosts" on one machine: runner processes that claim tasks under different host names,
either through ``TASKPROC_HOSTNAME`` or for real, each in its own UTS namespace
(``unshare --uts`` + ``hostname``). A runner can then not see whether the other's process is
alive, only whether its heartbeat goes on, as with two machines on a network file system.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cluster_tasks import read_spans

pytestmark = pytest.mark.cluster

RUNNER = Path(__file__).with_name("shared_runner.py")
N_LEAVES = 8


def uts_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("hostname") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--uts", "hostname", "probe"], capture_output=True, timeout=20, check=False
    )
    return probe.returncode == 0


def start_runner(
    host: str,
    mode: str,
    cache: Path,
    events: Path,
    hosts: int,
    env: dict[str, str],
) -> subprocess.Popen[str]:
    """Start shared_runner.py as host `host`, in its own session (so it can be killed whole)."""
    env = dict(env)
    cmd = [sys.executable, str(RUNNER), str(cache), str(events), str(N_LEAVES), str(hosts)]
    if mode == "uts":
        env.pop("TASKPROC_HOSTNAME", None)
        cmd = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *cmd]
    else:
        env["TASKPROC_HOSTNAME"] = host
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(runner: subprocess.Popen[str], timeout: float = 120) -> dict[str, object]:
    out, err = runner.communicate(timeout=timeout)
    assert runner.returncode == 0, err
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def kill_all(*runners: subprocess.Popen[str]) -> None:
    for runner in runners:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.communicate()


@pytest.fixture(params=["env", "uts"], ids=["TASKPROC_HOSTNAME", "unshare-uts"])
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "uts" and not uts_available():
        pytest.skip("cannot make UTS namespaces here (unshare --uts needs root)")
    return str(request.param)


def test_two_hosts_split_one_graph_and_run_no_task_twice(
    mode: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    cache, events = tmp_path / "cache", tmp_path / "events"
    # Each leaf waits until both hosts have started a leaf, so both provably take part.
    runners = [
        start_runner(host, mode, cache, events, 2, subprocess_env) for host in ("alpha", "beta")
    ]
    try:
        outputs = [finish(r) for r in runners]
    finally:
        kill_all(*runners)
    expected = sum(range(N_LEAVES))
    assert [o["result"] for o in outputs] == [expected, expected]
    spans = read_spans(events)
    runs = Counter(s.task for s in spans)
    assert len(runs) == N_LEAVES + 1 and set(runs.values()) == {1}, runs  # each task once
    leaves_by_host = Counter(s.host for s in spans if "Leaf" in s.task)
    assert set(leaves_by_host) == {"alpha", "beta"}, leaves_by_host
    executed = [sum(o["stats"].values()) for o in outputs]  # type: ignore[attr-defined]
    assert sum(executed) == N_LEAVES + 1


def test_dead_host_is_taken_over_after_its_heartbeat_stops(
    mode: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    cache, events = tmp_path / "cache", tmp_path / "events"
    stale_after = 3.0
    env = {
        **subprocess_env,
        "TASKPROC_HEARTBEAT_INTERVAL": "0.5",
        "TASKPROC_STALE_AFTER": str(stale_after),
        "TASKPROC_POLL_INTERVAL": "0.1",
    }
    # alpha blocks in leaf 0 (as if its host hung there); beta then waits for that leaf.
    alpha = start_runner("alpha", mode, cache, events, 1, {**env, "CLUSTER_TEST_BLOCK": "0"})
    beta: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "blocked-0").exists():
            assert alpha.poll() is None, alpha.communicate()
            assert time.monotonic() < deadline, "alpha did not reach leaf 0"
            time.sleep(0.05)
        beta = start_runner("beta", mode, cache, events, 1, env)
        runners_dir = cache / ".taskproc" / "runners"
        while len(list(runners_dir.glob("*.json"))) < 2:  # beta is up and beating
            assert beta.poll() is None, beta.communicate()
            assert time.monotonic() < deadline, "beta did not start"
            time.sleep(0.05)
        assert alpha.poll() is None  # alpha is alive and holds leaf 0: beta must wait
        os.killpg(alpha.pid, signal.SIGKILL)  # the host dies: no more heartbeats
        killed_at = time.time()
        alpha.communicate()
        output = finish(beta)
    finally:
        kill_all(alpha, *([beta] if beta else []))
    assert output["result"] == sum(range(N_LEAVES))
    spans = read_spans(events)
    runs = Counter(s.task for s in spans)
    assert set(runs.values()) == {1}, runs  # no finished task ran twice
    (leaf0,) = [s for s in spans if s.task == "Leaf 0"]
    assert leaf0.host == "beta"  # taken over...
    # ...only once the heartbeat had been still for stale_after (less one beat interval).
    assert leaf0.start >= killed_at + stale_after - 0.5 - 0.3, leaf0.start - killed_at
