"""Keeping a cache in a bucket from the command line: `why`, `accept`, `gc`, `clear
--failed`, `graph` and `ls` on ``s3://`` (SeaweedFS), as on a folder."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from conftest import Project

from taskproc.store import BucketStore

pytestmark = pytest.mark.s3

PIPE = """
from taskproc import DefaultCliArguments, Task
import helpers

class Square(Task):
    def __init__(self, x: int):
        self.x = x

    def run_task(self) -> int:
        if self.x < 0:
            raise ValueError("negative")
        return helpers.scale(self.x) ** 2

class Main(Task):
    def __init__(self, n: int = 3, bad: bool = False):
        self.squares = [Square(i) for i in range(n)] + ([Square(-1)] if bad else [])

    def run_task(self) -> int:
        return sum(s.get_result() for s in self.squares)

DefaultCliArguments(exec_type="thread", dont_force_entrypoint=True).populate()
"""

HELPERS = "def scale(x):\n    return x * 2\n"
REFACTORED = (
    "def scale(x):\n    doubled = x + x  # the same result, other code\n    return doubled\n"
)


@pytest.fixture
def on_bucket(project: Project, bucket_store: BucketStore, s3_server: Any) -> Project:
    project.env.update(s3_server.env())
    project.env["TASKPROC_WORKING_COPY"] = os.environ["TASKPROC_WORKING_COPY"]
    project.write(pipe=PIPE, helpers=HELPERS)
    return project


def test_why_accept_and_a_rerun_that_runs_nothing(
    on_bucket: Project, bucket_store: BucketStore
) -> None:
    url = bucket_store.root
    first = on_bucket.cli("pipe.py", "-o", url)
    assert "4 done" in first.stderr
    on_bucket.write(helpers=REFACTORED)
    why = on_bucket.cli("why", "pipe.py", "-o", url).stdout
    assert "pipe.Square(x=0)" in why and "helpers.scale" in why
    out = on_bucket.cli("accept", "pipe.py", "-o", url).stdout.splitlines()
    assert out[0] == "accepted 3 tasks, 1 already fresh, 0 refused"
    again = on_bucket.cli("pipe.py", "-o", url)
    assert "0 done, 4 cached" in again.stderr
    graph = on_bucket.cli("graph", "pipe.py", "-o", url, "-f", "mermaid").stdout
    assert "4 done" in graph or "done" in graph
    listed = json.loads(on_bucket.cli("ls", url, "pipe.Square", "--json").stdout)
    assert sorted(e["args"]["x"] for e in listed) == [0, 1, 2]


def test_gc_and_clear_failed(on_bucket: Project, bucket_store: BucketStore) -> None:
    url = bucket_store.root
    on_bucket.cli("pipe.py", "-o", url, "--kwargs", '{"n": 4}')
    failed = on_bucket.cli("pipe.py", "-o", url, "--kwargs", '{"bad": true}', check=False)
    assert failed.returncode == 1 and "negative" in failed.stderr
    status = json.loads(on_bucket.cli("status", url, "--json").stdout)
    assert status["task_names"]["pipe.Square"]["failed"] == 1
    cleared = on_bucket.cli("clear", url, "--failed").stdout
    assert "pipe.Square(x=-1)" in cleared
    gc = json.loads(on_bucket.cli("gc", "pipe.py", "-o", url, "--json").stdout)
    deleted = {name: n["deleted"] for name, n in gc["task_names"].items() if n["deleted"]}
    assert deleted == {"pipe.Main": 1, "pipe.Square": 1}  # Main(n=4) and Square(3)
    ids = bucket_store.task_ids("pipe.Square")
    assert ids is not None and len(ids) == 3
    again = on_bucket.cli("pipe.py", "-o", url)  # Main(n=3) had never run; its squares stay
    assert "1 done, 3 cached" in again.stderr
