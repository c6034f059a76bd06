"""What a failure is, and what it is not: a task's `sys.exit` is its failure; a result that
cannot be unpickled here is the loading task's failure, never corruption; a result in the
wrong folder is corruption."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from concurrent.futures import Executor
from pathlib import Path

import pytest

from taskproc import FailedTaskError, Graph, InlineExecutor, Task

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


class Exits(Task):
    def __init__(self, code: int | None) -> None:
        self.code = code

    def run_task(self) -> int:
        sys.exit(self.code)


class Closes(Task):
    def run_task(self) -> int:
        raise GeneratorExit


class Fine(Task):
    def run_task(self) -> str:
        return "fine"


class After(Task):
    def __init__(self, up: Task) -> None:
        self.up = up
        self.fine = Fine()

    def run_task(self) -> object:
        return self.up.get_result()


@pytest.mark.parametrize("code", [0, 3])
def test_sys_exit_in_a_task_is_its_failure(cache: Path, executor: Executor, code: int) -> None:
    with Graph(cache), pytest.raises(ExceptionGroup) as info:
        After(Exits(code)).run_graph(executor=executor, error_handling="lazy")
    (err,) = info.value.exceptions
    assert isinstance(err, FailedTaskError) and err.task_name == Exits.task_name
    assert f"sys.exit({code})" in err.error_message
    assert "self.code" in err.traceback  # the task's own line
    with Graph(cache):
        assert Fine().get_result() == "fine"  # 'lazy' ran the rest
        error = Path(Exits(code).task_worker.task_dir, "error.txt").read_text()
    assert f"sys.exit({code})" in error


def test_generator_exit_in_a_task_is_its_failure(cache: Path, executor: Executor) -> None:
    with Graph(cache), pytest.raises(ExceptionGroup) as info:
        After(Closes()).run_graph(executor=executor)
    (err,) = info.value.exceptions
    assert isinstance(err, FailedTaskError) and err.error_type == "GeneratorExit"


PIPELINE = """
import sys
from taskproc import Task

class Bad(Task):
    def run_task(self):
        sys.exit({code})

class Main(Task):
    def __init__(self):
        self.b = Bad()

    def run_task(self):
        return self.b.get_result()
"""


@pytest.mark.parametrize("kind", ["process", "thread", "local"])
@pytest.mark.parametrize("code", [0, 2])
def test_cli_exits_1_when_a_task_calls_sys_exit(tmp_path: Path, kind: str, code: int) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE.format(code=code))
    proc = subprocess.run(
        [sys.executable, "-m", "taskproc", "pipe.py", "-o", "cache", "-t", kind],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "FAILED pipe.Bad()" in proc.stderr and f"sys.exit({code})" in proc.stderr


# -- results that cannot be loaded here ------------------------------------------------------


def _cannot_rebuild() -> object:
    raise ValueError("this result cannot be rebuilt here")


class Fragile:
    """Pickles fine; unpickling it raises (as a class missing on the loading node would)."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_cannot_rebuild, ())


class Make(Task):
    def run_task(self) -> Fragile:
        return Fragile()


class Use(Task):
    def __init__(self) -> None:
        self.made = Make()

    def run_task(self) -> str:
        return type(self.made.get_result()).__name__


def test_an_unloadable_result_fails_its_reader_and_stays(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        Make().run_graph(executor=InlineExecutor())
        result = Path(Make().task_worker.result_path)
        before = result.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "corrupt, recomputing" warning
        with Graph(cache), pytest.raises(ExceptionGroup) as info:
            Use().run_graph(executor=executor)
    (err,) = info.value.exceptions
    assert isinstance(err, FailedTaskError) and err.task_name == Use.task_name
    assert err.error_type == "ValueError" and "cannot be rebuilt" in err.error_message
    assert "_cannot_rebuild" in err.traceback
    assert result.read_bytes() == before  # kept, not recomputed
    with Graph(cache), pytest.raises(ExceptionGroup) as again:
        Make().run_graph(executor=InlineExecutor())  # cached: only loading it fails
    (err,) = again.value.exceptions
    assert isinstance(err, FailedTaskError) and err.task_name == Make.task_name
    assert "cannot be loaded" in err.error_message and result.read_bytes() == before


# -- a result in the wrong folder ------------------------------------------------------------


class Leaf(Task):
    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> int:
        return self.n


class Total(Task):
    def __init__(self) -> None:
        self.leaves = [Leaf(1), Leaf(2)]

    def run_task(self) -> int:
        return sum(leaf.get_result() for leaf in self.leaves)


def test_a_result_copied_into_another_tasks_folder_is_corrupt(
    cache: Path, executor: Executor
) -> None:
    with Graph(cache):
        assert Total().run_graph(executor=executor)[0] == 3
        one, two = (Path(Leaf(n).task_worker.result_path) for n in (1, 2))
        shutil.copyfile(one, two)
        Total().clear_task()
        with pytest.warns(UserWarning, match="not of .*Leaf"):
            total, stats = Total().run_graph(executor=executor)
    assert total == 3 and stats["stats"][Leaf.task_name] == 1


# -- messages -----------------------------------------------------------------------------


class Echo(Task):
    def __init__(self, x: object) -> None:
        self.x = x

    def run_task(self) -> object:
        return self.x


@pytest.mark.parametrize("value", [10**5000, [10**5000]], ids=["int", "nested"])
def test_an_int_too_long_to_write_names_the_task_and_argument(cache: Path, value: object) -> None:
    from taskproc import ArgumentError

    with Graph(cache), pytest.raises(ArgumentError) as info:
        Echo(value)
    assert info.value.task_name == Echo.task_name and "argument 'x'" in str(info.value)


def test_text_that_is_not_unicode_is_a_bad_argument(cache: Path, tmp_path: Path) -> None:
    from taskproc import ArgumentError

    with Graph(cache), pytest.raises(ArgumentError, match="argument 'x' holds text that is not"):
        Echo("\ud800")
    (tmp_path / "echo.py").write_text(
        "from taskproc import Task\n\n"
        "class Main(Task):\n"
        "    def __init__(self, x: str = 'a'):\n"
        "        self.x = x\n\n"
        "    def run_task(self):\n"
        "        return self.x\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "taskproc", "echo.py", "-o", "c", "--kwargs", '{"x": "\\ud800"}'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "argument 'x'" in proc.stderr


def test_a_result_the_runner_may_not_read_is_one_line_with_the_fix(
    cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """(Tests run as root, which may read anything: the denial is simulated.)"""
    import os

    from taskproc import CacheError
    from taskproc.cli import main

    with Graph(cache):
        Leaf(1).run_graph(executor=InlineExecutor())
    real_open = os.open

    def denied(path: str, flags: int, *args: int) -> int:
        if str(path).endswith("result.pkl.gz"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", denied)
    with Graph(cache), pytest.raises(CacheError, match="permission denied.*chmod"):
        Leaf(1).run_graph(executor=InlineExecutor())
    for command in (["status", str(cache)], ["ls", str(cache), Leaf.task_name]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "result.pkl.gz: permission denied" in err, err
