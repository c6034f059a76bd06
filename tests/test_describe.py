"""Readable task names (`model/_describe.py`): canonical arguments as Python text, upstream tasks
by their arguments, cut in the middle past a width; and the same names in every view."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import Executor
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from taskproc import Const, FutureDict, FutureList, Graph, InlineExecutor, Task
from taskproc.model import apart, describe, readable_name, shorten
from taskproc.model._canonical import canonical_arguments, dumps
from taskproc.model._describe import args_reader
from taskproc.model._future import future_ref
from taskproc.store import LocalStore, MemoryStore
from taskproc.views._scan import scan

TASKPROC = str(Path(sys.executable).with_name("taskproc"))


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Cfg:
    x: int
    tags: tuple[str, ...] = ()


def shown(**arguments: object) -> str:
    """How a task `m.T` with these arguments is named (no upstream tasks)."""
    return describe("m.T", canonical_arguments("m.T", arguments, future_ref), width=None)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "None"),
        (True, "True"),
        (3, "3"),
        (0.5, "0.5"),
        (1.0, "1.0"),
        (float("inf"), "float('inf')"),
        ("it's", '"it\'s"'),
        ((0, 1), "(0, 1)"),
        ((0,), "(0,)"),
        ((), "()"),
        ([1, 2], "[1, 2]"),
        ([], "[]"),
        ({"a": 1, "b": [2]}, "{'a': 1, 'b': [2]}"),
        ({"__task__": 1}, "{'__task__': 1}"),
        ({0: "a", 1: "b"}, "{0: 'a', 1: 'b'}"),
        ({(1, "x"): 2}, "{(1, 'x'): 2}"),
        (Color.RED, "Color.RED"),
        ({Color.RED: 1}, "{Color.RED: 1}"),
        (PurePosixPath("data/x.csv"), "Path('data/x.csv')"),
        (Cfg(1, ("a",)), "Cfg(x=1, tags=('a',))"),
        ({1, 2}, "{1, 2}"),
        (set(), "set()"),
        (frozenset({"a"}), "frozenset({'a'})"),
        (frozenset(), "frozenset()"),
        (b"\x00hi", "b'\\x00hi'"),
    ],
)
def test_values_print_as_python_writes_them(value: object, text: str) -> None:
    assert shown(v=value) == f"m.T(v={text})"


def test_pydantic_models_print_as_their_class() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Model(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        a: int

    assert shown(v=Model(a=1)) == "m.T(v=Model(a=1))"


def test_arguments_keep_their_declared_order() -> None:
    assert shown(b=1, a="x") == "m.T(b=1, a='x')"
    assert describe("m.T", "{}") == "m.T()"


def test_unknown_shapes_show_as_json_never_fail() -> None:
    odd = '{"a": {"__nope__": 1}, "b": {"__item__": 3}, "c": {"__enum__": "m.E"}}'
    assert describe("m.T", odd) == ('m.T(a={"__nope__":1}, b={"__item__":3}, c={"__enum__":"m.E"})')
    with pytest.raises(ValueError):
        describe("m.T", "[1, 2]")


def test_nesting_too_deep_to_render_falls_back_to_the_json() -> None:
    deep = '{"v": ' + "[" * 5000 + "]" * 5000 + "}"
    text = describe("m.T", deep, width=None)
    assert text.startswith('m.T("v": [[[') and text.endswith("]]])")


# -- upstream tasks ---------------------------------------------------------------------------

DATA = "sweep.MakeData/c467dfb7" + "0" * 24
SPLIT = "sweep.Split/5a11" + "0" * 28


def table() -> dict[str, str]:
    return {DATA: '{"n":400}', SPLIT: json.dumps({"frac": 0.2, "data": {"__task__": DATA}})}


def test_upstream_tasks_are_named_by_their_arguments() -> None:
    args = {
        "data": {"__task__": DATA},
        "train": {"__item__": [{"__task__": SPLIT}, "train"]},
        "first": {"__item__": [{"__item__": [{"__task__": SPLIT}, "train"]}, 0]},
    }
    text = describe("sweep.Train", json.dumps(args), table().get, width=None)
    assert text == (
        "sweep.Train(data=sweep.MakeData(n=400), "
        "train=sweep.Split(frac=0.2, data=sweep.MakeData(…))['train'], "
        "first=sweep.Split(frac=0.2, data=sweep.MakeData(…))['train'][0])"
    )


def test_upstream_tasks_not_found_keep_their_short_id() -> None:
    args = json.dumps({"data": {"__task__": DATA}})
    assert describe("sweep.Train", args) == "sweep.Train(data=<sweep.MakeData c467dfb7>)"
    nothing: dict[str, str] = {}
    assert (
        describe("sweep.Train", args, nothing.get) == "sweep.Train(data=<sweep.MakeData c467dfb7>)"
    )
    broken = {DATA: "not json"}.get
    assert describe("sweep.Train", args, broken) == "sweep.Train(data=<sweep.MakeData c467dfb7>)"


def test_consts_and_future_collections() -> None:
    args = {
        "c": {"__const__": {"__tuple__": [1, 2]}},
        "fl": {"__futurelist__": [{"__task__": DATA}, {"__const__": 3}]},
        "fd": {"__futuredict__": [["a", {"__task__": DATA}], [1, {"__const__": None}]]},
    }
    text = describe("m.T", json.dumps(args), table().get, width=None)
    assert text == (
        "m.T(c=(1, 2), fl=[sweep.MakeData(n=400), 3], fd={'a': sweep.MakeData(n=400), 1: None})"
    )


class MakeData(Task):
    task_name = "t.MakeData"

    def __init__(self, n: int):
        self.n = n

    def run_task(self) -> list[int]:
        return list(range(self.n))


class Split(Task):
    task_name = "t.Split"

    def __init__(self, frac: float, data: MakeData):
        self.data = data
        self.frac = frac

    def run_task(self) -> dict[str, list[int]]:
        values = self.data.get_result()
        cut = int(len(values) * self.frac)
        return {"train": values[cut:], "test": values[:cut]}


class Train(Task):
    task_name = "t.Train"

    def __init__(self, train: Any, data: Any, lr: float = 0.1):
        self.train = train
        self.data = data
        self.lr = lr

    def run_task(self) -> str:
        return repr(self)


class Chain(Task):
    task_name = "t.Chain"

    def __init__(self, prev: Chain | None, n: int):
        self.prev = prev
        self.n = n

    def run_task(self) -> int:
        return self.n


def test_tasks_in_memory_name_their_upstream_tasks() -> None:
    with Graph("memory", store=MemoryStore()):
        data = MakeData(400)
        split = Split(0.2, data)
        train = Train(split["train"], FutureList([data, Const(1)]), lr=0.5)
        gather = Train(FutureDict({"a": split["test"]}), FutureList([]))
    assert repr(split) == "t.Split(frac=0.2, data=t.MakeData(n=400))"
    whole = (
        "t.Train(train=t.Split(frac=0.2, data=t.MakeData(…))['train'], "
        "data=[t.MakeData(n=400), 1], lr=0.5)"
    )
    assert readable_name(train, None) == whole
    assert repr(train) == whole  # 98 characters: not cut
    assert readable_name(train, 60) == shorten("t.Train", whole[len("t.Train(") : -1], 60)
    assert len(readable_name(train, 60)) == 60
    assert readable_name(gather, None) == (
        "t.Train(train={'a': t.Split(frac=0.2, data=t.MakeData(…))['test']}, data=[], lr=0.1)"
    )


def test_a_deep_chain_names_each_task_in_bounded_time_and_length() -> None:
    with Graph("memory", store=MemoryStore()):
        tasks = [Chain(None, 0)]
        for n in range(1, 3000):
            tasks.append(Chain(tasks[-1], n))
    start = time.perf_counter()
    names = [repr(t) for t in tasks]
    assert time.perf_counter() - start < 1.0
    assert names[0] == "t.Chain(prev=None, n=0)"
    assert names[1] == "t.Chain(prev=t.Chain(prev=None, n=0), n=1)"
    assert names[-1] == ("t.Chain(prev=t.Chain(prev=t.Chain(…), n=2998), n=2999)")


def test_a_chain_of_100000_reads_one_upstream_per_name() -> None:
    asked: list[str] = []

    def lookup(key: str) -> str:
        asked.append(key)
        n = int(key.rpartition("/")[2])
        return json.dumps({"prev": {"__task__": f"m.Chain/{n - 1}"}, "n": n})

    start = time.perf_counter()
    for n in range(99_000, 100_000):
        text = describe("m.Chain", json.dumps({"prev": {"__task__": f"m.Chain/{n}"}}), lookup)
        assert text == f"m.Chain(prev=m.Chain(prev=m.Chain(…), n={n}))"
    assert len(asked) == 1000  # one lookup per name, whatever the chain's length
    assert time.perf_counter() - start < 2.0


def test_a_wide_fan_in_reads_a_few_upstream_tasks_only() -> None:
    asked: list[str] = []

    def lookup(key: str) -> str:
        asked.append(key)
        return json.dumps({"i": int(key.rpartition("/")[2])})

    refs = [{"__task__": f"m.Leaf/{i}"} for i in range(10_000)]
    text = describe("m.Gather", json.dumps({"leaves": {"__futurelist__": refs}}), lookup)
    assert len(text) == 100
    assert text.startswith("m.Gather(leaves=[m.Leaf(i=0), m.Leaf(i=1), ")
    assert text.endswith("m.Leaf(i=9998), m.Leaf(i=9999)])")
    assert len(asked) < 40


# -- shortening -------------------------------------------------------------------------------


def test_long_names_are_cut_in_the_middle() -> None:
    args = {"first": "a" * 80, "last": 7}
    text = describe("m.T", json.dumps(args), width=60)
    assert len(text) == 60
    assert text.startswith("m.T(first='aaaa") and text.endswith("a', last=7)")
    assert text.count("…") == 1
    assert describe("m.T", json.dumps(args), width=None) == f"m.T(first='{'a' * 80}', last=7)"
    assert describe("m.T", '{"x":1}', width=10) == "m.T(x=1)"


def test_the_task_name_itself_is_never_cut() -> None:
    name = "a_module." + "VeryLong" * 20
    text = shorten(name, "x=" + "1" * 200, width=100)
    assert text.startswith(name + "(x=111")
    assert text.endswith("111)") and "…" in text
    assert shorten(name, "x=1", width=100) == f"{name}(x=1)"


@pytest.mark.parametrize("width", [24, 40, 100, 250])
def test_rendering_from_both_ends_is_the_whole_text_cut(width: int) -> None:
    args = {
        "a": list(range(300)),
        "b": {str(i): [i] * (i % 4) for i in range(200)},
        "c": {"__tuple__": [{"__set__": list(range(i))} for i in range(60)]},
        "d": "end",
    }
    whole = describe("m.T", dumps(args), width=None)
    assert describe("m.T", dumps(args), width=width) == shorten("m.T", whole[4:-1], width)


def test_the_store_lookup_only_follows_keys_the_store_writes(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    loc = store.locate("m.T", "ab12")
    os.makedirs(loc)
    Path(loc, "args.json").write_text('{"x": 1}')
    read = args_reader(store)
    assert read("m.T/ab12") == '{"x": 1}'
    assert read("../m.T/ab12") is None
    assert read("m.T/../../x") is None
    assert read("m.T/nothing") is None
    Path(tmp_path, "m.T", "args.json").write_text('{"y": 2}')  # what "m.T/.." would reach
    assert read("m.T/..") is None


# -- the same names in a run and in every view ------------------------------------------------


def test_a_worker_names_its_task_as_the_runner_does(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        data = MakeData(400)
        train = Train(Split(0.2, data)["train"], data)
    result, _ = train.run_graph(executor=executor)
    assert result == repr(train)
    assert result.startswith("t.Train(train=t.Split(frac=0.2, ")
    assert result.endswith("data=t.MakeData(n=400), lr=0.1)")


SWEEP = """
from taskproc import Task

