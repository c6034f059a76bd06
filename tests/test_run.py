"""run_graph on the inline, thread and process executors: results, caching, limits, failures."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from taskproc import Const, FailedTaskError, Future, FutureDict, FutureList, Graph, Task

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


class Choose(Task):
    def __init__(self, n: int, k: int) -> None:
        if 0 < k < n:
            self.left = Choose(n - 1, k - 1)
            self.right = Choose(n - 1, k)
        elif k == 0 or k == n:
            self.left = Const(0)
            self.right = Const(1)
        else:
            raise ValueError(f"{(n, k)}")

    def run_task(self) -> int:
        return self.left.get_result() + self.right.get_result()


def test_binomial_runs_caches_and_clears(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        task = Choose(6, 3)
    ans, stats = task.run_graph(executor=executor)
    assert ans == 20 and stats["stats"] == {"test_run.Choose": 15}
    ans, stats = task.run_graph(executor=executor)
    assert ans == 20 and stats["stats"] == {"test_run.Choose": 0}
    with Graph(cache):
        Choose(3, 3).clear_task()
        ans, stats = Choose(6, 3).run_graph(executor=executor)
    assert ans == 20 and stats["stats"] == {"test_run.Choose": 4}
    with Graph(cache):
        Choose.clear_all_tasks()
        assert Choose(6, 3).run_graph(executor=executor)[1]["stats"] == {"test_run.Choose": 15}


class Split(Task):
    def run_task(self) -> dict[str, list[int]]:
        return {"train": [1, 2, 3], "test": [4]}


class Total(Task):
    def __init__(self, xs: Future[list[int]], first: Future[int]) -> None:
        self.xs = xs
        self.first = first

    def run_task(self) -> int:
        return sum(self.xs.get_result()) * 100 + self.first.get_result()


class Gather(Task):
    def __init__(self, n: int) -> None:
        self.items = FutureList([Choose(4, k) for k in range(n)])
        self.named = FutureDict({"a": Choose(3, 1), "b": Const(7)})
        self.total = Total(Split()["train"], Split()["test"][0])
        self.plain = [Choose(2, 1), {"x": Choose(2, 2)}]  # futures inside plain containers

    def run_task(self) -> dict[str, Any]:
        return {
            "items": self.items.get_result(),
            "named": self.named.get_result(),
            "total": self.total.get_result(),
            "plain": self.plain[0].get_result() + self.plain[1]["x"].get_result(),
        }


def test_futures_compose_on_every_executor(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        root = Gather(4)
    result, stats = root.run_graph(executor=executor)
    assert result == {"items": [1, 4, 6, 4], "named": {"a": 3, "b": 7}, "total": 604, "plain": 3}
    assert stats["stats"]["test_run.Split"] == 1


def test_cache_layout_is_browsable(cache: Path) -> None:
    with Graph(cache):
        root = Choose(3, 1)
    root.run_graph(executor=__import__("taskproc").InlineExecutor())
    folder = cache / "test_run.Choose" / "results" / root.task_id
    assert json.loads((folder / "args.json").read_text()) == {"n": 3, "k": 1}
    with gzip.open(folder / "result.pkl.gz") as f:
        assert cloudpickle.load(f) == 3
    assert subprocess.run(["gzip", "-t", str(folder / "result.pkl.gz")]).returncode == 0
    left = folder / "deps" / "left"
    assert left.is_symlink() and not os.path.isabs(os.readlink(left))
    assert (left / "args.json").exists()
    assert json.loads((folder / "deps" / "right" / "deps" / "right" / "args.json").read_text()) == {
        "n": 1,
        "k": 1,
    }
    from taskproc.store._resultfile import read_header

    header = read_header(str(folder / "result.pkl.gz"))
    assert header is not None
    info = header[1]
    assert info["duration"] >= 0 and info["pid"] > 0 and info["attempts"] == 1


def test_cache_folder_can_be_moved(cache: Path, tmp_path: Path) -> None:
    with Graph(cache):
        Choose(4, 2).run_graph(executor=__import__("taskproc").InlineExecutor())
    moved = tmp_path / "moved"
    cache.rename(moved)
    with Graph(moved):
        task = Choose(4, 2)
    ans, stats = task.run_graph(executor=__import__("taskproc").InlineExecutor())
    assert ans == 6 and stats["stats"]["test_run.Choose"] == 0
    assert (
        (moved / "test_run.Choose" / "results" / task.task_id / "deps" / "left").resolve().is_dir()
    )


def test_ids_are_the_same_in_another_process(cache: Path) -> None:
    with Graph(cache):
        here = Choose(5, 2).task_id
    folder = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {folder!r})\n"
        "from test_run import Choose; from taskproc import Graph\n"
        "with Graph('c'): print(Choose(5, 2).task_id)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here


# -- limits -----------------------------------------------------------------------------


class Probe(Task):
    """Records how many probes run at once by counting marker files, not by timing."""

    task_label = "probe"

    def __init__(self, i: int, folder: str) -> None:
        self.i = i
        self.folder = folder

    def run_task(self) -> int:
        mine = Path(self.folder, f"{self.i}.running")
        mine.touch()
        try:
            seen = 0
            for _ in range(20):  # give others the chance to overlap, and look repeatedly
                seen = max(seen, len(list(Path(self.folder).glob("*.running"))))
                time.sleep(0.005)
            return seen
        finally:
            mine.unlink()


class Probes(Task):
    def __init__(self, n: int, folder: str) -> None:
        self.probes = FutureList([Probe(i, folder) for i in range(n)])

    def run_task(self) -> int:
        return max(self.probes.get_result())


@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest.mark.parametrize(
    ("limits", "cap"),
    [({"probe": 1}, 1), ({"probe": 2}, 2), ({"test_run.Probe": 1}, 1), ({"*": 1}, 1)],
)
def test_rate_limits_cap_overlap(
    cache: Path, tmp_path: Path, kind: str, limits: dict[str, int], cap: int
) -> None:
    from conftest import make

    folder = tmp_path / "probe"
    folder.mkdir()
    ex = make(kind, workers=4)
    with Graph(cache):
        root = Probes(12, str(folder))
    seen, _ = root.run_graph(executor=ex, rate_limits=limits)
    ex.shutdown()
    assert 1 <= seen <= cap


def test_overlap_probe_detects_parallelism(cache: Path, tmp_path: Path) -> None:
    """Without a limit the same probe sees several tasks at once: the test above can fail."""
    from conftest import make

    folder = tmp_path / "probe"
    folder.mkdir()
    ex = make("thread", workers=4)
    with Graph(cache):
        seen, _ = Probes(12, str(folder)).run_graph(executor=ex)
    ex.shutdown()
    assert seen >= 2


# -- failures -----------------------------------------------------------------------------


class Boom(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        print(f"about to fail {self.i}")
        raise KeyError(f"boom {self.i}")


class Marker(Task):
    def __init__(self, i: int, folder: str, up: Future[int] | None = None) -> None:
        self.i = i
        self.folder = folder
        self.up = up

    def run_task(self) -> int:
        Path(self.folder, f"ran{self.i}").touch()
        return self.i


class Mixed(Task):
    def __init__(self, folder: str) -> None:
        self.bad = Boom(0)
        self.after_bad = Marker(0, folder, Boom(0))
        self.good = FutureList([Marker(i, folder) for i in range(1, 6)])

    def run_task(self) -> int:
        return 0


def _run_failing(cache: Path, folder: Path, executor: Executor, policy: str) -> ExceptionGroup:
    with Graph(cache):
        root = Mixed(str(folder))
    with pytest.raises(ExceptionGroup) as info:
        root.run_graph(executor=executor, error_handling=policy)  # type: ignore[arg-type]
    return info.value


def test_failure_report(cache: Path, tmp_path: Path, executor: Executor) -> None:
    group = _run_failing(cache, tmp_path, executor, "lazy")
    assert len(group.exceptions) == 1
    err = group.exceptions[0]
    assert isinstance(err, FailedTaskError)
    assert err.task == "test_run.Boom(i=0)"
    assert err.task_id and err.task_dir.endswith(err.task_id)
    assert "KeyError" in str(err) and "boom 0" in str(err)
    assert "in run_task" in err.traceback  # the child's traceback
    assert isinstance(err.__cause__, KeyError)
    if not isinstance(executor, __import__("taskproc").InlineExecutor):
        assert "about to fail 0" in err.output_tail
    assert (Path(err.task_dir) / "error.txt").exists()


def test_lazy_runs_everything_independent(cache: Path, tmp_path: Path, executor: Executor) -> None:
    _run_failing(cache, tmp_path, executor, "lazy")
    assert {p.name for p in tmp_path.glob("ran*")} == {f"ran{i}" for i in range(1, 6)}


def test_immediate_stops_at_first_failure(cache: Path, tmp_path: Path) -> None:
    from taskproc import InlineExecutor

    _run_failing(cache, tmp_path, InlineExecutor(), "immediate")
    # Boom is submitted first (attribute order) and fails before anything else starts.
    assert not list(tmp_path.glob("ran*"))


def test_eager_starts_nothing_new(cache: Path, tmp_path: Path) -> None:
    from taskproc import InlineExecutor

    _run_failing(cache, tmp_path, InlineExecutor(), "eager")
    assert not list(tmp_path.glob("ran*"))


def test_failure_then_fix_keeps_finished_results(cache: Path, tmp_path: Path) -> None:
    from taskproc import InlineExecutor

    _run_failing(cache, tmp_path, InlineExecutor(), "lazy")
    done = {p.name for p in tmp_path.glob("ran*")}
    for p in tmp_path.glob("ran*"):
        p.unlink()
    _run_failing(cache, tmp_path, InlineExecutor(), "lazy")
    assert not list(tmp_path.glob("ran*")) and done  # nothing that succeeded ran again


class Unpicklable(Task):
    def run_task(self) -> Any:
        import threading

        return threading.Lock()


def test_unpicklable_result_is_a_clear_failure(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        task = Unpicklable()
    with pytest.raises(ExceptionGroup) as info:
        task.run_graph(executor=executor)
    msg = str(info.value.exceptions[0])
    assert "test_run.Unpicklable()" in msg and "cannot be pickled" in msg
    assert not (
        cache / "test_run.Unpicklable" / "results" / task.task_id / "result.pkl.gz"
    ).exists()


# -- output capture -------------------------------------------------------------------------


class Talk(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        print(f"out {self.i}")
        print(f"err {self.i}", file=sys.stderr)
        logging.getLogger("talk").warning("log %d", self.i)
        return self.i


class Talks(Task):
    def __init__(self) -> None:
        self.talks = FutureList([Talk(i) for i in range(4)])

    def run_task(self) -> int:
        return len(self.talks.get_result())


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_output_is_captured_per_task(cache: Path, kind: str) -> None:
    from conftest import make

    ex = make(kind)
    with Graph(cache):
        root = Talks()
    root.run_graph(executor=ex)
    ex.shutdown()
    for i in range(4):
        with Graph(cache):
            folder = Talk(i).task_worker.task_dir
        assert (folder / "stdout.txt").read_text() == f"out {i}\n"
        err = (folder / "stderr.txt").read_text()
        assert f"err {i}" in err and f"log {i}" in err
        others = [j for j in range(4) if j != i]
        assert "out" not in err and not any(f"err {j}" in err or f"log {j}" in err for j in others)


class Quiet(Task):
    def __init__(self, i: int, talk: bool = False) -> None:
        self.i = i
        self.talk = talk

    def run_task(self) -> int:
        if self.talk:
            print(f"out {self.i}")
        return self.i


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_every_task_has_its_output_files_empty_when_it_writes_nothing(
    cache: Path, kind: str
) -> None:
    """Each task run on an executor leaves `stdout.txt` and `stderr.txt` in its folder: empty
    when it wrote nothing, also when the folder held the output of an earlier run."""
    from conftest import make

    ex = make(kind)
    with Graph(cache):
        Quiet(0).run_graph(executor=ex)
        folder = Quiet(0).task_worker.task_dir
        for name in ("stdout.txt", "stderr.txt"):
            assert (folder / name).read_text() == ""
        (folder / "stdout.txt").write_text("an earlier run\n")
        (folder / "stderr.txt").write_text("an earlier run\n")
        Quiet(0).run_graph(executor=ex, force_entrypoint=True)
        for name in ("stdout.txt", "stderr.txt"):
            assert (folder / name).read_text() == ""
        Quiet(1, talk=True).run_graph(executor=ex)
        folder = Quiet(1, talk=True).task_worker.task_dir
        assert (folder / "stdout.txt").read_text() == "out 1\n"
        assert (folder / "stderr.txt").read_text() == ""
    ex.shutdown()


# -- prefixes ---------------------------------------------------------------------------


class Env(Task):
    task_label = "wrapped"

    def __init__(self, arg: str) -> None:
        self.arg = arg

    def run_task(self) -> dict[str, str | None]:
        return {"X": os.environ.get("X"), "NAME": os.environ.get("TP_NAME"), "arg": self.arg}


def test_prefix_env_and_templates(cache: Path, tmp_path: Path) -> None:
    from taskproc import InlineExecutor

    with Graph(cache):
        task = Env("x; touch pwned")
    result, _ = task.run_graph(
        executor=InlineExecutor(),
        prefixes={"wrapped": "env X=1 TP_NAME={task_name}:{task_id} TP_DIR={task_dir}"},
    )
    assert result == {"X": "1", "NAME": f"test_run.Env:{task.task_id}", "arg": "x; touch pwned"}
    assert not (tmp_path / "pwned").exists()
    folder = task.task_worker.task_dir
    assert (folder / "prefix_stdout.txt").exists() and (folder / "prefix_stderr.txt").exists()


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_prefix_means_none(cache: Path, empty: str) -> None:
    """As in taskproc 0.25, ``''`` means no prefix for that label, also over the prefix of a
    label further right in the task's labels (here '*')."""
    from taskproc import InlineExecutor

    with Graph(cache):
        task = Env("plain")
        other = Env2()
    result, _ = task.run_graph(
        executor=InlineExecutor(), prefixes={"wrapped": empty, "*": "env X=1"}
    )
    assert result["X"] is None
    assert not (task.task_worker.task_dir / "prefix_stdout.txt").exists()
    with pytest.warns(UserWarning, match="prefixes names label 'wrapped' that no task"):
        result, _ = other.run_graph(
            executor=InlineExecutor(), prefixes={"wrapped": "", "*": "env X=1"}
        )
    assert result == "1"  # it does not carry the label with the empty prefix


