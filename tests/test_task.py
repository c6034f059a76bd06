"""Building tasks: identity, deferred construction, the built-ins, and bad definitions."""

from __future__ import annotations

import dataclasses
import enum
import gc
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pydantic
import pytest

from taskproc import (
    ArgumentError,
    Const,
    Future,
    FutureDict,
    FutureList,
    Graph,
    GraphError,
    Task,
    TaskDefinitionError,
)


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


class Leaf(Task):
    def __init__(self, x: Any) -> None:
        self.x = x

    def run_task(self) -> Any:
        return self.x


class Sum(Task):
    def __init__(self, up: Future[int], other: int = 0) -> None:
        self.up = up
        self.other = other

    def run_task(self) -> int:
        return self.up.get_result() + self.other


def test_task_name_class_and_instance(cache: Path) -> None:
    assert Choose.task_name == "test_task.Choose"
    with Graph(cache):
        assert Choose(2, 1).task_name == "test_task.Choose"


def test_same_task_is_same_object(cache: Path) -> None:
    with Graph(cache):
        a = Choose(4, 2)
        b = Choose(4, 2)
        c = Choose(n=4, k=2)
    assert a is b is c
    with Graph(cache):
        d = Choose(4, 2)
    assert d is not a and d.task_id == a.task_id


def test_identity_keeps_types_apart(cache: Path) -> None:
    with Graph(cache):
        ids = {Leaf(v).task_id for v in [(1, 2), [1, 2], 1, 1.0, True, "1", None]}
    assert len(ids) == 7


def test_dict_order_does_not_matter(cache: Path) -> None:
    with Graph(cache):
        assert Leaf({"a": 1, "b": 2}) is Leaf({"b": 2, "a": 1})


class Summarize(Task):
    """A taskproc 0.25 program: a dict argument with int keys, and futures under int keys."""

    def __init__(self, y: dict[int, str], ups: dict[int, Future[Any]] | None = None) -> None:
        self.y = y
        self.ups = ups or {}

    def run_task(self) -> str:
        return "".join(self.y[k] for k in sorted(self.y)) + "".join(
            str(self.ups[k].get_result()) for k in sorted(self.ups)
        )