class MakeData(Task):
    def __init__(self, n: int):
        self.n = n

    def run_task(self) -> list[int]:
        return list(range(self.n))

class Split(Task):
    def __init__(self, frac: float):
        self.data = MakeData(400)
        self.frac = frac

    def run_task(self) -> dict[str, list[int]]:
        values = self.data.get_result()
        cut = int(len(values) * self.frac)
        return {"train": values[cut:], "test": values[:cut]}

class Train(Task):
    def __init__(self, train, data, lr: float):
        self.train = train
        self.data = data
        self.lr = lr

    def run_task(self) -> int:
        if self.lr > 1:
            raise ValueError("lr too large")
        return len(self.train.get_result())

class Main(Task):
    def __init__(self, lr: float = 0.5):
        self.model = Train(Split(0.2)["train"], MakeData(400), lr)

    def run_task(self) -> int:
        return self.model.get_result()
"""

TRAIN = "sweep.Train(train=sweep.Split(frac=0.2)['train'], data=sweep.MakeData(n=400), lr=2.0)"


def cli(*args: object, cwd: Path, code: int = 0) -> str:
    proc = subprocess.run(
        [TASKPROC, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_every_view_shows_the_same_readable_names(tmp_path: Path) -> None:
    (tmp_path / "sweep.py").write_text(textwrap.dedent(SWEEP))
    kwargs = ("--kwargs", '{"lr": 2}')
    dry = cli("sweep.py", "-o", "cache", *kwargs, "--dry-run", cwd=tmp_path)
    assert f"  {TRAIN}: " in dry
    assert "  sweep.Split(frac=0.2): " in dry and "__" not in dry

    failed = cli("sweep.py", "-o", "cache", *kwargs, "-t", "thread", cwd=tmp_path, code=1)
    assert f"{TRAIN} failed: ValueError: lr too large" in failed

    status = cli("status", "cache", cwd=tmp_path)
    assert f"  {TRAIN}  ValueError: lr too large" in status

    listed = cli("ls", "cache", "sweep.Train", cwd=tmp_path)
    assert listed.splitlines()[1].endswith(f"  {TRAIN}")

    dot = cli("graph", "sweep.py", "-o", "cache", *kwargs, "--format", "dot", cwd=tmp_path)
    assert f'tooltip="{TRAIN}\\n' in dot
    assert 'label="sweep.Train(train=sweep.Split(fra…keData(n=400), lr=2.0)\\n' in dot

    (entry,) = json.loads(cli("ls", "cache", "sweep.Train", "--json", cwd=tmp_path))
    assert entry["task"] == TRAIN
    split_key = entry["args"]["train"]["__item__"][0]["__task__"]
    assert split_key.startswith("sweep.Split/")
    assert entry["args"] == {
        "train": {"__item__": [{"__task__": split_key}, "train"]},
        "data": {"__task__": entry["args"]["data"]["__task__"]},
        "lr": 2.0,
    }


def test_views_fall_back_to_the_short_id_when_an_upstream_is_gone(tmp_path: Path) -> None:
    (tmp_path / "sweep.py").write_text(textwrap.dedent(SWEEP))
    cli("sweep.py", "-o", "cache", "-t", "thread", cwd=tmp_path)
    cli("clear", "cache", "sweep.MakeData", cwd=tmp_path)
    (entry,) = json.loads(cli("ls", "cache", "sweep.Train", "--json", cwd=tmp_path))
    data_id = entry["args"]["data"]["__task__"].rpartition("/")[2]
    assert entry["task"] == (
        "sweep.Train(train=sweep.Split(frac=0.2)['train'], "
        f"data=<sweep.MakeData {data_id[:8]}>, lr=0.5)"
    )


class CountingStore(MemoryStore):
    """A memory store that counts the arguments read from it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def read_args(self, loc: str) -> str | None:
        self.reads.append(loc)
        return super().read_args(loc)