class Env2(Task):
    def run_task(self) -> str | None:
        return os.environ.get("X")


def test_prefix_values_are_shell_quoted(cache: Path, tmp_path: Path) -> None:
    from taskproc import InlineExecutor

    class Evil(Task):
        task_name = "x"  # a plain name; the quoting is checked through {task_dir}

        def run_task(self) -> int:
            return 1

    with Graph(tmp_path / "dir with space; touch pwned"):
        task = Evil()
    task.run_graph(executor=InlineExecutor(), prefixes={"*": "env D={task_dir}"})
    assert not list(tmp_path.rglob("pwned"))


def test_missing_prefix_command(cache: Path) -> None:
    from taskproc import InlineExecutor

    with Graph(cache):
        task = Env("a")
    with pytest.raises(ExceptionGroup) as info:
        task.run_graph(executor=InlineExecutor(), prefixes={"wrapped": "no-such-cmd-xyz --flag"})
    msg = str(info.value.exceptions[0])
    assert "no-such-cmd-xyz" in msg and "test_run.Env(arg='a')" in msg


def test_failing_prefix_command(cache: Path) -> None:
    from taskproc import InlineExecutor

    with Graph(cache):
        task = Env("a")
    with pytest.raises(ExceptionGroup) as info:
        task.run_graph(
            executor=InlineExecutor(),
            prefixes={"wrapped": "sh -c 'echo cluster says no >&2; exit 3' --"},
        )
    msg = str(info.value.exceptions[0])
    assert "status 3" in msg and "cluster says no" in msg


