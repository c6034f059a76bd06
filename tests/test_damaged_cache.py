"""Views and upkeep on a damaged, read-only or full cache: one line naming the path and the
cause (exit 2), never a traceback, and nothing lost."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskproc.cli import main as cli_main


def main(args: list[str]) -> int:
    """The command in this process (so that os calls can be made to fail), its pipeline file
    loaded afresh each time."""
    sys.modules.pop("pipe", None)
    try:
        return cli_main(args)
    finally:
        sys.modules.pop("pipe", None)  # other tests import their own pipe.py


PIPE = """
from taskproc import Task

class Leaf(Task):
    def __init__(self, n: int):
        self.n = n

    def run_task(self) -> int:
        return self.n

class Main(Task):
    def __init__(self, n: int = 3):
        self.leaves = [Leaf(i) for i in range(n)]

    def run_task(self) -> int:
        return sum(leaf.get_result() for leaf in self.leaves)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pipe.py").write_text(PIPE)
    monkeypatch.chdir(tmp_path)
    assert main(["pipe.py", "-o", "cache", "-t", "local", "--dont-show-progress"]) == 0
    return tmp_path


def leaf_folders(project: Path) -> list[Path]:
    return sorted((project / "cache" / "pipe.Leaf" / "results").iterdir())


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[-1] if lines else ""


# -- item 6: a damaged cache -------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["status", "cache"],
        ["ls", "cache"],
        ["ls", "cache", "pipe.Leaf"],
        ["clear", "cache", "pipe.Leaf", "--dry-run"],
        ["gc", "pipe.py", "-o", "cache", "--kwargs", '{"n": 1}'],
    ],
)
def test_a_claim_that_is_a_folder(
    project: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (leaf_folders(project)[0] / "claim").mkdir()
    assert main(command) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["clear", "cache", "pipe.Leaf"],
        ["gc", "pipe.py", "-o", "cache", "--kwargs", '{"n": 1}'],
    ],
)
def test_a_trash_that_is_a_file(
    project: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "cache" / ".taskproc" / "trash").write_text("not a folder")
    assert main(command) == 0, capsys.readouterr().err
    assert len(list((project / "cache").glob("pipe.Leaf/results/*"))) < 3


@pytest.mark.parametrize("command", [["status", "cache"], ["ls", "cache", "pipe.Leaf"]])
def test_arguments_nested_deeper_than_python_reads(
    project: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (leaf_folders(project)[0] / "args.json").write_text("[" * 100_000 + "]" * 100_000)
    (leaf_folders(project)[0] / "result.pkl.gz").unlink()  # not done: status describes it
    assert main(command) == 0, capsys.readouterr().err


def test_status_shows_control_bytes_of_an_error_escaped(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = leaf_folders(project)[0]
    (folder / "result.pkl.gz").unlink()
    (folder / "error.txt").write_text(
        'Traceback (most recent call last):\n  File "pipe.py", line 9, in run_task\n'
        "ValueError: \x1b[2J\x1b]0;pwned\x07 boom\r\n"
    )
    capsys.readouterr()
    assert main(["status", "cache"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "ValueError: \\x1b[2J\\x1b]0;pwned\\x07 boom" in out


# -- item 7: read-only cache, full disk --------------------------------------------------------


def refusing(
    monkeypatch: pytest.MonkeyPatch, under: Path, code: int, calls: tuple[str, ...]
) -> None:
    """Make the given `os` calls fail with `code` for paths under `under` (tests run as root,
    whom a read-only mode does not stop)."""
    for name in calls:
        real: Callable[..., Any] = getattr(os, name)

        def fake(
            *args: Any, _real: Callable[..., Any] = real, _name: str = name, **kwargs: Any
        ) -> Any:
            reading = _name == "open" and not args[1] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if not reading and any(isinstance(a, str) and a.startswith(str(under)) for a in args):
                raise OSError(code, os.strerror(code), next(a for a in args if isinstance(a, str)))
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, fake)


WRITES = ("open", "mkdir", "rename", "replace", "unlink", "rmdir", "link", "symlink")


@pytest.mark.parametrize(
    "command",
    [
        ["clear", "cache", "pipe.Leaf"],
        ["clear", "cache", "--failed"],
        ["gc", "pipe.py", "-o", "cache", "--kwargs", '{"n": 1}'],
        ["accept", "pipe.py", "-o", "cache"],
    ],
)
def test_a_read_only_cache_is_one_line(
    project: Path,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if command[0] == "accept":  # something to accept: a record of other code
        stale_code(project)
    capsys.readouterr()
    before = sorted(str(p) for p in (project / "cache").rglob("*"))
    refusing(monkeypatch, project / "cache", errno.EROFS, WRITES)
    status = main(command)
    line = one_line_error(capsys)
    assert status in (0, 2), line
    if status == 2:
        assert "read-only" in line.lower() and str(project / "cache") in line, line
    monkeypatch.undo()
    assert sorted(str(p) for p in (project / "cache").rglob("*")) == before


def stale_code(project: Path) -> None:
    """Give every stored result a record of other code, as an edit would."""
    from taskproc.store import Holder, LocalStore, new_runner, read_record

    store = LocalStore(project / "cache")
    for name in store.task_names():
        for task_id in store.task_ids(name) or ():
            loc = store.locate(name, task_id)
            record = read_record(store, loc)
            assert record is not None
            lease = store.claim(loc, new_runner())
            assert not isinstance(lease, Holder)
            with lease:
                lease.rekey(record, record._replace(code_id="0" * 24))


def test_accept_on_a_full_disk_keeps_the_result(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale_code(project)
    before = {p: p.read_bytes() for p in (project / "cache").rglob("result.pkl.gz")}
    capsys.readouterr()
    real_write = os.write

    def full(fd: int, data: Any) -> int:
        if len(data) > 100:  # results and records, not the claim's few bytes
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    status = main(["accept", "pipe.py", "-o", "cache"])
    monkeypatch.undo()
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "No space left on device" in err and str(project / "cache") in err
    assert {p: p.read_bytes() for p in (project / "cache").rglob("result.pkl.gz")} == before
    assert not list((project / "cache").rglob("claim"))
