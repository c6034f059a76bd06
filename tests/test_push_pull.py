"""``taskproc push CACHE URL`` and ``taskproc pull URL CACHE``: results copied between a cache
folder and a bucket (SeaweedFS), with everything a result comes with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from taskproc import Graph, InlineExecutor, Task
from taskproc.store import BucketStore, LocalStore, read_record
from taskproc.upkeep import transfer

pytestmark = pytest.mark.s3
TASKPROC = str(Path(sys.executable).with_name("taskproc"))


class Leaf(Task):
    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> int:
        print(f"leaf {self.n} says hello")
        (self.task_directory / "note.txt").write_text(f"note {self.n}")
        return self.n * 10


class Top(Task):
    def __init__(self, n: int) -> None:
        self.first = Leaf(n)
        self.second = Leaf(n + 1)

    def run_task(self) -> int:
        return self.first.get_result() + self.second.get_result()


def computed(folder: Path, n: int = 1) -> LocalStore:
    with Graph(folder):  # on threads: output is captured
        assert Top(n).run_graph(executor=ThreadPoolExecutor(2))[0] == 20 * n + 10
    return LocalStore(folder)


def test_push_then_pull_copies_results_with_all_they_come_with(
    bucket_store: BucketStore, tmp_path: Path
) -> None:
    """Records (freshness), arguments, upstream links with their attributes, output and
    task folders travel; a run on the copy finds every task cached."""
    source = computed(tmp_path / "a")
    report = transfer(source, bucket_store)
    assert len(report.copied) == 3 and not report.kept
    assert len(transfer(source, bucket_store).there) == 3  # nothing copied twice
    back = LocalStore(tmp_path / "b")
    assert len(transfer(bucket_store, back).copied) == 3
    with Graph(tmp_path / "b"):
        top = Top(1)
        result, stats = top.run_graph(executor=InlineExecutor(), force_entrypoint=False)
        assert result == 30 and sum(stats["stats"].values()) == 0
        leaf = Leaf(1)
        loc = leaf._tp_loc()
        assert (leaf.task_directory / "note.txt").read_text() == "note 1"
        top_loc = top._tp_loc()
    assert back.read_output(loc, "stdout") == b"leaf 1 says hello\n"
    assert back.read_args(loc) == '{"n":1}'
    assert sorted(os.listdir(f"{top_loc}/deps")) == ["first", "second"]
    assert read_record(back, loc) == read_record(
        source, source.locate(Leaf.task_name, leaf._tp.task_id)
    )


def test_the_same_result_computed_twice_converges(
    bucket_store: BucketStore, tmp_path: Path
) -> None:
    """Two machines that ran the same tasks with the same code and got the same bytes: the
    second push finds them there (no conflict), though their stamps differ."""
    first, second = computed(tmp_path / "a"), computed(tmp_path / "b")
    transfer(first, bucket_store)
    report = transfer(second, bucket_store)
    assert not report.copied and not report.kept and len(report.there) == 3


class Noisy(Task):
    """Returns what its environment says: two machines may disagree."""

    def run_task(self) -> str:
        return os.environ.get("TP_ANSWER", "none")


def test_where_the_results_differ_the_side_written_keeps_its_own(
    bucket_store: BucketStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TP_ANSWER", "ours")
    with Graph(tmp_path / "a"):
        Noisy().run_graph(executor=InlineExecutor())
    monkeypatch.setenv("TP_ANSWER", "theirs")
    with Graph(tmp_path / "b"):
        Noisy().run_graph(executor=InlineExecutor())
    assert transfer(LocalStore(tmp_path / "a"), bucket_store).copied
    report = transfer(LocalStore(tmp_path / "b"), bucket_store)
    assert report.kept == ["test_push_pull.Noisy()"] and not report.copied
    with Graph(bucket_store.root, store=bucket_store):
        assert Noisy().get_result() == "ours"


def test_big_results_go_as_blobs_and_come_back_whole(
    bucket_store: BucketStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import taskproc.store._s3lease as s3lease

    monkeypatch.setattr(s3lease, "INLINE", 100)
    source = computed(tmp_path / "a", n=10**40)  # results over 100 bytes
    transfer(source, bucket_store)
    assert list(bucket_store.bucket.list_pages(f"{Leaf.task_name}/blobs"))
    back = LocalStore(tmp_path / "b")
    transfer(bucket_store, back)
    with Graph(tmp_path / "b"):
        assert Top(10**40).get_result() == 20 * 10**40 + 10


def test_the_command_line(bucket_store: BucketStore, tmp_path: Path, s3_server: Any) -> None:
    """Selection as `clear` has it (names, globs, NAME/ID), --dry-run, --json; one line for
    a source that is no cache."""
    computed(tmp_path / "a")
    env = {**os.environ, **s3_server.env(), "TASKPROC_WORKING_COPY": str(tmp_path / "wc")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TASKPROC, *args], env=env, capture_output=True, text=True, timeout=120
        )

    url = bucket_store.root
    dry = cli("push", str(tmp_path / "a"), url, "--dry-run")
    assert dry.returncode == 0 and "would push 3 tasks" in dry.stdout, dry.stderr
    assert not bucket_store.task_names()
    only = cli("push", str(tmp_path / "a"), url, "*.Leaf", "--json")
    assert only.returncode == 0, only.stderr
    assert len(json.loads(only.stdout)["copied"]) == 2
    assert bucket_store.task_names() == [Leaf.task_name]
    pulled = cli("pull", url, str(tmp_path / "b"))
    assert pulled.returncode == 0 and "pulled 2 tasks" in pulled.stdout, pulled.stderr
    bad = cli("push", str(tmp_path / "nothing"), url)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    wrong = cli("pull", url, str(tmp_path / "b"), "no.Such")
    assert wrong.returncode == 2 and "no task named 'no.Such'" in wrong.stderr