def test_prefix_task_failure_shows_child_traceback(cache: Path) -> None:
    from taskproc import InlineExecutor

    with Graph(cache):
        task = Boom(3)
    with pytest.raises(ExceptionGroup) as info:
        task.run_graph(executor=InlineExecutor(), prefixes={"*": "env A=1"})
    err = info.value.exceptions[0]
    assert isinstance(err, FailedTaskError) and "boom 3" in str(err)
    assert "about to fail 3" in err.output_tail


# -- run_graph options ---------------------------------------------------------------------


class Async(Task):
    def __init__(self, n: int) -> None:
        self.n = n

    async def run_task(self) -> int:
        import asyncio

        await asyncio.sleep(0.01)
        return self.n * 2


def test_async_run_task(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        root = FutureList([Async(i) for i in range(3)])
        task = Total(root, Const(1))
    assert task.run_graph(executor=executor)[0] == 601


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def run_started(self, plan: Any) -> None:
        self.events.append(("plan", *sorted(f"{k}:{v}" for k, v in plan.items())))

    def task_started(self, task_name: str) -> None:
        self.events.append(("start", task_name))

    def task_finished(self, task_name: str, state: str) -> None:
        self.events.append(("end", task_name, state))

    def run_finished(self) -> None:
        self.events.append(("finished",))


def test_hooks_stats_and_log_level(cache: Path) -> None:
    from taskproc import InlineExecutor

    rec = Recorder()
    with Graph(cache):
        task = Choose(3, 1)
    _, stats = task.run_graph(executor=InlineExecutor(), hooks=[rec], log_level="INFO")
    assert rec.events[0] == ("plan", "test_run.Choose:(5, 0)")
    assert rec.events.count(("end", "test_run.Choose", "done")) == 5
    assert rec.events[-1] == ("finished",)
    assert stats["elapsed"] > 0 and stats["executed"] == 5


def test_task_with_a_type_parameter_as_in_0_25(cache: Path) -> None:
    from taskproc import InlineExecutor

    class Typed(Task[int]):  # type: ignore[type-arg]
        def run_task(self) -> int:
            return 5

    with Graph(cache):
        assert Typed().run_graph(executor=InlineExecutor(), verbose_stats=True)[0] == 5


class Group(Task):
    """A taskproc 0.25 program: a task that only groups its upstream tasks (no run_task)."""

    def __init__(self, n: int) -> None:
        self.parts = [Choose(n, k) for k in range(n + 1)]


def test_a_task_without_run_task_yields_none(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        group = Group(3)
        result, stats = group.run_graph(executor=executor)
        assert result is None and group.get_result() is None
        assert stats["stats"]["test_run.Group"] == 1
        assert [p.get_result() for p in group.parts] == [1, 3, 3, 1]
        assert group.run_graph(executor=executor)[1]["stats"]["test_run.Group"] == 0


def test_prefix_run_leaves_no_job_files(cache: Path) -> None:
    from taskproc import InlineExecutor

    with Graph(cache):
        task = Env("clean")
    task.run_graph(executor=InlineExecutor(), prefixes={"wrapped": "env X=1"})
    names = {p.name for p in task.task_worker.task_dir.iterdir()}
    assert "job.pkl" not in names and "outcome.pkl" not in names


def test_public_names_are_pinned() -> None:
    import taskproc

    assert sorted(taskproc.__all__) == [
        "ArgumentError",
        "CacheError",
        "CodeChangedWarning",
        "ConfigError",
        "Const",
        "CorruptResultError",
        "CycleError",
        "DaskExecutor",
        "DefaultCliArguments",
        "FailedTaskError",
        "Future",
        "FutureDict",
        "FutureList",
        "Graph",
        "GraphError",
        "InlineExecutor",
        "InputFile",
        "ResultMissingError",
        "RunHooks",
        "Task",
        "TaskConfig",
        "TaskDefinitionError",
        "TaskState",
        "TaskWorker",
        "TaskprocError",
        "UsageError",
        "accept_code",
        "allow_failed",
        "dask_executor",
        "gc_cache",
    ]
