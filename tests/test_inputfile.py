"""`InputFile`: files and folders as upstream futures, whose identity is their content.

The command-line tests build a small project in `tmp_path`, run it, edit its input files and
run again through ``taskproc``, and assert exactly which tasks ran (each task appends its name
to a log), on thread and process pools. The unit tests check the scan itself: what is read,
what is not, files that change while they are read, symlinks, the cache folder left out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

from taskproc import Const, FutureDict, FutureList, Graph, InlineExecutor, InputFile, Task
from taskproc.errors import ArgumentError, TaskDefinitionError
from taskproc.model import Ledger, Reason, check_input
from taskproc.model._inputfile import list_files, read_digest, scan
from taskproc.store import read_record

TASKPROC = str(Path(sys.executable).with_name("taskproc"))
OLD = time.time() - 3600  # a file time well before any read: not racy

PIPE = """
from pathlib import Path
from typing import Any

from taskproc import Future, FutureDict, InputFile, Task

LOG = "ran.log"  # in the working directory (a path here would be part of the code)


def ran(name: str) -> None:
    with open(LOG, "a") as log:  # one line per run of a task, from any process
        log.write(name + "\\n")


class Count(Task):
    def __init__(self, text: Future[Path]) -> None:
        self.text = text

    def run_task(self) -> int:
        path = self.text.get_result()
        ran(f"Count {path.name}")
        return len(path.read_text().split())


class Names(Task):
    def __init__(self, folder: Future[Path]) -> None:
        self.folder = folder

    def run_task(self) -> list[str]:
        ran("Names")
        root = self.folder.get_result()
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class Main(Task):
    def __init__(self) -> None:
        names = Path("docs.list").read_text().split()  # the files to count
        self.counts = FutureDict({n: Count(InputFile(f"data/docs/{n}")) for n in names})
        self.names = Names(InputFile("data"))

    def run_task(self) -> str:
        ran("Main")
        return f"{self.counts.get_result()} {self.names.get_result()}"
