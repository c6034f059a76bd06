"""Runners and workers on several machines sharing one bucket, against SeaweedFS.

"Machines" here are processes with working copies and host names of their own
(``TASKPROC_WORKING_COPY``, ``TASKPROC_HOSTNAME``): they share nothing but the bucket, so
liveness goes through heartbeats, as between real machines. The pipelines are those of the
folder cache's reliability tests (tests/reliability/).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent / "reliability"
sys.path.insert(0, str(HERE))
from crash_pipeline import EXPECTED  # noqa: E402
from shared_pipeline import expected  # noqa: E402

pytestmark = pytest.mark.s3


def machine(tmp_path: Path, name: str, s3_server: Any, **extra: str) -> dict[str, str]:
    """The environment of a process on its own "machine"."""
    return {
        **os.environ,
        **s3_server.env(),
        "TASKPROC_WORKING_COPY": str(tmp_path / f"wc-{name}"),
        "TASKPROC_HOSTNAME": f"host-{name}",
        "TASKPROC_HEARTBEAT_INTERVAL": "0.5",
        "TASKPROC_STALE_AFTER": "5",
        **extra,
    }


def runner(
    url: str, r: int, log: Path, exec_type: str, env: dict[str, str]
) -> subprocess.Popen[str]:
    kwargs = json.dumps({"r": r, "log": str(log)})
    cmd = [sys.executable, "-m", "taskproc", str(HERE / "shared_pipeline.py"), "-o", url]
    cmd += ["-t", exec_type, "-n", "3", "--kwargs", kwargs, "--dont-show-progress"]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip


@pytest.mark.timeout(600)
def test_two_runners_on_two_machines_run_each_task_once(
    bucket: Any, s3_server: Any, tmp_path: Path
) -> None:
    """Two runners in two processes with different working copies run one graph on one
    bucket, 5 times over (a new prefix each): right answers, no task run twice."""
    for trial in range(5):
        url = f"{bucket.url}/trial{trial}"
        log = tmp_path / f"log{trial}"
        log.mkdir()
        procs = [
            runner(url, 0, log, "thread", machine(tmp_path, f"a{trial}", s3_server)),
            runner(url, 1, log, "process", machine(tmp_path, f"b{trial}", s3_server)),
        ]
        try:
            outs = [p.communicate(timeout=240) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        for r, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
            assert p.returncode == 0, err
            assert f"ANSWER {expected(r)}" in out, (out, err)
        counts = Counter((log / "ran.log").read_text().splitlines())
        once = [f"Shared {i}" for i in range(12)]
        once += [f"Own {r} {i}" for r in range(2) for i in range(12)]
        assert counts == Counter(once), f"trial {trial}: {counts.most_common(3)}"


def _crash_cmd(url: str, exec_type: str) -> list[str]:
    return [
        sys.executable, "-m", "taskproc", str(HERE / "crash_pipeline.py"), "-o", url,
        "-t", exec_type, "-n", "2", "--dont-show-progress", "--dont-force-entrypoint",
    ]  # fmt: skip


@pytest.mark.timeout(1800)
def test_kill_the_runner_at_random_moments_then_rerun(
    bucket: Any, s3_server: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """kill -9 of a runner (with its workers) at random moments, then a rerun: every result
    it reads is whole and right (the pipeline checks each leaf's payload), and its answer too.
    20 kills with --stress (the issue's figure), 6 by default."""
    kills = 20 if request.config.getoption("--stress") else 6
    rng = random.Random(2121)
    env = machine(tmp_path, "crash", s3_server)
    # How long a whole run takes here now, from start-up to its last commit, per executor:
    # the kills fall anywhere in it.
    took = {}
    for exec_type in ("thread", "process"):
        started = time.monotonic()
        whole = subprocess.run(
            _crash_cmd(f"{bucket.url}/timing-{exec_type}", exec_type),
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert whole.returncode == 0, whole.stderr
        took[exec_type] = time.monotonic() - started
    failures = []
    finished_first = 0  # runs that were done before their kill (a kill that hit nothing)
    for trial in range(kills):
        url = f"{bucket.url}/crash{trial}"
        exec_type = ("thread", "process")[trial % 2]
        printed = tmp_path / f"killed{trial}.out"
        with printed.open("w") as out:
            proc = subprocess.Popen(
                _crash_cmd(url, exec_type), env=env, start_new_session=True,
                stdout=out, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        time.sleep(rng.uniform(0.1, 0.9) * took[exec_type])
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers, like a power cut
        proc.wait()
        finished_first += "ANSWER" in printed.read_text()
        done = subprocess.run(
            _crash_cmd(url, "thread"), env=env, capture_output=True, text=True, timeout=300
        )
        # A torn result would be found by its checksums and recomputed with a warning: none.
        torn = "unreadable" in done.stderr or "corrupt" in done.stderr
        if done.returncode != 0 or f"ANSWER {EXPECTED}" not in done.stdout or torn:
            failures.append((trial, exec_type, done.returncode, done.stderr[-1500:]))
    assert not failures, failures
    assert finished_first <= kills // 2, f"{finished_first} of {kills} runs ended before the kill"


DASK_PIPE = """
import os, socket
from taskproc import Task

class Piece(Task):
    def __init__(self, i: int):
        self.i = i

    def run_task(self):
        (self.task_directory / "piece.txt").write_text(f"piece {self.i}")
        print(f"piece {self.i} on {os.environ['TASKPROC_WORKING_COPY']}")
        return self.i * self.i

class Main(Task):
    def __init__(self, n: int = 8):
        self.pieces = [Piece(i) for i in range(n)]

    def run_task(self):
        texts = [(p.task_directory / "piece.txt").read_text() for p in self.pieces]
        return sum(p.get_result() for p in self.pieces), texts
"""

DASK_RUNNER = """
import sys
from distributed import Client, LocalCluster
from taskproc import Graph
import dask_pipe

if __name__ == "__main__":
    url, worker_copies = sys.argv[1], sys.argv[2]
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        env={"TASKPROC_WORKING_COPY": worker_copies},
    ) as cluster, Client(cluster) as client:
        with Graph(url):
            (total, texts), stats = dask_pipe.Main().run_graph(executor=client.get_executor())
        print("RESULT", total, len(texts), texts[3], stats["stats"])
"""


@pytest.mark.timeout(600)
def test_a_dask_cluster_without_a_folder_in_common_computes_into_the_bucket(
    bucket: Any, s3_server: Any, tmp_path: Path
) -> None:
    """The workers of a dask LocalCluster get working copies of their own: they read their
    inputs from the bucket and commit their results to it themselves; the runner finds
    their results, output and task folders there."""
    pytest.importorskip("distributed")
    (tmp_path / "dask_pipe.py").write_text(DASK_PIPE)
    (tmp_path / "run_dask.py").write_text(DASK_RUNNER)
    workers, runner_copy = tmp_path / "worker-copies", tmp_path / "runner-copy"
    env = {**machine(tmp_path, "runner", s3_server), "TASKPROC_WORKING_COPY": str(runner_copy)}
    url = f"{bucket.url}/dask"
    proc = subprocess.run(
        [sys.executable, "run_dask.py", url, str(workers)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT 140 8 piece 3 {'dask_pipe.Piece': 8, 'dask_pipe.Main': 1}" in proc.stdout
    # The pieces were computed (and their results written) in the workers' copies only.
    worker_results = list(workers.rglob("results/dask_pipe.Piece/*.pkl.gz"))
    assert len(worker_results) == 8
    assert not list(runner_copy.rglob("results/dask_pipe.Piece/*.pkl.gz"))
    from taskproc.store import BucketStore

    store = BucketStore(url, working_copy=tmp_path / "reader")
    (found,) = [f for f in store.scan(["dask_pipe.Piece"]) if f.record is not None][:1]
    out = store.read_output(found.location, "stdout").decode()
    assert out.startswith("piece ") and str(workers) in out
