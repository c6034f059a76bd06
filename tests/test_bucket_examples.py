"""The quick start and every example, run on a bucket (``-o s3://...``) as their docstrings tell
a user, against SeaweedFS. The checks are tests/test_examples.py's, read through the bucket
(`taskproc status`, the store) instead of a folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_examples import (
    EXAMPLES,
    SPAN_SCRIPT,
    TASKPROC,
    load_example,
    max_overlap,
    read_spans,
    summary,
    wait_for,
    write_urls,
)

from taskproc import Graph
from taskproc.store import BucketStore

pytestmark = pytest.mark.s3


def run(argv: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    if ok and proc.returncode != 0:
        pytest.fail(f"{argv} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def taskproc(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run([*TASKPROC, *args], cwd, ok)


def status(url: str, cwd: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(taskproc("status", url, "--json", cwd=cwd).stdout)
    return report


def count(report: dict[str, Any], task_name: str, state: str) -> int:
    counts: dict[str, int] = report["task_names"].get(task_name, {})
    return counts.get(state, 0)


def outputs(store: BucketStore, task_name: str, stream: str = "stdout") -> list[str]:
    """What each task of `task_name` with a result printed on `stream`."""
    found = [f for f in store.scan([task_name]) if f.record is not None]
    return sorted(store.read_output(f.location, stream).decode() for f in found)


def args_of(store: BucketStore, task_name: str) -> list[dict[str, Any]]:
    found = [f for f in store.scan([task_name]) if f.record is not None]
    return [json.loads(store.read_args(f.location) or "null") for f in found]


@pytest.fixture
def url(bucket_store: BucketStore) -> str:
    return bucket_store.root


QUICKSTART = re.search(
    r"```python\n# file: quickstart.py\n(.*?)```",
    (EXAMPLES.parent / "README.md").read_text(),
    re.DOTALL,
)


def test_quickstart(url: str, tmp_path: Path) -> None:
    assert QUICKSTART is not None, "README.md has no quick start"
    code = QUICKSTART.group(1).replace('Graph("./cache")', f"Graph({url!r})")
    assert url in code
    (tmp_path / "quickstart.py").write_text(code + "\nprint('ANSWER', ans)\n")
    first = run([sys.executable, "quickstart.py"], tmp_path)
    assert "ANSWER 20" in first.stdout
    again = run([sys.executable, "quickstart.py"], tmp_path)
    assert "ANSWER 20" in again.stdout


def test_binomial(url: str, tmp_path: Path) -> None:
    file = str(EXAMPLES / "binomial.py")
    first = taskproc(file, "-o", url, cwd=tmp_path)
    assert first.stdout == "C(6, 3) = 20\n"
    assert summary(first) == {"done": 16, "cached": 0, "failed": 0}
    again = taskproc(file, "-o", url, cwd=tmp_path)
    assert summary(again) == {"done": 1, "cached": 15, "failed": 0}
    bigger = taskproc(file, "-o", url, "--kwargs", '{"n": 8, "k": 4}', cwd=tmp_path)
    assert bigger.stdout == "C(8, 4) = 70\n" and summary(bigger)["cached"] == 15
    script = run([sys.executable, file, "-o", url, "-t", "process"], tmp_path)
    assert script.stdout == "C(6, 3) = 20\n"
    assert summary(script) == {"done": 1, "cached": 15, "failed": 0}


def test_ml_pipeline(url: str, bucket_store: BucketStore, tmp_path: Path) -> None:
    file = str(EXAMPLES / "ml_pipeline.py")
    params = {"seeds": [0, 1, 2], "size": 400, "epochs": 2}
    first = taskproc(file, "-o", url, "--kwargs", json.dumps(params), cwd=tmp_path)
    accuracy = dict(re.findall(r"seed (\d+): test accuracy ([0-9.]+)", first.stdout))
    assert sorted(accuracy) == ["0", "1", "2"] and "best: seed" in first.stdout
    # Each model file went into its training task's folder, through the prefix, and is in
    # the bucket as that task's archive: another machine reads it.
    example = load_example("ml_pipeline")
    other = BucketStore(url, working_copy=tmp_path / "other machine")
    with Graph(url, store=other) as graph:
        example.Main(**params)
        trainers = [t for t in graph.tasks.values() if isinstance(t, example.Train)]
        seeds = {
            json.loads((t.task_directory / "model.json").read_text())["seed"] for t in trainers
        }
    assert seeds == {0, 1, 2}
    spans = tmp_path / "span.py"
    spans.write_text(SPAN_SCRIPT)
    events = tmp_path / "events"
    prefix = f"{sys.executable} {spans} {events} env CUDA_VISIBLE_DEVICES=1"
    params["seeds"] = [0, 1, 2, 3, 4, 5]
    more = taskproc(
        file, "-o", url, "--kwargs", json.dumps(params), "--prefixes", json.dumps({"gpu": prefix}),
        cwd=tmp_path,
    )  # fmt: skip
    assert len(re.findall(r"test accuracy", more.stdout)) == 6
    assert len(read_spans(events)) == 3 and max_overlap(read_spans(events)) == 1


def test_shell_jobs(url: str, bucket_store: BucketStore, tmp_path: Path) -> None:
    file = str(EXAMPLES / "shell_jobs.py")
    spans = tmp_path / "span.py"
    spans.write_text(SPAN_SCRIPT)
    events = tmp_path / "events"
    commands = tmp_path / "commands.txt"
    lines = [f"{sys.executable} {spans} {events} --sleep 0.4 {i}" for i in range(6)]
    commands.write_text("# six jobs\n\n" + "\n".join(lines) + "\n")
    kwargs = json.dumps({"commands": str(commands)})
    first = taskproc(file, "-o", url, "-n", "2", "--kwargs", kwargs, cwd=tmp_path)
    assert "6 commands done" in first.stdout
    assert max_overlap(read_spans(events)) == 2
    assert outputs(bucket_store, "shell_jobs.Command") == [f"job {i} done\n" for i in range(6)]
    with commands.open("a") as f:
        f.write(f"{sys.executable} {spans} {events} --sleep 0 6\n")
        f.write("echo disk full >&2; exit 3\n")
    second = taskproc(file, "-o", url, "-n", "2", "--kwargs", kwargs, cwd=tmp_path, ok=False)
    assert second.returncode == 1 and "disk full" in second.stderr
    assert summary(second) == {"done": 1, "cached": 6, "failed": 1}
    report = status(url, tmp_path)
    assert count(report, "shell_jobs.Command", "done") == 7
    assert count(report, "shell_jobs.Command", "failed") == 1


def test_task_files(url: str, bucket_store: BucketStore, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    file = str(EXAMPLES / "task_files.py")
    kwargs = json.dumps({"folder": str(inbox)})
    old = time.time() - 3600  # file times before any run (see tests/test_examples.py)

    def drop(name: str, text: str) -> None:
        (inbox / name).write_text(text)
        os.utime(inbox / name, (old, old))

    drop("1.task", "I am the first task;0.2\n")
    drop("2.task", "this task will finish quickly;0\n")
    drop("bad.task", "no delay here\n")
    first = taskproc(file, "-o", url, "--kwargs", kwargs, cwd=tmp_path, ok=False)
    assert first.returncode == 1 and "bad.task: expected 'message;seconds'" in first.stderr
    assert summary(first)["done"] == 5  # three input files and two tasks
    drop("bad.task", "fixed;0\n")
    drop("3.task", "a latecomer;0\n")
    second = taskproc(file, "-o", url, "--kwargs", kwargs, cwd=tmp_path)
    assert "4 task files done" in second.stdout
    assert summary(second) == {"done": 5, "cached": 4, "failed": 0}  # bad, 3 (each twice), Main
    report = status(url, tmp_path)
    assert count(report, "task_files.TaskFile", "done") == 4
    assert count(report, "task_files.TaskFile", "failed") == 0  # bad.task's reran and is done
    # A touched file reruns nothing; an edited one reruns its own task only.
    os.utime(inbox / "1.task", (old + 60, old + 60))
    drop("2.task", "edited;0\n")
    third = taskproc(file, "-o", url, "--kwargs", kwargs, cwd=tmp_path)
    assert summary(third) == {"done": 4, "cached": 5, "failed": 0}  # 1 and 2 read; 2's; Main
    # While a run goes on, status names the running task by its arguments.
    (inbox / "4.task").write_text("a slow one;60\n")
    with subprocess.Popen(
        [*TASKPROC, file, "-o", url, "--kwargs", kwargs],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as slow:  # fmt: skip
        try:
            wait_for(
                lambda: (
                    [r["task"] for r in status(url, tmp_path)["running"]]
                    == ["task_files.TaskFile(file=taskproc.InputFile(path='inbox/4.task'))"]
                ),
                "the running task, named",
            )
        finally:
            slow.send_signal(signal.SIGINT)
            slow.communicate(timeout=30)
    assert slow.returncode == 130
    assert count(status(url, tmp_path), "task_files.TaskFile", "running") == 0


def test_worker_pool(url: str, bucket_store: BucketStore, tmp_path: Path) -> None:
    proc = run(
        [sys.executable, str(EXAMPLES / "worker_pool.py"), "-o", url,
         "--jobs", "12", "--workers", "2", "--max-tasks-per-child", "3"],
        tmp_path,
    )  # fmt: skip
    per_worker = {
        int(pid): int(n) for pid, n in re.findall(r"worker (\d+) ran (\d+) jobs", proc.stdout)
    }
    assert sum(per_worker.values()) == 12 and max(per_worker.values()) <= 3
    assert "queued 0, processed 13" in proc.stdout
    found = [f for f in bucket_store.scan(["worker_pool.Job"]) if f.record is not None]
    assert len(found) == 12
    for f in found:
        n = json.loads(bucket_store.read_args(f.location) or "{}")["n"]
        log = bucket_store.read_output(f.location, "stderr").decode()
        assert re.findall(r"processing job (\d+)", log) == [str(n)], log


@pytest.fixture
def server() -> Any:
    srv = load_example("slow_server").serve(port=0, delay=0.1)
    yield srv
    srv.shutdown()
    srv.server_close()


def test_fetch_many(url: str, bucket_store: BucketStore, tmp_path: Path, server: Any) -> None:
    paths = write_urls(tmp_path / "urls.txt", server, 300)
    file = str(EXAMPLES / "fetch_many.py")
    proc = taskproc(file, "-o", url, "--kwargs", '{"jobs": "urls.txt"}', cwd=tmp_path)
    assert proc.stdout.startswith("fetched 300 URLs")
    assert server.requests == {p: 1 for p in paths}
    assert count(status(url, tmp_path), "fetch_many.Fetch", "done") == 300
    example = load_example("fetch_many")
    with Graph(url, store=BucketStore(url, working_copy=tmp_path / "reader")):
        urls = [f"{server.url}{p}" for p in paths]
        bodies = {(example.Fetch(u).task_directory / "body").read_text() for u in urls}
    assert bodies == {f"{p}\n" for p in paths}
    taskproc("clear", url, "fetch_many.Fetch", cwd=tmp_path)
    assert count(status(url, tmp_path), "fetch_many.Fetch", "done") == 0


def test_cluster(url: str, bucket_store: BucketStore, tmp_path: Path) -> None:
    proc = taskproc(str(EXAMPLES / "cluster.py"), "-o", url, cwd=tmp_path)
    assert len(proc.stdout.splitlines()) == 6
    example = load_example("cluster")
    with Graph(url, store=bucket_store):
        placements = example.Main().get_result()
    spans = {
        name: [(p["start"], p["end"]) for p in placements if p["task"].startswith(f"{name}(")]
        for name in ("cluster.TaskUsingGPU", "cluster.AnotherTaskUsingGPU")
    }
    everything = spans["cluster.TaskUsingGPU"] + spans["cluster.AnotherTaskUsingGPU"]
    assert len(everything) == 6 and max_overlap(everything) == 2
    assert max_overlap(spans["cluster.AnotherTaskUsingGPU"]) == 1
    assert {p["job"] for p in placements} == {"cluster.TaskUsingGPU", "cluster.AnotherTaskUsingGPU"}
