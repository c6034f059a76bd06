"""Bad input: one row per mistake a user can make, each answered by a one-line message.

Every row names what was wrong (the task or the option) and how to fix it, and leaves the cache
as it was: a fixture caches the result of an unrelated task first and checks afterwards that its
file is still there, byte for byte. Rows that reveal a poor message are kept, asserting the right
behaviour, and marked ``xfail(strict=True)`` with ``engine: ...`` as the reason.

Kinds of rows (`Case.expect`):

- ``error``: the Python API raises `Case.raises` (a `TaskprocError`) whose message is one line;
- ``failure``: ``run_graph`` raises an ``ExceptionGroup`` of `FailedTaskError`; their message is
  multi-line (it carries the task's traceback), so the *first line* must say it all;
- ``either``: one of the two (where both are a reasonable answer);
- ``usage``: ``python -m taskproc ...`` exits with 2 and prints one line, no traceback;
- ``cli-failure``: ``python -m taskproc ...`` exits with 1 and a ``FAILED`` line says it all.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from taskproc import (
    ArgumentError,
    CacheError,
    ConfigError,
    CycleError,
    FailedTaskError,
    Graph,
    GraphError,
    InlineExecutor,
    ResultMissingError,
    Task,
    TaskDefinitionError,
    TaskprocError,
)

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

from conftest import make

Expect = Literal["error", "failure", "either", "usage", "cli-failure"]
ALL = ("inline", "thread", "process")
BIG = 2_000_000  # bytes of incompressible result: far more than the small tmpfs holds

# -- tasks used by the rows ------------------------------------------------------------------


class Keep(Task):
    """The unrelated task whose cached result must survive every row."""

    def run_task(self) -> str:
        return "kept"


class Small(Task):
    def run_task(self) -> int:
        return 1


class Arg(Task):
    def __init__(self, x: Any) -> None:
        self.x = x

    def run_task(self) -> Any:
        return self.x


class Opaque:
    """Hashable, but not a value taskproc can put in a task's identity."""

    def __repr__(self) -> str:
        return "Opaque()"


class Holder(Task):
    """Builds an upstream task with a bad argument inside its own __init__."""

    def __init__(self) -> None:
        self.up = Arg(object())

    def run_task(self) -> int:
        return 0


class CycleA(Task):
    def __init__(self, n: int) -> None:
        self.b = CycleB(n)

    def run_task(self) -> int:
        return 0


class CycleB(Task):
    def __init__(self, n: int) -> None:
        self.a = CycleA(n)

    def run_task(self) -> int:
        return 0


class Boom(Task):
    def run_task(self) -> int:
        raise ValueError("boom")


class LockResult(Task):
    def run_task(self) -> Any:
        return threading.Lock()


class LockAttr(Task):
    def __init__(self) -> None:
        self.lock = threading.Lock()

    def run_task(self) -> int:
        return 0


class Big(Task):
    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> bytes:
        import os

        return os.urandom(self.n)


class UsesDir(Task):
    def run_task(self) -> str:
        return str(self.task_directory)


# -- the context of one row ----------------------------------------------------------------