def test_dict_arguments_with_keys_other_than_str(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        task = Summarize(y={0: "a", 1: "b", 2: "c"}, ups={1: Leaf(7), 0: Leaf(6)})
        assert Summarize({2: "c", 0: "a", 1: "b"}, {0: Leaf(6), 1: Leaf(7)}) is task
        assert Summarize({1: "x"}) is not Summarize({"1": "x"})  # type: ignore[dict-item]
        assert Summarize({1: "x"}).task_id != Summarize({True: "x"}).task_id
        result, stats = task.run_graph(executor=executor)
    assert result == "abc67"
    assert stats["stats"] == {"test_task.Summarize": 1, "test_task.Leaf": 2}


def test_defaults_and_keywords_are_one_identity(cache: Path) -> None:
    with Graph(cache):
        up = Leaf(1)
        assert Sum(up) is Sum(up, 0) is Sum(up=up, other=0)


class Base(Task):
    def __init__(self, a: int) -> None:
        self.a = a


class Wider(Base):
    def __init__(self, a: int, b: int = 2) -> None:
        super().__init__(a)
        self.b = b


class Same(Base):
    pass


def test_each_class_is_built_with_its_own_signature(cache: Path) -> None:
    """Signatures are read on a class's first build (not when it is made): a subclass never
    takes its base's, whichever is built first."""
    with Graph(cache):
        assert Base(1).to_json()["args"] == {"a": 1}
        assert Wider(1).to_json()["args"] == {"a": 1, "b": 2}
        assert Same(a=3).to_json()["args"] == {"a": 3}
        with pytest.raises(ArgumentError, match=r"Base takes \(a: 'int'\)$"):
            Base(1, 2)  # type: ignore[call-arg]


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Params:
    lr: float
    layers: tuple[int, ...]


class Cfg(pydantic.BaseModel):
    name: str
    size: int = 3


def test_rich_argument_types(cache: Path) -> None:
    with Graph(cache):
        a = Leaf([Color.RED, Params(0.1, (1, 2)), Path("/data/x"), Cfg(name="a")])
        b = Leaf([Color.RED, Params(0.1, (1, 2)), Path("/data/x"), Cfg(name="a", size=3)])
        c = Leaf([Color.RED, Params(0.2, (1, 2)), Path("/data/x"), Cfg(name="a")])
    assert a is b
    assert a is not c


def test_unsupported_argument_is_a_clear_error(cache: Path) -> None:
    with Graph(cache), pytest.raises(ArgumentError) as info:
        Leaf({"k": object()})
    msg = str(info.value)
    assert "test_task.Leaf" in msg and "x['k']" in msg and "object" in msg


def test_wrong_arguments_name_the_task(cache: Path) -> None:
    with Graph(cache), pytest.raises(ArgumentError, match="test_task.Choose"):
        Choose(1, 2, 3)  # type: ignore[call-arg]


def test_identity_does_not_grow_with_upstream(cache: Path) -> None:
    with Graph(cache):
        x: Future[int] = Leaf(0)
        for _ in range(200):
            x = Sum(x)
        assert len(x._tp.args_json) < 100  # type: ignore[attr-defined]


def test_building_outside_a_graph_fails() -> None:
    with pytest.raises(GraphError, match="test_task.Leaf.*with Graph"):
        Leaf(1)


def test_nested_graphs_fail(tmp_path: Path) -> None:
    with Graph(tmp_path / "a"), pytest.raises(GraphError, match="nested"):
        with Graph(tmp_path / "b"):
            pass


def test_graph_as_decorator(cache: Path) -> None:
    @Graph(cache)
    def build() -> Choose:
        return Choose(3, 1)

    assert build().task_name == "test_task.Choose"


def test_building_writes_nothing(cache: Path) -> None:
    with Graph(cache):
        Choose(10, 5)
    assert not cache.exists()


def test_init_error_propagates_and_graph_stays_usable(cache: Path) -> None:
    with Graph(cache):
        with pytest.raises(ValueError, match=r"\(1, 5\)"):
            Choose(1, 5)
        with pytest.raises(ValueError):
            Choose(3, 7)  # the error comes from an upstream built inside __init__
        assert Choose(3, 1).left.task_id == Choose(2, 0).task_id


def test_upstream_built_in_init_is_fully_built(cache: Path) -> None:
    with Graph(cache):
        root = Choose(5, 2)
        # attributes of an upstream task are there when user code reads them
        assert isinstance(root.right.right, Choose)
        assert root.right.right.right.task_id == Choose(2, 2).task_id
        assert isinstance(root.right.right.right.left, Const)


def test_deep_chain_builds_without_recursion(cache: Path) -> None:
    class Chain(Task):
        def __init__(self, n: int) -> None:
            self.prev = Chain(n - 1) if n > 0 else Const(0)

        def run_task(self) -> int:
            return self.prev.get_result() + 1

    with Graph(cache):
        root = Chain(100_000)
        assert root.prev.prev.task_id == Chain(99_998).task_id


def test_to_json_and_workers(cache: Path) -> None:
    with Graph(cache):
        t = Choose(3, 1)
    data = t.to_json()
    assert data == {"task_name": "test_task.Choose", "task_id": t.task_id, "args": {"n": 3, "k": 1}}
    workers = t.get_workers()
    assert len(workers) == 5  # (3,1) (2,0) (2,1) (1,0) (1,1)
    w = t.task_worker
    assert w.task_dir == cache.absolute() / "test_task.Choose" / "results" / t.task_id
    assert w.result_path.name == "result.pkl.gz"
    assert set(w.upstream) == {
        f"test_task.Choose/{t.task_id}"
        for t in (t.left, t.right)  # type: ignore[attr-defined]
    }


def test_task_config_and_labels(cache: Path) -> None:
    class Gpu(Task):
        task_label = ["gpu", "memory"]
        task_compress_level = 0

    cfg = Gpu.get_task_config()
    assert cfg.labels == (Gpu.task_name, "gpu", "memory", "*")
    assert cfg.compress_level == 0
    with Graph(cache):
        assert Gpu().task_config == cfg
        assert Gpu().task_label == ["gpu", "memory"]


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"task_label": 3}, "task_label must be a str or a sequence of str"),
        ({"task_label": ["a", 1]}, "task_label must be"),
        ({"task_compress_level": 10}, "task_compress_level must be an int from 0 to 9"),
        ({"task_retries": -1}, "task_retries must be"),
        ({"task_timeout": 0}, "task_timeout must be"),
        ({"task_name": "../evil"}, "task_name must be dotted identifiers"),
        ({"task_name": "/abs"}, "task_name must be"),
        ({"get_result": lambda self: 1}, "'get_result' is a taskproc built-in"),
        ({"run_graph": lambda self: 1}, "'run_graph' is a taskproc built-in"),
    ],
)
def test_bad_definitions_fail_at_class_creation(attrs: dict[str, Any], match: str) -> None:
    with pytest.raises(TaskDefinitionError, match=match):
        type("Bad", (Task,), attrs)


