"""Every example in examples/, run the way its docstring tells a user to run it.

Pipelines with a ``Main`` run through the ``taskproc`` command, scripts through ``python``, in
subprocesses, with their cache under ``tmp_path``. The checks read what a user reads: the
printed output, the run summary, the cache folder, ``taskproc status``.

Concurrency is checked by counting overlapping spans, never by timing: commands and tasks
record their start and end (on this machine's clock, shared by all processes), and
`max_overlap` counts how many spans were open at once.
"""

from __future__ import annotations

import contextvars
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from taskproc import Graph

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TASKPROC_BIN = Path(sys.executable).with_name("taskproc")
TASKPROC = [str(TASKPROC_BIN)] if TASKPROC_BIN.exists() else [sys.executable, "-m", "taskproc"]


# -- helpers -------------------------------------------------------------------------------


def run(
    argv: list[str], *, cwd: Path, ok: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail with its output unless it exits 0 (or `ok` is False)."""
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if ok and proc.returncode != 0:
        pytest.fail(
            f"{argv} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def taskproc(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run([*TASKPROC, *args], cwd=cwd, ok=ok)


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The counts of the CLI's closing line ``taskproc: 3 done, 1 cached, 0 failed ...``."""
    match = re.search(r"taskproc: (\d+) done, (\d+) cached, (\d+) failed", proc.stderr)
    assert match, f"no summary line in:\n{proc.stderr}"
    done, cached, failed = map(int, match.groups())
    return {"done": done, "cached": cached, "failed": failed}


def max_overlap(spans: Iterable[tuple[float, float]]) -> int:
    """The most spans open at one time (a span ending when another starts does not overlap)."""
    edges = sorted(e for start, end in spans for e in ((start, 1), (end, -1)))
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def read_spans(folder: Path) -> list[tuple[float, float]]:
    spans = []
    for f in folder.iterdir():
        start, end = f.read_text().split()
        spans.append((float(start), float(end)))
    return spans


def status(cache: Path) -> dict[str, Any]:
    """``taskproc status CACHE --json``; fails the test if the command exits non-zero."""
    proc = taskproc("status", str(cache), "--json", cwd=cache.parent, ok=False)
    assert proc.returncode == 0, (
        f"'taskproc status {cache} --json' exited {proc.returncode}\n"
        f"--- stderr\n{proc.stderr}\n--- stdout\n{proc.stdout}"
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def count(report: dict[str, Any], task_name: str, state: str) -> int:
    counts: dict[str, int] = report["task_names"].get(task_name, {})
    return counts.get(state, 0)


def task_folders(cache: Path, task_name: str) -> list[Path]:
    results = cache / task_name / "results"
    return sorted(results.iterdir()) if results.is_dir() else []


def finished_args(cache: Path, task_name: str) -> list[dict[str, Any]]:
    """args.json of every task of `task_name` that has a result."""
    return [
        json.loads((f / "args.json").read_text())
        for f in task_folders(cache, task_name)
        if (f / "result.pkl.gz").exists()
    ]


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py under its own name, as the CLI does, keeping its CLI defaults
    (DefaultCliArguments.populate) out of this process's context."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    contextvars.copy_context().run(spec.loader.exec_module, module)
    return module


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


# A command for shell_jobs and a prefix wrapper for ml_pipeline: each records its span.
SPAN_SCRIPT = """
import subprocess, sys, time, uuid
from pathlib import Path

events, rest = Path(sys.argv[1]), sys.argv[2:]
start = time.time()
if rest[0] == "--sleep":
    time.sleep(float(rest[1]))
    print(f"job {rest[2]} done")
    status = 0
else:
    status = subprocess.call(rest)
events.mkdir(exist_ok=True)
(events / uuid.uuid4().hex).write_text(f"{start} {time.time()}")
sys.exit(status)
"""


@pytest.fixture
def span_script(tmp_path: Path) -> Path:
    path = tmp_path / "span.py"
    path.write_text(SPAN_SCRIPT)
    return path


# -- 1. binomial ---------------------------------------------------------------------------


def test_binomial(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    file = str(EXAMPLES / "binomial.py")

    first = taskproc(file, "-o", str(cache), cwd=tmp_path)
    assert first.stdout == "C(6, 3) = 20\n"
    assert summary(first) == {"done": 16, "cached": 0, "failed": 0}

    again = taskproc(file, "-o", str(cache), cwd=tmp_path)  # only Main, which the CLI forces
    assert again.stdout == "C(6, 3) = 20\n"
    assert summary(again) == {"done": 1, "cached": 15, "failed": 0}

    bigger = taskproc(file, "-o", str(cache), "--kwargs", '{"n": 8, "k": 4}', cwd=tmp_path)
    assert bigger.stdout == "C(8, 4) = 70\n"
    assert summary(bigger)["cached"] == 15  # C(6, 3)'s whole tree is reused

    # As a script, through Main.cli(), on processes this time: the same cache.
    script = run([sys.executable, file, "-o", str(cache), "-t", "process"], cwd=tmp_path)
    assert script.stdout == "C(6, 3) = 20\n"
    assert summary(script) == {"done": 1, "cached": 15, "failed": 0}

    # The cache is browsable: Main's deps/ link leads to C(6, 3)'s folder, and on down.
    (main_dir,) = [
        f
        for f in task_folders(cache, "binomial.Main")
        if json.loads((f / "args.json").read_text()) == {"n": 6, "k": 3}
    ]
    choose = (main_dir / "deps" / "choose").resolve()
    assert json.loads((choose / "args.json").read_text()) == {"n": 6, "k": 3}
    assert (choose / "deps" / "left" / "deps" / "right" / "result.pkl.gz").exists()


# -- 2. ml_pipeline ------------------------------------------------------------------------


def test_ml_pipeline(tmp_path: Path, span_script: Path) -> None:
    cache = tmp_path / "cache"
    file = str(EXAMPLES / "ml_pipeline.py")
    params = {"seeds": [0, 1, 2], "size": 400, "epochs": 2}

    first = taskproc(file, "-o", str(cache), "--kwargs", json.dumps(params), cwd=tmp_path)
    accuracy = dict(re.findall(r"seed (\d+): test accuracy ([0-9.]+)", first.stdout))
    assert sorted(accuracy) == ["0", "1", "2"]
    assert all(float(a) > 0.7 for a in accuracy.values()), first.stdout
    assert "best: seed" in first.stdout
    # A model file per seed in its training task's folder, trained through the prefix.
    models = [
        json.loads(p.read_text()) for p in cache.glob("ml_pipeline.Train/results/*/data/model.json")
    ]
    assert sorted(m["seed"] for m in models) == [0, 1, 2]
    assert {m["device"] for m in models} == {"0"}

    # More seeds, with a prefix that records each training job's span: only the new seeds
    # train, one at a time (the file's rate limit on 'gpu').
    events = tmp_path / "events"
    prefix = f"{sys.executable} {span_script} {events} env CUDA_VISIBLE_DEVICES=1"
    params["seeds"] = [0, 1, 2, 3, 4, 5]
    more = taskproc(
        file, "-o", str(cache), "--kwargs", json.dumps(params),
        "--prefixes", json.dumps({"gpu": prefix}), cwd=tmp_path,
    )  # fmt: skip
    assert len(re.findall(r"test accuracy", more.stdout)) == 6
    spans = read_spans(events)
    assert len(spans) == 3
    assert max_overlap(spans) == 1
    models = [
        json.loads(p.read_text()) for p in cache.glob("ml_pipeline.Train/results/*/data/model.json")
    ]
    assert {m["seed"]: m["device"] for m in models} == {
        0: "0",
        1: "0",
        2: "0",
        3: "1",
        4: "1",
        5: "1",
    }


# -- 3. shell_jobs -------------------------------------------------------------------------


def test_shell_jobs(tmp_path: Path, span_script: Path) -> None:
    cache = tmp_path / "cache"
    file = str(EXAMPLES / "shell_jobs.py")
    events = tmp_path / "events"
    commands = tmp_path / "commands.txt"
    lines = [f"{sys.executable} {span_script} {events} --sleep 0.4 {i}" for i in range(6)]
    commands.write_text("# six jobs\n\n" + "\n".join(lines) + "\n")
    kwargs = json.dumps({"commands": str(commands)})

    first = taskproc(file, "-o", str(cache), "-n", "2", "--kwargs", kwargs, cwd=tmp_path)
    assert "6 commands done" in first.stdout
    assert max_overlap(read_spans(events)) == 2  # -n 2: two at a time, never more
    outputs = sorted(
        (f / "stdout.txt").read_text() for f in task_folders(cache, "shell_jobs.Command")
    )
    assert outputs == [f"job {i} done\n" for i in range(6)]

    # Add a job and a failing one: only those two run; the failure is reported with its output.
    with commands.open("a") as f:
        f.write(f"{sys.executable} {span_script} {events} --sleep 0 6\n")
        f.write("echo disk full >&2; exit 3\n")
    second = taskproc(file, "-o", str(cache), "-n", "2", "--kwargs", kwargs, cwd=tmp_path, ok=False)
    assert second.returncode == 1
    assert len(read_spans(events)) == 7
    assert "returned non-zero exit status 3" in second.stderr
    assert "disk full" in second.stderr
    assert summary(second) == {"done": 1, "cached": 6, "failed": 1}

    report = status(cache)
    assert count(report, "shell_jobs.Command", "done") == 7
    assert count(report, "shell_jobs.Command", "failed") == 1


def test_shell_jobs_bundled_list(tmp_path: Path) -> None:
    """The README's command, with the list of commands that comes with the example."""
    proc = taskproc(
        str(EXAMPLES / "shell_jobs.py"), "-o", str(tmp_path / "cache"), "-n", "6", cwd=tmp_path
    )
    assert "6 commands done" in proc.stdout


# -- 4. task_files -------------------------------------------------------------------------


def test_task_files(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    file = str(EXAMPLES / "task_files.py")
    kwargs = json.dumps({"folder": str(inbox)})
    old = time.time() - 3600  # file times before any run (a file read as it is written is
    # read again by the next run, which would add its input to the counts below)

    def drop(name: str, text: str) -> None:
        (inbox / name).write_text(text)
        os.utime(inbox / name, (old, old))

    drop("1.task", "I am the first task;0.2\n")
    drop("2.task", "this task will finish quickly;0\n")
    drop("bad.task", "no delay here\n")
    drop("notes.txt", "not a task file\n")

    first = taskproc(file, "-o", str(cache), "--kwargs", kwargs, cwd=tmp_path, ok=False)
    assert first.returncode == 1
    assert "bad.task: expected 'message;seconds'" in first.stderr
    assert summary(first)["done"] == 5  # three input files and two tasks
    printed = {
        Path(json.loads((f / "args.json").read_text())["file"]["__task__"]).name: (
            f / "stdout.txt"
        ).read_text()
        for f in task_folders(cache, "task_files.TaskFile")
        if (f / "result.pkl.gz").exists()
    }
    assert len(printed) == 2
    assert sorted(printed.values()) == ["I am the first task\n", "this task will finish quickly\n"]

    # Fix the bad file and drop a new one: only those two run (their input files are read).
    drop("bad.task", "fixed;0\n")
    drop("3.task", "a latecomer;0\n")
    second = taskproc(file, "-o", str(cache), "--kwargs", kwargs, cwd=tmp_path)
    assert "4 task files done" in second.stdout
    assert summary(second) == {"done": 5, "cached": 4, "failed": 0}  # bad, 3 (each twice), Main

    report = status(cache)
    assert count(report, "task_files.TaskFile", "done") == 4
    assert count(report, "task_files.TaskFile", "failed") == 0  # bad.task's reran and is done

    # A touched file reruns nothing; an edited one reruns its own task only.
    os.utime(inbox / "1.task", (old + 60, old + 60))
    drop("2.task", "edited;0\n")
    third = taskproc(file, "-o", str(cache), "--kwargs", kwargs, cwd=tmp_path)
    assert summary(third) == {"done": 4, "cached": 5, "failed": 0}  # 1 and 2 read; 2's; Main

    # While a run is going on, status shows the running task file.
    (inbox / "4.task").write_text("a slow one;60\n")
    with subprocess.Popen(
        [*TASKPROC, file, "-o", str(cache), "--kwargs", kwargs],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as slow:  # fmt: skip
        try:
            wait_for(lambda: count(status(cache), "task_files.TaskFile", "running") == 1, "running")
            running = status(cache)["running"]
            assert [r["task"] for r in running] == [
                "task_files.TaskFile(file=taskproc.InputFile(path='inbox/4.task'))"
            ]
        finally:
            slow.send_signal(signal.SIGINT)
            slow.communicate(timeout=30)
    assert slow.returncode == 130
    assert count(status(cache), "task_files.TaskFile", "running") == 0


# -- 5. worker_pool ------------------------------------------------------------------------


def test_worker_pool(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = run(
        [sys.executable, str(EXAMPLES / "worker_pool.py"), "-o", str(cache),
         "--jobs", "12", "--workers", "2", "--max-tasks-per-child", "3"],
        cwd=tmp_path,
    )  # fmt: skip
    per_worker = {
        int(pid): int(n) for pid, n in re.findall(r"worker (\d+) ran (\d+) jobs", proc.stdout)
    }
    assert sum(per_worker.values()) == 12
    assert max(per_worker.values()) <= 3  # each worker process retired after 3 tasks
    assert len(per_worker) >= 4
    assert "queued 0, processed 13" in proc.stdout  # 12 jobs and Main

    # Each job's log records are in its own folder, and only its own.
    folders = task_folders(cache, "worker_pool.Job")
    assert len(folders) == 12
    for folder in folders:
        n = json.loads((folder / "args.json").read_text())["n"]
        log = (folder / "stderr.txt").read_text()
        assert re.findall(r"processing job (\d+)", log) == [str(n)], log
        assert f"done with job {n} " in log


# -- 6. fetch_many -------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Any]:
    """examples/slow_server.py's server on a free port, answering after 0.1 s."""
    srv = load_example("slow_server").serve(port=0, delay=0.1)
    yield srv
    srv.shutdown()
    srv.server_close()


def write_urls(path: Path, server: Any, n: int) -> list[str]:
    paths = [f"/item/{i}" for i in range(n)]
    path.write_text("".join(f"{server.url}{p}\n" for p in paths))
    return paths


def test_fetch_many_thousand(tmp_path: Path, server: Any) -> None:
    cache = tmp_path / "cache"
    paths = write_urls(tmp_path / "urls.txt", server, 1000)
    file = str(EXAMPLES / "fetch_many.py")

    started = time.perf_counter()
    proc = taskproc(file, "-o", str(cache), "--kwargs", '{"jobs": "urls.txt"}', cwd=tmp_path)
    took = time.perf_counter() - started
    print(f"1,000 fetches of 0.1 s took {took:.1f} s, at most {server.max_in_flight} at once")
    assert proc.stdout.startswith("fetched 1000 URLs")
    assert server.requests == {p: 1 for p in paths}
    assert server.max_in_flight >= 32  # -n 64 threads: many requests wait at once
    bodies = {(f / "data" / "body").read_text() for f in task_folders(cache, "fetch_many.Fetch")}
    assert bodies == {f"{p}\n" for p in paths}

    report = status(cache)
    assert count(report, "fetch_many.Fetch", "done") == 1000
    # Reset: forget the fetches.
    taskproc("clear", str(cache), "fetch_many.Fetch", cwd=tmp_path)
    assert count(status(cache), "fetch_many.Fetch", "done") == 0


def test_fetch_many_resume(tmp_path: Path, server: Any) -> None:
    cache = tmp_path / "cache"
    paths = write_urls(tmp_path / "urls.txt", server, 300)
    argv = [*TASKPROC, str(EXAMPLES / "fetch_many.py"), "-o", str(cache), "-n", "8",
            "--kwargs", '{"jobs": "urls.txt"}']  # fmt: skip

    with subprocess.Popen(
        argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as first:
        wait_for(lambda: server.requests.total() >= 40, "40 requests")
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    assert first.returncode == 130
    finished = {a["url"].removeprefix(server.url) for a in finished_args(cache, "fetch_many.Fetch")}
    assert 0 < len(finished) < 300

    server.requests.clear()
    second = run(argv, cwd=tmp_path)
    assert second.stdout.startswith("fetched 300 URLs")
    assert not finished & set(server.requests)  # nothing finished was fetched again
    assert finished | set(server.requests) == set(paths)


# -- 7. cluster ----------------------------------------------------------------------------


def test_cluster(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = taskproc(str(EXAMPLES / "cluster.py"), "-o", str(cache), cwd=tmp_path)
    assert len(proc.stdout.splitlines()) == 6

    example = load_example("cluster")
    with Graph(cache):
        placements = example.Main().get_result()
    spans = {
        name: [(p["start"], p["end"]) for p in placements if p["task"].startswith(f"{name}(")]
        for name in ("cluster.TaskUsingGPU", "cluster.AnotherTaskUsingGPU")
    }
    everything = spans["cluster.TaskUsingGPU"] + spans["cluster.AnotherTaskUsingGPU"]
    assert len(everything) == 6
    assert max_overlap(everything) == 2  # 'gpu': 2
    assert max_overlap(spans["cluster.AnotherTaskUsingGPU"]) == 1  # 'memory': 1
    # Every task went through the prefix, which named its job after the task.
    assert {p["job"] for p in placements} == {"cluster.TaskUsingGPU", "cluster.AnotherTaskUsingGPU"}
    assert all(p["job"] in p["task"] for p in placements)


def test_every_example_is_tested() -> None:
    tested = {
        "binomial.py", "ml_pipeline.py", "shell_jobs.py", "task_files.py", "worker_pool.py",
        "fetch_many.py", "slow_server.py", "cluster.py",
    }  # fmt: skip
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_examples_say_how_to_run_them() -> None:
    for example in EXAMPLES.glob("*.py"):
        doc = example.read_text().split('"""')[1]
        assert f"examples/{example.name}" in doc, f"{example.name}: the docstring shows no command"