"""


def write_old(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (OLD, OLD))


class Project:
    """A pipeline in `tmp_path` and the runs made of it."""

    def __init__(self, folder: Path, executor: str) -> None:
        self.folder = folder
        self.executor = executor
        (folder / "pipe.py").write_text(textwrap.dedent(PIPE))
        (folder / "docs.list").write_text("a.txt b.txt")
        write_old(folder / "data" / "docs" / "a.txt", "one two three")
        write_old(folder / "data" / "docs" / "b.txt", "four")

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        command = [TASKPROC, "pipe.py", "-o", "cache", "-t", self.executor, "-n", "2", *args]
        proc = subprocess.run(command, cwd=self.folder, capture_output=True, text=True)
        if ok and proc.returncode != 0:
            pytest.fail(f"{command} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def ran(self, *args: str, ok: bool = True) -> list[str]:
        """The tasks that one run ran, sorted."""
        log = self.folder / "ran.log"
        log.unlink(missing_ok=True)
        self.last = self.run("--dont-force-entrypoint", *args, ok=ok)
        return sorted(log.read_text().splitlines()) if log.exists() else []

    def summary(self) -> dict[str, int]:
        line = next(x for x in self.last.stderr.splitlines() if x.startswith("taskproc: "))
        words = line.removeprefix("taskproc: ").split(" in ")[0].split(", ")
        return {w.split(" ", 1)[1]: int(w.split(" ", 1)[0]) for w in words}

    def why(self) -> str:
        command = [TASKPROC, "why", "pipe.py", "-o", "cache", "--dont-force-entrypoint"]
        proc = subprocess.run(command, cwd=self.folder, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@pytest.fixture(params=["thread", "process"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    return Project(tmp_path, request.param)


ALL = ["Count a.txt", "Count b.txt", "Main", "Names"]


def test_a_task_reruns_when_and_only_when_its_files_bytes_change(project: Project) -> None:
    docs = project.folder / "data" / "docs"
    assert project.ran() == ALL
    assert project.ran() == []
    assert project.summary() == {"done": 0, "cached": 7, "failed": 0}

    # Times change, content does not (a touch, a checkout): the inputs are read again and
    # their records written again; nothing downstream reruns, and the next run reads nothing.
    os.utime(docs / "a.txt", (OLD + 60, OLD + 60))
    assert project.ran() == []
    assert project.summary() == {"done": 2, "cached": 5, "failed": 0}  # a.txt, data/
    assert project.ran() == []

    # The bytes change: the task that reads the file reruns, and so do the tasks that read the
    # folder it is in (and those downstream of them).
    write_old(docs / "b.txt", "four five")
    assert project.ran() == ["Count b.txt", "Main", "Names"]

    # A folder counts its files' names: a renamed file reruns the task that reads the folder.
    (project.folder / "data" / "notes.md").write_text("x")
    os.utime(project.folder / "data" / "notes.md", (OLD, OLD))
    assert project.ran() == ["Main", "Names"]
    (project.folder / "data" / "notes.md").rename(project.folder / "data" / "notes2.md")
    assert project.ran() == ["Main", "Names"]
    assert project.ran() == []


def test_why_names_the_file_that_changed_with_old_and_new_size_and_time(
    project: Project,
) -> None:
    project.ran()
    a = project.folder / "data" / "docs" / "a.txt"
    write_old(a, "one two three four")
    os.utime(a, (OLD + 90, OLD + 90))
    text = project.why()
    old, new = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) for t in (OLD, OLD + 90))
    assert (
        f"taskproc.InputFile(path='data/docs/a.txt') and 1 more: its files changed: "
        f"data/docs/a.txt: 13 -> 18 bytes, modified {old} -> {new}"
    ) in text
    assert (
        "pipe.Count(text=taskproc.InputFile(path='data/docs/a.txt')): an upstream result "
        "changed since it ran: the files of taskproc.InputFile(path='data/docs/a.txt') changed "
        f"(data/docs/a.txt: 13 -> 18 bytes, modified {old} -> {new})"
    ) in text
    assert "the files of taskproc.InputFile(path='data') changed (docs/a.txt: 13 -> 18" in text
    assert "pipe.Main(): an upstream task reruns" in text
    assert text.endswith("5 of 7 tasks would run\n")


def test_a_missing_file_is_one_line_naming_the_task_and_the_path(project: Project) -> None:
    project.ran()
    (project.folder / "data" / "docs" / "b.txt").unlink()
    # 'lazy': what does not need b.txt runs (the folder lost a file); its reader does not.
    assert project.ran("-e", "lazy", ok=False) == ["Names"]
    assert project.last.returncode == 1
    missing = project.folder / "data" / "docs" / "b.txt"
    line = (
        "FAILED taskproc.InputFile(path='data/docs/b.txt') failed: InputFileError: no such file "
        f"or folder: {missing} (an input of pipe.Count(text=taskproc.InputFile("
        "path='data/docs/b.txt'))); create it, or give InputFile the path of an existing file"
    )
    assert line in project.last.stderr.splitlines()
    write_old(missing, "four")
    assert project.ran() == ["Main", "Names"]  # b.txt as before: its reader does not rerun


def test_a_cached_rerun_reads_no_input_file(tmp_path: Path) -> None:
    """An audit hook counts the files opened under data/ by a rerun (in a process of its
    own: audit hooks cannot be removed)."""
    project = Project(tmp_path, "process")
    names = [f"f{i:03d}.txt" for i in range(200)]
    for name in names:
        write_old(tmp_path / "data" / "docs" / name, f"word {name}")
    (tmp_path / "docs.list").write_text(" ".join(names))
    project.ran()
    script = tmp_path / "rerun.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            opened = []
            data = os.path.abspath("data")
            def hook(event, args):
                if event == "open" and isinstance(args[0], str) and args[0].startswith(data):
                    opened.append(args[0])
            sys.addaudithook(hook)
            import pipe
            from taskproc import Graph
            with Graph("cache"):
                pipe.Main().run_graph(executor=__import__("taskproc").InlineExecutor())
            print(len(opened))
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "0"


# -- identity ------------------------------------------------------------------------------


def test_the_identity_is_the_path_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with Graph(tmp_path / "cache"):
        a = InputFile("data/x.csv")
        assert InputFile(tmp_path / "data" / "x.csv") is a
        assert InputFile("./data/../data/x.csv") is a
        assert json.loads(a._tp.args_json) == {"path": "data/x.csv"}
        assert a.get_result() == tmp_path / "data" / "x.csv"
        outside = InputFile("/etc/hostname")
        assert json.loads(outside._tp.args_json) == {"path": "/etc/hostname"}
        assert repr(a) == "taskproc.InputFile(path='data/x.csv')"
        with pytest.raises(ArgumentError, match=r"^taskproc.InputFile: path must be"):
            InputFile(3)  # type: ignore[arg-type]
    with pytest.raises(TaskDefinitionError, match="cannot be subclassed"):

        class Mine(InputFile):  # type: ignore[misc]
            pass


def test_a_project_moved_elsewhere_keeps_its_results(tmp_path: Path) -> None:
    """Identities are relative: the same project and cache copied to another folder (another
    machine) rerun nothing; its inputs are read again (their inodes differ), not rerun."""
    (tmp_path / "one").mkdir()
    first = Project(tmp_path / "one", "thread")
    first.ran()
    subprocess.run(["cp", "-a", str(tmp_path / "one"), str(tmp_path / "two")], check=True)
    moved = Project.__new__(Project)
    moved.folder, moved.executor = tmp_path / "two", "thread"
    assert moved.ran() == []
    assert moved.summary()["failed"] == 0


# -- in Python: futures, workers, prefixes ----------------------------------------------------


class Read(Task):
    task_label = "reader"

    def __init__(self, files: FutureList[Path], named: FutureDict[str, Path]) -> None:
        self.files = files
        self.named = named

    def run_task(self) -> list[str]:
        paths = [*self.files.get_result(), *self.named.get_result().values()]
        assert all(isinstance(p, Path) and p.is_absolute() for p in paths)
        return [p.read_text() for p in paths]


@pytest.mark.parametrize("how", ["thread", "process", "prefix"])
def test_workers_get_the_path_in_lists_and_dicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    monkeypatch.chdir(tmp_path)
    write_old(tmp_path / "a.txt", "A")
    write_old(tmp_path / "b.txt", "B")
    executor = ThreadPoolExecutor(2) if how == "thread" else ProcessPoolExecutor(2)
    prefixes = {"reader": "env"} if how == "prefix" else None
    with executor, Graph(tmp_path / "cache"):
        task = Read(FutureList([InputFile("a.txt")]), FutureDict({"b": InputFile("b.txt")}))
        result, stats = task.run_graph(executor=executor, prefixes=prefixes)
        assert result == ["A", "B"]
        assert stats["stats"] == {"test_inputfile.Read": 1, "taskproc.InputFile": 2}
        assert task.run_graph(executor=executor, prefixes=prefixes)[1]["executed"] == 0


def test_the_cache_folder_inside_an_input_folder_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_old(tmp_path / "a.txt", "A")

    class Whole(Task):
        def __init__(self) -> None:
            self.here = InputFile(".")

        def run_task(self) -> int:
            return len(list(self.here.get_result().iterdir()))

    with Graph(tmp_path / "cache"):
        first = Whole().run_graph(executor=InlineExecutor())[1]
        second = Whole().run_graph(executor=InlineExecutor())[1]
    assert first["executed"] == 2
    assert second["executed"] == 0  # the cache changed, the folder did not


def test_allow_failed_takes_a_missing_file_as_a_value(tmp_path: Path) -> None:
    from taskproc import FailedTaskError, allow_failed

    class Either(Task):
        def __init__(self) -> None:
            self.maybe = allow_failed(InputFile(tmp_path / "nowhere.txt"))

        def run_task(self) -> str:
            value = self.maybe.get_result()
            return "missing" if isinstance(value, FailedTaskError) else "found"

    with Graph(tmp_path / "cache"):
        either = Either()
        with pytest.raises(ExceptionGroup) as failed:  # the input's failure is reported,
            either.run_graph(executor=InlineExecutor(), error_handling="lazy")
        assert "no such file or folder" in str(failed.value.exceptions[0])
        assert either.get_result() == "missing"  # and the task that tolerates it ran


# -- the scan ---------------------------------------------------------------------------------


def test_only_files_whose_facts_changed_are_read(tmp_path: Path) -> None:
    for i in range(5):
        write_old(tmp_path / "d" / f"{i}.txt", str(i))
    first = scan(tmp_path / "d", list_files(tmp_path / "d"), {})
    assert first.read == 5
    known = {r[0]: r for r in first.rows}
    assert scan(tmp_path / "d", list_files(tmp_path / "d"), known).read == 0
    write_old(tmp_path / "d" / "3.txt", "three")
    again = scan(tmp_path / "d", list_files(tmp_path / "d"), known)
    assert again.read == 1 and again.stamp != first.stamp
    write_old(tmp_path / "d" / "3.txt", "3")
    back = scan(tmp_path / "d", list_files(tmp_path / "d"), known)
    assert back.stamp == first.stamp and back.read == 1  # the same bytes: the same stamp


def test_a_file_written_just_before_it_was_read_is_read_again(tmp_path: Path) -> None:
    (tmp_path / "new.txt").write_text("fresh")  # its time is now: racy
    first = scan(tmp_path / "new.txt", list_files(tmp_path / "new.txt"), {})
    known = {r[0]: r for r in first.rows}
    assert first.rows[0][2] < 0  # its time recorded negated: never matches a stat
    assert scan(tmp_path / "new.txt", list_files(tmp_path / "new.txt"), known).read == 1
    write_old(tmp_path / "old.txt", "old")
    old = scan(tmp_path / "old.txt", list_files(tmp_path / "old.txt"), {})
    known = {r[0]: r for r in old.rows}
    assert scan(tmp_path / "old.txt", list_files(tmp_path / "old.txt"), known).read == 0


def test_a_file_that_changes_while_it_is_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "moving.bin"
    path.write_bytes(b"x" * 5000)
    real = os.fstat
    calls = []

    def fstat_appending_once(fd: int) -> os.stat_result:
        calls.append(fd)
        if len(calls) == 2:  # after the first read: the file grows
            with open(path, "ab") as f:
                f.write(b"y" * 10)
        return real(fd)

    monkeypatch.setattr(os, "fstat", fstat_appending_once)
    digest, st = read_digest(str(path))
    monkeypatch.setattr(os, "fstat", real)
    assert len(calls) == 4 and st.st_size == 5010
    assert digest == read_digest(str(path))[0]

    def fstat_always_growing(fd: int) -> os.stat_result:
        with open(path, "ab") as f:
            f.write(b"z")
        return real(fd)

    monkeypatch.setattr(os, "fstat", fstat_always_growing)
    with pytest.raises(OSError, match="kept changing while it was being read"):
        read_digest(str(path))


def test_folders_follow_symlinks_once_in_name_order(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    write_old(target, "target")
    root = tmp_path / "d"
    write_old(root / "b" / "x.txt", "x")
    (root / "link.txt").symlink_to(target)
    (root / "b" / "loop").symlink_to(root)  # a cycle: listed once
    (root / "broken").symlink_to(tmp_path / "missing")
    os.mkfifo(root / "pipe")  # not a regular file: left out
    names = [name for name, _, _ in list_files(root)]
    assert names == ["b/x.txt", "link.txt"]
    first = scan(root, list_files(root), {})
    write_old(target, "changed")
    assert scan(root, list_files(root), {}).stamp != first.stamp


def test_a_file_and_a_folder_holding_it_differ(tmp_path: Path) -> None:
    write_old(tmp_path / "d" / "x", "same")
    alone = scan(tmp_path / "d" / "x", list_files(tmp_path / "d" / "x"), {})
    folder = scan(tmp_path / "d", list_files(tmp_path / "d"), {})
    assert alone.stamp != folder.stamp


def test_the_check_reuses_the_stored_record_and_says_why_not(tmp_path: Path) -> None:
    write_old(tmp_path / "a.txt", "A")
    with Graph(tmp_path / "cache"):
        task = InputFile(tmp_path / "a.txt")
        ledger = Ledger()
        assert check_input(task, None, ledger) is Reason.MISSING
        stamp = ledger.stamps[task]
        Const(0)  # noqa: B018  (any graph)

        class Use(Task):
            def __init__(self) -> None:
                self.a = task

            def run_task(self) -> str:
                return self.a.get_result().read_text()

        assert Use().run_graph(executor=InlineExecutor())[0] == "A"
        record = read_record(task._tp.store, task._tp_loc())
        assert record is not None and record.stamp == stamp
        ledger = Ledger()
        assert check_input(task, record, ledger) is None and not ledger.scans
        os.utime(tmp_path / "a.txt", (OLD + 1, OLD + 1))
        assert check_input(task, record, Ledger()) is Reason.TOUCHED
        write_old(tmp_path / "a.txt", "B")
        assert check_input(task, record, Ledger()) is Reason.FILES
        (tmp_path / "a.txt").unlink()
        ledger = Ledger()
        assert check_input(task, record, ledger) is Reason.NO_FILE
        assert task not in ledger.stamps
        assert ledger.scans[task].error == f"no such file or folder: {tmp_path / 'a.txt'}"


# -- --watch ------------------------------------------------------------------------------------

WATCHED = """
import os
from pathlib import Path
from typing import Any