def test_a_scan_reads_each_task_s_arguments_once() -> None:
    store = CountingStore()
    with Graph("memory", store=store):
        data = MakeData(3)
        first = [Train(data, data, lr) for lr in range(20)]
        top = Train(FutureList(first), data)
    top.run_graph(executor=InlineExecutor())
    store.reads.clear()
    entries = {e.task_id: e for e in scan(store, with_size=True)}
    assert len(store.reads) == len(set(store.reads)) == 22  # not once per downstream task
    assert entries[first[0].task_id].task == (
        "t.Train(train=t.MakeData(n=3), data=t.MakeData(n=3), lr=0)"
    )
    assert entries[top.task_id].args["data"] == {"__task__": f"t.MakeData/{data.task_id}"}


# -- telling tasks of one name apart -------------------------------------------------------------


def sweep_args(**varying: object) -> str:
    return dumps({"data": list(range(40)), **varying, "extra": list(range(30))})


def test_tasks_that_read_the_same_cut_in_the_middle_are_cut_where_they_differ() -> None:
    texts = [sweep_args(lr=lr, seed=seed) for lr in (0.1, 0.2) for seed in (0, 1)]
    assert len({describe("m.Fit", t) for t in texts}) == 1  # the middle cut hides lr and seed
    shown = apart("m.Fit", texts)
    assert len(set(shown)) == 4
    for text, (lr, seed) in zip(shown, [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)], strict=True):
        assert len(text) <= 100 and f"lr={lr}, seed={seed}" in text, text
        assert text.startswith("m.Fit(data=[0, 1, 2") and text.endswith("28, 29])")