def test_assigning_a_builtin_in_init_fails(cache: Path) -> None:
    class Shadow(Task):
        def __init__(self) -> None:
            self.task_directory = "x"  # type: ignore[misc]

    with Graph(cache), pytest.raises(TaskDefinitionError, match="task_directory"):
        Shadow()


def test_future_list_dict_and_indexing(cache: Path) -> None:
    with Graph(cache):
        fl = FutureList([Leaf(1), Const(2)])
        fd = FutureDict({"a": Leaf(3)})
        item = Leaf({"k": [10, 20]})["k"][1]
    assert len(fl) == 2 and len(fd) == 1
    assert item._tp_ref()["__item__"][1] == 1  # type: ignore[index]
    with pytest.raises(TypeError, match="must be a future"):
        FutureList([1])  # type: ignore[list-item]


def test_task_directory_is_per_task_and_inside_the_cache(cache: Path) -> None:
    with Graph(cache):
        a, b = Leaf(1), Leaf(2)
    assert a.task_directory != b.task_directory
    assert a.task_directory.is_dir()
    assert os.path.commonpath([a.task_directory, cache.absolute()]) == str(cache.absolute())


class Lister(Task):
    """Lists its own task_directory when it runs, then writes a file into it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> list[str]:
        seen = sorted(os.listdir(self.task_directory))
        (self.task_directory / "out.txt").write_text(str(self.n))
        return seen


class ListsUpstream(Task):
    """Lists the task_directory of an upstream task while building, before it ran (0.25)."""

    def __init__(self) -> None:
        self.up = Lister(1)
        self.before = sorted(os.listdir(self.up.task_directory))

    def run_task(self) -> tuple[list[str], list[str], list[str]]:
        after = sorted(os.listdir(self.up.task_directory))
        return self.before, self.up.get_result(), after


def test_task_directory_exists_before_the_task_runs(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        task = ListsUpstream()
        result, _ = task.run_graph(executor=executor)
    assert result == ([], [], ["out.txt"])


def test_clear_task_empties_task_directory_and_keeps_it(cache: Path, executor: Executor) -> None:
    """As in taskproc 0.25: a path to a task's data folder stays a folder when the task is
    cleared; `clear_all_tasks` removes the folders of the task name."""
    with Graph(cache):
        task = Lister(2)
        folder = task.task_directory
        assert task.run_graph(executor=executor)[0] == []
        assert os.listdir(folder) == ["out.txt"]
        task.clear_task()
        assert folder.is_dir() and os.listdir(folder) == []
        assert not task.task_worker.result_path.exists()
        assert task.run_graph(executor=executor)[0] == []  # it ran again, in the empty folder
        untouched = Lister(3)
        untouched.clear_task()  # a task whose folder was never made: nothing is made
        assert not untouched.task_worker.task_dir.exists()
        Lister.clear_all_tasks()
    assert not (cache / Lister.task_name).exists()


class _SeesCollector(Task):
    """Records whether the cyclic collector ran while its __init__ ran."""

    def __init__(self, fail: bool) -> None:
        self.collecting = gc.isenabled()
        if fail:
            raise ValueError("boom")

    def run_task(self) -> bool:
        return self.collecting


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("fail", [False, True])
def test_building_pauses_the_collector_and_restores_it(
    cache: Path, enabled: bool, fail: bool
) -> None:
    """Building pauses the cyclic collector (speed) and leaves it as it found it, also when
    an __init__ fails."""
    (gc.enable if enabled else gc.disable)()
    try:
        with Graph(cache):
            if fail:
                with pytest.raises(ValueError, match="boom"):
                    _SeesCollector(True)
            else:
                assert _SeesCollector(False).collecting is False
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