from taskproc import Future, FutureDict, InputFile, Task


class Job(Task):
    def __init__(self, file: Future[Path]) -> None:
        self.file = file

    def run_task(self) -> str:
        path = self.file.get_result()
        with open(os.environ["RUNS_LOG"], "a") as log:  # one line per run of a job
            log.write(path.name + "\\n")
        return path.read_text().upper()


class Main(Task):
    def __init__(self, folder: str = "inbox") -> None:
        files = sorted(Path(folder).glob("*.job"))
        self.jobs = FutureDict({f.name: Job(InputFile(f)) for f in files})

    def run_task(self) -> dict[str, str]:
        return self.jobs.get_result()
"""


def test_watching_the_input_folder_reruns_only_the_tasks_whose_files_changed(
    tmp_path: Path,
) -> None:
    from test_watch import wait_for, watching

    for name in ("a.job", "b.job", "c.job"):
        write_old(tmp_path / "inbox" / name, name)
    with watching(tmp_path, "inbox", pipe=WATCHED) as w:
        wait_for(lambda: w.watching() == 1, "the first run")
        assert sorted(w.runs()) == ["a.job", "b.job", "c.job"]
        write_old(tmp_path / "inbox" / "b.job", "edited")
        wait_for(lambda: w.watching() == 2, "the second run")
        os.utime(tmp_path / "inbox" / "c.job", (OLD + 60, OLD + 60))  # a touch: same bytes
        wait_for(lambda: w.watching() == 3, "the third run")
        assert w.interrupt() == 130
    assert sorted(w.runs()) == ["a.job", "b.job", "b.job", "c.job"]


def test_accept_takes_a_touched_input_as_fresh_and_refuses_a_changed_one(tmp_path: Path) -> None:
    project = Project(tmp_path, "thread")
    project.ran()
    docs = tmp_path / "data" / "docs"
    os.utime(docs / "a.txt", (OLD + 60, OLD + 60))
    command = [TASKPROC, "accept", "pipe.py", "-o", "cache"]
    touched = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert touched.returncode == 0, touched.stdout + touched.stderr
    assert "0 refused" in touched.stdout.splitlines()[0]
    write_old(docs / "a.txt", "changed")
    changed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert changed.returncode == 1
    assert (
        "  refused: taskproc.InputFile(path='data/docs/a.txt'): its files changed: "
        "data/docs/a.txt: 13 -> 7 bytes"
    ) in changed.stdout


@pytest.mark.s3
def test_inputs_on_a_bucket_cache(
    bucket_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.chdir(tmp_path)
    write_old(tmp_path / "a.txt", "A")
    write_old(tmp_path / "b.txt", "B")

    def run() -> tuple[object, dict[str, Any]]:
        with ThreadPoolExecutor(2) as pool, Graph(bucket_store.root, store=bucket_store):
            task = Read(FutureList([InputFile("a.txt")]), FutureDict({"b": InputFile("b.txt")}))
            return task.run_graph(executor=pool)

    assert run()[0] == ["A", "B"]
    assert run()[1]["executed"] == 0
    write_old(tmp_path / "b.txt", "BB")
    result, stats = run()
    assert result == ["A", "BB"]
    assert stats["stats"] == {"test_inputfile.Read": 1, "taskproc.InputFile": 1}