def test_apart_keeps_short_texts_whole_and_the_name_always() -> None:
    assert apart("m.T", [dumps({"x": 1}), dumps({"x": 2})]) == ["m.T(x=1)", "m.T(x=2)"]
    name = "a_module." + "VeryLong" * 20
    texts = [dumps({"s": "x" * 300 + c + "y" * 300}) for c in "ab"]
    shown = apart(name, texts, width=100)
    assert all(t.startswith(name + "(") and t.endswith(")") for t in shown)
    assert shown[0] != shown[1] and len(shown[0]) == len(shown[1])


@pytest.mark.parametrize("width", [24, 60, 100])
def test_apart_fits_the_width(width: int) -> None:
    texts = [dumps({"a": list(range(300)), "b": "z" * 200 + str(i) + "z" * 200}) for i in range(5)]
    shown = apart("m.T", texts, width=width)
    floor = len("m.T(") + 24  # as in `shorten`: a few characters of the arguments always show
    assert len(set(shown)) == 5 and all(len(t) <= max(width, floor) for t in shown), shown


def test_ls_tells_apart_tasks_that_differ_in_the_middle(tmp_path: Path) -> None:
    (tmp_path / "fit.py").write_text(
        textwrap.dedent(
            """
            from taskproc import FutureList, Task

            class Fit(Task):
                def __init__(self, data: list, seed: int, extra: list) -> None:
                    self.data, self.seed, self.extra = data, seed, extra

                def run_task(self) -> int:
                    return self.seed

            class Main(Task):
                def __init__(self) -> None:
                    fits = [Fit(list(range(40)), s, list(range(30))) for s in range(3)]
                    self.fits = FutureList(fits)

                def run_task(self) -> int:
                    return sum(self.fits.get_result())
            """
        )
    )
    cli("fit.py", "-o", "cache", "-t", "thread", cwd=tmp_path)
    rows = cli("ls", "cache", "fit.Fit", cwd=tmp_path).splitlines()[1:]
    tasks = sorted(row.split("  ")[-1].strip() for row in rows)
    assert len(tasks) == 3 and [t for t in tasks if "seed=" in t] == tasks, tasks
    assert len(set(tasks)) == 3
