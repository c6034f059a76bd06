"""A prefix command's worker imports little before its task's first line (issue #23: a fast
worker start). Counted, not timed: `benchmarks/bench_worker_start.py` times it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taskproc import Graph, InlineExecutor

# What a worker needs none of before the first line of a task: code identities (ast walks of
# source), the run loop, pickling by value, thread pools, random names, folder copies, argparse;
# dataclasses and inspect (the records on the way are NamedTuples, task signatures are read
# when a task is built), hashlib (task ids are made by the runner), the records a task gives
# of itself.
NOT_BEFORE_THE_TASK = {
    "cloudpickle",
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "hashlib",
    "statistics",
    "concurrent.futures",
    "argparse",
    "subprocess",
    "difflib",
    "random",
    "secrets",
    "tempfile",
    "shutil",
    "gzip",
    "taskproc.model._fingerprint",
    "taskproc.model._reach",
    "taskproc.model._source",
    "taskproc.model._values",
    "taskproc.model._introspection",
    "taskproc.run._driver",
    "taskproc.run._round",
    "taskproc.run._plan",
    "taskproc.run._prefix",
    "taskproc.run._executors",
    "taskproc.run._options",
    "taskproc.run._limits",
    "taskproc.store._memory",
    "taskproc.store._codes",
    "taskproc.store._runs",
    "taskproc.cli",
    "taskproc.views",
    "taskproc.upkeep",
}
# At the first line of the task: taskproc's modules, and all modules beyond those of a bare
# interpreter in the same environment (taskproc 0.26.0 had 44 and 123; before the records on
# the way became NamedTuples, 30 and 71). A new import on the way must be worth its time: raise
# these only with figures from the benchmark.
MOST_OF_TASKPROC = 29
MOST_IN_ALL = 60


# The task lives in a module of its own that imports nothing else: this test module's imports
# would be counted too.
PIPELINE = """
import sys

from taskproc import Task


class Modules(Task):
    task_label = "probe"

    def run_task(self) -> list[str]:
        return sorted(sys.modules)
"""


def test_the_worker_imports_little_before_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "startprobe.py").write_text(PIPELINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from startprobe import Modules  # type: ignore[import-not-found]

    with Graph(str(tmp_path / "cache")):
        modules, _ = Modules().run_graph(
            executor=InlineExecutor(), prefixes={"probe": "env TASKPROC_PROBE=1"}
        )
    bare = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "taskproc.run.worker" not in modules  # it ran as __main__
    assert not NOT_BEFORE_THE_TASK & set(modules)
    ours = [m for m in modules if m.startswith("taskproc")]
    assert len(ours) <= MOST_OF_TASKPROC, ours
    new = set(modules) - set(json.loads(bare)) - {"startprobe"}
    assert len(new) <= MOST_IN_ALL, sorted(new)