@dataclass
class Ctx:
    """What a row's setup and action work with; `folder` is the cache a row aims at."""

    tmp_path: Path
    kind: str
    cache: Path
    folder: Path
    kept: dict[Path, bytes] = field(default_factory=dict)
    mounts: list[Path] = field(default_factory=list)
    stderr: str = ""  # of the last command line run
    _executor: Executor | None = None

    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = make(self.kind)
        return self._executor

    def run(self, make_task: Callable[[], Task], folder: Path | None = None) -> Any:
        with Graph(folder or self.folder):
            task = make_task()
        return task.run_graph(executor=self.executor())[0]

    def keep(self, cache: Path) -> None:
        """Cache Keep's result in `cache` and remember its bytes."""
        with Graph(cache):
            task = Keep()
        assert task.run_graph(executor=InlineExecutor())[0] == "kept"
        path = task.task_worker.result_path
        self.kept[path] = path.read_bytes()

    def write(self, name: str, source: str) -> Path:
        path = self.tmp_path / name
        path.write_text(textwrap.dedent(source))
        return path

    def mount(self, name: str, size: str = "256k") -> Path:
        """A small tmpfs at tmp_path/name (unmounted when the row ends)."""
        path = self.tmp_path / name
        path.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip()}")
        self.mounts.append(path)
        return path

    def read_only(self, path: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [self.fill(a) for a in args]
        proc = subprocess.run(
            [sys.executable, "-m", "taskproc", *argv],
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.stderr = proc.stderr
        return proc

    def fill(self, text: str) -> str:
        return (
            text.replace("{cache}", str(self.cache))
            .replace("{folder}", str(self.folder))
            .replace("{tmp}", str(self.tmp_path))
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for path in reversed(self.mounts):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Ctx], None]
    action: Callable[[Ctx], Any]
    expected_fragments: tuple[str, ...]
    expect: Expect = "error"
    raises: type[TaskprocError] = TaskprocError
    executors: tuple[str, ...] = ("inline",)
    post: Callable[[Ctx], None] | None = None  # more checks, after "nothing lost"
    gap: str = ""  # an engine gap: the row is expected to fail until the engine is fixed


def nothing(ctx: Ctx) -> None:
    pass


def build(make_task: Callable[[], object]) -> Callable[[Ctx], Any]:
    """An action that builds a task in the row's cache folder."""

    def action(ctx: Ctx) -> Any:
        with Graph(ctx.folder):
            return make_task()

    return action


def run(make_task: Callable[[], Task], **options: Any) -> Callable[[Ctx], Any]:
    """An action that builds a task and runs it on the row's executor with `options`."""

    def action(ctx: Ctx) -> Any:
        with Graph(ctx.folder):
            task = make_task()
        options.setdefault("executor", ctx.executor())
        return task.run_graph(**options)

    return action


def files(source: str) -> Callable[[Ctx], None]:
    """A setup that writes pipeline files, given as ``name.py: <source>`` blocks."""

    def setup(ctx: Ctx) -> None:
        for block in textwrap.dedent(source).split("### ")[1:]:
            name, _, body = block.partition("\n")
            ctx.write(name.strip(), body)

    return setup


def cli(*args: str) -> Callable[[Ctx], Any]:
    return lambda ctx: ctx.cli(*args)


# -- task definition -------------------------------------------------------------------------


def define(**attrs: Any) -> Callable[[Ctx], Any]:
    """An action that defines a Task subclass named Bad with the given class attributes."""

    def action(ctx: Ctx) -> Any:
        return type("Bad", (Task,), {"__module__": __name__, **attrs})

    return action


class _AssignsBuiltin(Task):
    def __init__(self) -> None:
        self.task_directory = Path("elsewhere")


def _name_clash(ctx: Ctx) -> None:
    class Other(Task):
        task_name = Small.task_name

    with Graph(ctx.folder):
        Small()
        Other()


def _get_result(ctx: Ctx) -> Any:
    with Graph(ctx.folder):
        return Arg(5).get_result()


def _nested(ctx: Ctx) -> None:
    with Graph(ctx.folder), Graph(ctx.tmp_path / "other"):
        pass


def _self_containing() -> Task:
    items: list[Any] = []
    items.append(items)
    return Arg(items)


def _not_a_cache(ctx: Ctx) -> None:
    ctx.folder = ctx.tmp_path / "documents"
    ctx.folder.mkdir()
    (ctx.folder / "thesis.tex").write_text("precious")


def _not_a_cache_kept(ctx: Ctx) -> None:
    assert (ctx.folder / "thesis.tex").read_text() == "precious"


def _clear_all(ctx: Ctx) -> None:
    with Graph(ctx.folder, clear_all=True):
        pass


def _clear_all_outside(ctx: Ctx) -> None:
    Arg.clear_all_tasks()


def _shut_down(ctx: Ctx) -> Any:
    ctx.executor().shutdown(wait=True)
    with Graph(ctx.folder):
        task = Small()
    return task.run_graph(executor=ctx.executor())


# -- the cache folder ------------------------------------------------------------------------


def _small_dir(ctx: Ctx) -> Path:
    with Graph(ctx.folder):
        task: Task = Small()
    folder: Path = task.task_worker.task_dir
    return folder


def _full_disk(ctx: Ctx) -> None:
    ctx.folder = ctx.mount("full", "256k")
    ctx.keep(ctx.folder)


def _full_disk_nothing_half_written(ctx: Ctx) -> None:
    assert not list(ctx.folder.rglob("*.tmp")), "a temporary file was left behind"
    assert not list(ctx.folder.glob("*.Big/results/*/result.pkl.gz"))
    with pytest.raises(ExceptionGroup):  # the next run does not accept anything half-written
        ctx.run(lambda: Big(BIG))


def _read_only_fresh(ctx: Ctx) -> None:
    ctx.folder = ctx.mount("ro")
    ctx.read_only(ctx.folder)


def _read_only_cache(ctx: Ctx) -> None:
    ctx.folder = ctx.mount("ro")
    ctx.keep(ctx.folder)
    ctx.read_only(ctx.folder)


def _read_only_still_serves(ctx: Ctx) -> None:
    with Graph(ctx.folder):
        task = Keep()
    assert task.run_graph(executor=InlineExecutor())[0] == "kept"


def _cache_is_file(ctx: Ctx) -> None:
    ctx.folder = ctx.tmp_path / "cache.txt"
    ctx.folder.write_text("not a folder")


def _marker_is_file(ctx: Ctx) -> None:
    marker = ctx.folder / ".taskproc"
    marker.rename(ctx.tmp_path / "marker-aside")
    marker.write_text("not a folder")


def _task_name_is_file(ctx: Ctx) -> None:
    (ctx.folder / Small.task_name).write_text("not a folder")


def _task_dir_is_file(ctx: Ctx) -> None:
    folder = _small_dir(ctx)
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder")


def _result_is_dir(ctx: Ctx) -> None:
    (_small_dir(ctx) / "result.pkl.gz").mkdir(parents=True)


def _data_is_file(ctx: Ctx) -> None:
    with Graph(ctx.folder):
        folder = UsesDir().task_worker.task_dir
    folder.mkdir(parents=True)
    (folder / "data").write_text("not a folder")


# -- the command line ----------------------------------------------------------------------

PIPE = """
### pipe.py
from taskproc import Task

class Square(Task):
    def __init__(self, x: int):
        self.x = x

    def run_task(self) -> int:
        return self.x * self.x

class Main(Task):
    def __init__(self, n: int = 2):
        self.squares = [Square(i) for i in range(n)]

    def run_task(self) -> int:
        return sum(s.get_result() for s in self.squares)
"""

OTHER_FILES = """
### nomain.py
from taskproc import Task

class Other(Task):
    def run_task(self) -> int:
        return 1
### notatask.py
def Main():
    return 1
### fail.py
from taskproc import Task

class Main(Task):
    def run_task(self) -> int:
        raise ValueError("boom")
### cyc.py
from taskproc import Task

class Main(Task):
    def __init__(self):
        self.me = Main()

    def run_task(self) -> int:
        return 1
### lbl.py
from taskproc import Task

class Main(Task):
    task_label = 3

    def run_task(self) -> int:
        return 1
### dflt.py
from taskproc import DefaultCliArguments, Task

DefaultCliArguments(exec_type="gpu").populate()

class Main(Task):
    def run_task(self) -> int:
        return 1
"""

pipe = files(PIPE)
other = files(OTHER_FILES)


def _only_user_frames(ctx: Ctx) -> None:
    frames = [x for x in ctx.stderr.splitlines() if x.lstrip().startswith('File "')]
    assert frames, ctx.stderr
    assert not any("/taskproc/" in x for x in frames), "\n".join(frames)


def _cli_read_only(ctx: Ctx) -> None:
    pipe(ctx)
    _read_only_fresh(ctx)


GAP_SIGNATURE = (
    "engine: a wrong call of a task names the parameter but not the fix; append what it takes, "
    "as the CLI does ('test_bad_input.Arg takes (x: Any)')"
)
GAP_NOT_MAPPING = (
    "engine: a rate_limits/prefixes value that is not a mapping raises a bare AttributeError "
    "from RunOptions.make; expected ConfigError 'rate_limits must be a mapping label -> int'"
)
GAP_FILE_FOR_FOLDER = (
    "engine: a file where the cache needs a folder is reported as 'File exists'/'Not a "
    "directory' with 'check its permissions and free space' (or a raw OSError); expected "
    "'<path> is a file where taskproc needs a folder; remove it'"
)
GAP_RESULT_DIR = (
    "engine: a folder named result.pkl.gz escapes plan.read_checked as a raw IsADirectoryError "
    "from resultfile.read_record; expected a TaskprocError naming the path and 'remove it'"
)
GAP_FULL_DISK = (
    "engine: ENOSPC while writing a result is reported as 'the result cannot be pickled ... "
    "return plain data'; expected 'No space left on device ... free space in the cache folder'"
)
GAP_PREFIX_FAILS = (
    "engine: a failing prefix command's first line names neither the command nor where its "
    "output is; expected \"prefix command 'sh' exited with status 3 ... see prefix_stderr.txt\""
)
GAP_SHUT_DOWN = (
    "engine: a shut-down executor gives 'RuntimeError: cannot schedule new futures after "
    "shutdown' with no fix; expected 'the executor is shut down; pass a running executor'"
)
GAP_CLI_TRACEBACK = (
    "engine: a failed task's traceback starts with taskproc's own frames (job.py execute, "
    "_call_with_timeout); expected only the task's frames, as print_user_traceback does"
)

CASES: list[Case] = [
    # -- task definition
    Case(
        "label-int",
        nothing,
        define(task_label=3),
        ("test_bad_input.Bad:", "task_label must be a str or a sequence of str", "got int"),
        raises=TaskDefinitionError,
    ),
    Case(
        "label-list-with-int",
        nothing,
        define(task_label=["gpu", 2]),
        ("test_bad_input.Bad:", "task_label must be a str or a sequence of str"),
        raises=TaskDefinitionError,
    ),
    Case(
        "compress-level-out-of-range",
        nothing,
        define(task_compress_level=10),
        ("test_bad_input.Bad:", "task_compress_level must be an int from 0 to 9", "10"),
        raises=TaskDefinitionError,
    ),
    Case(
        "task-name-with-space",
        nothing,
        define(task_name="my task"),
        ("test_bad_input.Bad:", "task_name must be dotted identifiers", "'my task'"),
        raises=TaskDefinitionError,
    ),
    Case(
        "timeout-zero",
        nothing,
        define(task_timeout=0),
        ("test_bad_input.Bad:", "task_timeout must be None or a finite number of seconds > 0"),
        raises=TaskDefinitionError,
    ),
    Case(
        "retries-negative",
        nothing,
        define(task_retries=-1),
        ("test_bad_input.Bad:", "task_retries must be an int >= 0"),
        raises=TaskDefinitionError,
    ),
    Case(
        "overrides-builtin",
        nothing,
        define(get_result=lambda self: 1),
        ("test_bad_input.Bad:", "'get_result' is a taskproc built-in", "rename it"),
        raises=TaskDefinitionError,
    ),
    Case(
        "assigns-builtin-in-init",
        nothing,
        build(_AssignsBuiltin),
        ("test_bad_input._AssignsBuiltin()", "'task_directory' is a taskproc built-in", "rename"),
        raises=TaskDefinitionError,
    ),
    Case(
        "two-classes-one-name",
        nothing,
        _name_clash,
        ("test_bad_input.Small:", "two different classes share this task name", "rename one"),
        raises=TaskDefinitionError,
    ),
    Case(
        "argument-object",
        nothing,
        build(lambda: Arg(object())),
        (
            "test_bad_input.Arg:",
            "argument 'x'",
            "builtins.object",
            "make other objects inside a task",
        ),
        raises=ArgumentError,
    ),
    Case(
        "argument-dict-key-not-a-value",
        nothing,
        build(lambda: Arg({1: "a", Opaque(): "b"})),
        ("test_bad_input.Arg:", "'x key Opaque()'", "test_bad_input.Opaque"),
        raises=ArgumentError,
    ),
    Case(
        "argument-dict-key-a-future",
        nothing,
        build(lambda: Arg({Arg(1): "a"})),
        ("test_bad_input.Arg:", "a future cannot be a dict key"),
        raises=ArgumentError,
    ),
    Case(
        "argument-contains-itself",
        nothing,
        build(_self_containing),
        ("test_bad_input.Arg:", "'x'", "contains itself"),
        raises=ArgumentError,
    ),
    Case(
        "argument-of-an-upstream-task",
        nothing,
        build(Holder),
        ("test_bad_input.Arg:", "argument 'x'", "builtins.object"),
        raises=ArgumentError,
    ),
    Case(
        "unknown-keyword",
        nothing,
        build(lambda: Arg(1, y=2)),  # type: ignore[call-arg]
        ("test_bad_input.Arg:", "'y'", "takes (x"),
        raises=ArgumentError,
    ),
    Case(
        "missing-argument",
        nothing,
        build(lambda: Arg()),  # type: ignore[call-arg]
        ("test_bad_input.Arg:", "'x'", "takes (x"),
        raises=ArgumentError,
    ),
    # -- the graph
    Case(
        "no-graph",
        nothing,
        lambda ctx: Arg(1),
        ("test_bad_input.Arg:", "inside 'with Graph(cache_dir):'"),
        raises=GraphError,
    ),
    Case(
        "nested-graphs",
        nothing,
        _nested,
        ("opened inside Graph(", "cannot be nested", "close the outer one first"),
        raises=GraphError,
    ),
    Case(
        "cycle",
        nothing,
        run(lambda: CycleA(1)),
        (
            "test_bad_input.CycleA(n=1) -> test_bad_input.CycleB(n=1) -> "
            "test_bad_input.CycleA(n=1)",
            "cannot depend on itself",
        ),
        raises=CycleError,
    ),
    Case(
        "clear-all-tasks-outside-graph",
        nothing,
        _clear_all_outside,
        ("test_bad_input.Arg.clear_all_tasks()", "inside 'with Graph(cache_dir):'"),
        raises=GraphError,
    ),
    Case(
        "result-before-run",
        nothing,
        _get_result,
        ("test_bad_input.Arg(x=5)", "no result in the cache yet", "run_graph() first"),
        raises=ResultMissingError,
    ),
    Case(
        "clear-all-of-a-non-cache",
        _not_a_cache,
        _clear_all,
        ("{folder}", "is not a taskproc cache", "refusing to clear it"),
        raises=CacheError,
        post=_not_a_cache_kept,
    ),
    # -- limits
    Case(
        "limit-zero",
        nothing,
        run(Small, rate_limits={"gpu": 0}),
        ("rate_limits['gpu']", "must be an int >= 1", "got 0"),
        raises=ConfigError,
    ),
    Case(
        "limit-not-int",
        nothing,
        run(Small, rate_limits={"gpu": "2"}),
        ("rate_limits['gpu']", "must be an int >= 1", "got '2'"),
        raises=ConfigError,
    ),
    Case(
        "limit-key-not-label",
        nothing,
        run(Small, rate_limits={1: 2}),
        ("rate_limits keys must be labels (str)", "got 1"),
        raises=ConfigError,
    ),
    Case(
        "limits-not-a-mapping",
        nothing,
        run(Small, rate_limits=[("gpu", 1)]),
        ("rate_limits", "mapping"),
        raises=ConfigError,
    ),
    # -- prefixes
    Case(
        "prefix-unbalanced-quote",
        nothing,
        run(Small, prefixes={"gpu": "srun 'x"}),
        ("prefixes['gpu'] is not a valid command", "No closing quotation"),
        raises=ConfigError,
    ),
    Case(
        "prefix-not-a-string",
        nothing,
        run(Small, prefixes={"gpu": ["srun"]}),
        ("prefixes must map labels to command strings", "'gpu'"),
        raises=ConfigError,
    ),
    Case(
        "prefixes-not-a-mapping",
        nothing,
        run(Small, prefixes="srun"),
        ("prefixes", "mapping"),
        raises=ConfigError,
    ),
    Case(
        "prefix-not-found",
        nothing,
        run(Small, prefixes={"*": "no-such-cmd-xyz --flag"}),
        (
            "test_bad_input.Small() failed",
            "'no-such-cmd-xyz' cannot be started",
            "install it or fix the prefixes option",
        ),
        expect="failure",
    ),
    Case(
        "prefix-fails",
        nothing,
        run(Small, prefixes={"*": "sh -c 'echo cluster says no >&2; exit 3' --"}),
        ("test_bad_input.Small() failed", "'sh'", "status 3", "prefix_stderr.txt"),
        expect="failure",
    ),
    # -- executors and run options
    Case(
        "executor-by-name",
        nothing,
        run(Small, executor="thread"),
        ("executor must be a concurrent.futures.Executor", "ThreadPoolExecutor(4)", "got str"),
        raises=ConfigError,
    ),
    Case(
        "error-handling-unknown",
        nothing,
        run(Small, error_handling="never"),
        ("error_handling must be one of immediate, eager, lazy", "got 'never'"),
        raises=ConfigError,
    ),
    Case(
        "max-workers-zero",
        nothing,
        run(Small, max_workers=0),
        ("max_workers must be an int >= 1", "got 0"),
        raises=ConfigError,
    ),
    Case(
        "executor-shut-down",
        nothing,
        _shut_down,
        ("test_bad_input.Small()", "executor", "shut"),
        expect="either",
        executors=("thread", "process"),
    ),
    Case(
        "attribute-not-picklable-for-a-process",
        nothing,
        run(LockAttr),
        (
            "test_bad_input.LockAttr() failed",
            "attributes cannot be pickled for a worker process",
            "run with a thread executor",
        ),
        expect="failure",
        executors=("process",),
    ),
    # -- results
    Case(
        "task-raises",
        nothing,
        run(Boom),
        ("test_bad_input.Boom() failed: ValueError: boom",),
        expect="failure",
        executors=ALL,
    ),
    Case(
        "result-not-picklable",
        nothing,
        run(LockResult),
        (
            "test_bad_input.LockResult() failed",
            "cannot be pickled",
            "return plain data, or objects that cloudpickle can pickle",
        ),
        expect="failure",
        executors=ALL,
    ),
    # -- the cache folder
    Case(
        "full-disk",
        _full_disk,
        run(lambda: Big(BIG)),
        ("test_bad_input.Big(n=2000000) failed", "No space left on device", "free space"),
        expect="failure",
        executors=ALL,
        post=_full_disk_nothing_half_written,
    ),
    Case(
        "read-only-new-folder",
        _read_only_fresh,
        run(Small),
        ("cannot use '{folder}' as a cache folder", "Read-only file system", "writable folder"),
        raises=CacheError,
    ),
    Case(
        "read-only-cache",
        _read_only_cache,
        run(Small),
        (
            "test_bad_input.Small() failed",
            "Read-only file system: {folder}/test_bad_input.Small",
            "check its permissions",
        ),
        expect="failure",
        executors=ALL,
        post=_read_only_still_serves,
    ),
    Case(
        "cache-is-a-file",
        _cache_is_file,
        run(Small),
        ("'{folder}'", "as a cache folder", "choose another folder"),
        raises=CacheError,
    ),
    Case(
        "marker-is-a-file",
        _marker_is_file,
        run(Small),
        ("{folder}/.taskproc", "remove"),
        raises=CacheError,
    ),
    Case(
        "task-name-folder-is-a-file",
        _task_name_is_file,
        run(Small),
        ("test_bad_input.Small() failed", "{folder}/test_bad_input.Small", "remove"),
        expect="failure",
    ),
    Case(
        "task-folder-is-a-file",
        _task_dir_is_file,
        run(Small),
        ("test_bad_input.Small() failed", "{folder}/test_bad_input.Small/results/", "remove"),
        expect="failure",
    ),
    Case(
        "data-folder-is-a-file",
        _data_is_file,
        run(UsesDir),
        ("test_bad_input.UsesDir() failed", "/data", "remove"),
        expect="failure",
    ),
    Case(
        "result-file-is-a-folder",
        _result_is_dir,
        run(Small),
        ("test_bad_input.Small()", "result.pkl.gz", "remove"),
        expect="either",
    ),
    # -- the command line
    Case(
        "cli-missing-file",
        nothing,
        cli("nope.py", "-o", "{cache}"),
        ("nope.py: no such file", "give the path of a pipeline .py file"),
        expect="usage",
    ),
    Case(
        "cli-no-main",
        other,
        cli("nomain.py", "-o", "{cache}"),
        ("nomain.py: no task named Main", "define 'class Main(Task)'"),
        expect="usage",
    ),
    Case(
        "cli-main-not-a-task",
        other,
        cli("notatask.py", "-o", "{cache}"),
        ("notatask.py: Main must be a Task subclass", "define 'class Main(Task)'"),
        expect="usage",
    ),
    Case(
        "cli-kwargs-bad-json",
        pipe,
        cli("pipe.py", "-o", "{cache}", "--kwargs", "{n: 1"),
        ("--kwargs", "must be JSON", "'{n: 1'"),
        expect="usage",
    ),
    Case(
        "cli-kwargs-not-an-object",
        pipe,
        cli("pipe.py", "-o", "{cache}", "--kwargs", "[1]"),
        ("--kwargs", "JSON object"),
        expect="usage",
    ),
    Case(
        "cli-kwargs-unknown-parameter",
        pipe,
        cli("pipe.py", "-o", "{cache}", "--kwargs", '{"m": 1}'),
        ("--kwargs", "'m'", "pipe.Main takes (n: int = 2)"),
        expect="usage",
    ),
    Case(
        "cli-unknown-executor",
        pipe,
        cli("pipe.py", "-o", "{cache}", "-t", "gpu"),
        ("--exec-type", "'gpu'", "process", "thread", "local"),
        expect="usage",
    ),
    Case(
        "cli-zero-workers",
        pipe,
        cli("pipe.py", "-o", "{cache}", "-n", "0"),
        ("--num-workers", "must be an integer >= 1"),
        expect="usage",
    ),
    Case(
        "cli-unknown-log-level",
        pipe,
        cli("pipe.py", "-o", "{cache}", "-l", "LOUD"),
        ("--loglevel", "'LOUD'", "DEBUG"),
        expect="usage",
    ),
    Case(
        "cli-unknown-option",
        pipe,
        cli("pipe.py", "-o", "{cache}", "--bogus"),
        ("--bogus", "--help"),
        expect="usage",
    ),
    Case(
        "cli-rate-limit-zero",
        pipe,
        cli("pipe.py", "-o", "{cache}", "--rate-limits", '{"a": 0}'),
        ("--rate-limits", "'a'", "must be an int >= 1"),
        expect="usage",
    ),
    Case(
        "cli-bad-default-in-file",
        other,
        cli("dflt.py", "-o", "{cache}"),
        ("-t/--exec-type must be one of process, thread, local", "'gpu'"),
        expect="usage",
    ),
    Case(
        "cli-bad-label-in-file",
        other,
        cli("lbl.py", "-o", "{cache}"),
        ("lbl.Main:", "task_label must be a str or a sequence of str"),
        expect="usage",
    ),
    Case(
        "cli-cycle",
        other,
        cli("cyc.py", "-o", "{cache}"),
        ("cyc.Main() -> cyc.Main()", "cannot depend on itself"),
        expect="usage",
    ),
    Case(
        "cli-no-cache-folder",
        pipe,
        cli("pipe.py"),
        ("no cache folder", "pass -o/--cache-dir CACHE"),
        expect="usage",
    ),
    Case(
        "cli-cache-is-a-file",
        pipe,
        cli("pipe.py", "-o", "pipe.py"),
        ("-o pipe.py: not a folder", "give a new folder or an existing cache"),
        expect="usage",
    ),
    Case(
        "cli-read-only-cache",
        _cli_read_only,
        cli("pipe.py", "-o", "{folder}"),
        ("{folder}", "Read-only file system", "writable folder"),
        expect="usage",
    ),
    Case(
        "cli-prefix-not-found",
        pipe,
        cli("pipe.py", "-o", "{cache}", "--prefixes", '{"*": "no-such-cmd-xyz"}'),
        ("pipe.Square(x=", "'no-such-cmd-xyz' cannot be started", "fix the prefixes option"),
        expect="cli-failure",
    ),
    Case(
        "cli-task-fails",
        other,
        cli("fail.py", "-o", "{cache}"),
        ("fail.Main() failed: ValueError: boom",),
        expect="cli-failure",
    ),
    Case(
        "cli-task-traceback-has-only-user-frames",
        other,
        cli("fail.py", "-o", "{cache}"),
        ("fail.Main() failed: ValueError: boom",),
        expect="cli-failure",
        post=_only_user_frames,
    ),
]


def _params() -> Iterator[Any]:
    for case in CASES:
        for kind in case.executors:
            marks = [pytest.mark.xfail(strict=True, reason=case.gap)] if case.gap else []
            name = case.name if len(case.executors) == 1 else f"{case.name}-{kind}"
            yield pytest.param(case, kind, id=name, marks=marks)


# -- checking a row --------------------------------------------------------------------------


def _observe(case: Case, ctx: Ctx) -> tuple[str, list[str]]:
    """Run the row's action: what kind of answer it gave, and the lines to check."""
    if case.expect in ("usage", "cli-failure"):
        proc = case.action(ctx)
        assert isinstance(proc, subprocess.CompletedProcess)
        return f"exit {proc.returncode}", proc.stderr.strip().splitlines()
    try:
        case.action(ctx)
    except ExceptionGroup as group:
        failures = group.exceptions
        assert all(isinstance(e, FailedTaskError) for e in failures), repr(failures)
        return "failure", [str(e).splitlines()[0] for e in failures]
    except TaskprocError as exc:
        return type(exc).__name__, str(exc).split("\n")
    except Exception as exc:  # not a TaskprocError: a raw error from inside taskproc
        return f"raw {type(exc).__name__}", str(exc).split("\n")
    return "no error", []


def _check(case: Case, ctx: Ctx, answer: str, lines: list[str]) -> None:
    fragments = [ctx.fill(f) for f in case.expected_fragments]
    if case.expect == "usage":
        assert answer == "exit 2", (answer, lines)
        assert not any("Traceback" in line for line in lines), "\n".join(lines)
        assert len(lines) == 1, "\n".join(lines)
        line = lines[0]
    elif case.expect == "cli-failure":
        assert answer == "exit 1", (answer, lines)
        failed = [line for line in lines if line.startswith("FAILED ")]
        assert failed, "\n".join(lines)
        line = failed[0]
    elif case.expect == "failure" or (case.expect == "either" and answer == "failure"):
        assert answer == "failure", (answer, lines)
        line = lines[0]
    else:
        expected = case.raises.__name__ if case.expect == "error" else "a TaskprocError"
        assert answer not in ("failure", "no error") and not answer.startswith("raw "), (
            f"expected {expected}, got {answer}: {lines}"
        )
        if case.expect == "error":
            assert answer == case.raises.__name__, (answer, lines)
        assert len(lines) == 1, "\n".join(lines)
        line = lines[0]
    missing = [f for f in fragments if f not in line]
    assert not missing, f"{missing} not in {line!r}"


@pytest.mark.parametrize(("case", "kind"), list(_params()))
def test_bad_input(case: Case, kind: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ctx = Ctx(tmp_path, kind, cache, cache)
    try:
        ctx.keep(cache)
        case.setup(ctx)
        answer, lines = _observe(case, ctx)
        for path, data in ctx.kept.items():  # nothing already cached was lost
            assert path.is_file(), f"{path} was lost"
            assert path.read_bytes() == data, f"{path} was changed"
        if case.post is not None:
            case.post(ctx)
        _check(case, ctx, answer, lines)
    finally:
        ctx.close()


def test_the_catalogue_is_complete() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)) and len(names) >= 25
