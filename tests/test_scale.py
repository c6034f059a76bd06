"""Deep graphs: chains of 100,000 dependent tasks build, run and rerun, written either way.

Nothing may recurse once per link: the 100,000-task chains run on a `MemoryStore` (the model,
the plan and the run loop, in seconds); the same chains, past Python's recursion limit but
shorter, run on a cache folder, for the folder's own code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from taskproc import Const, Future, Graph, InlineExecutor, Task

DEPTH = 100_000
FOLDER_DEPTH = 3_000  # on a cache folder: three times Python's recursion limit


class ChainInit(Task):
    """Upstream built inside __init__ (the binomial style)."""

    def __init__(self, n: int) -> None:
        self.prev = ChainInit(n - 1) if n > 0 else Const(0)

    def run_task(self) -> int:
        return self.prev.get_result() + 1


class ChainArg(Task):
    """Upstream passed as a constructor argument."""

    def __init__(self, prev: Future[int], n: int) -> None:
        self.prev = prev
        self.n = n

    def run_task(self) -> int:
        return self.prev.get_result() + 1


def build_arg_chain(depth: int) -> Future[int]:
    x: Future[int] = Const(0)
    for n in range(depth):
        x = ChainArg(x, n)
    return x


@pytest.mark.parametrize(
    ("style", "depth", "where"),
    [
        ("init", DEPTH, "memory"),
        ("arg", DEPTH, "memory"),
        ("init", FOLDER_DEPTH, "folder"),
        ("arg", FOLDER_DEPTH, "folder"),
    ],
)
def test_a_deep_chain_builds_runs_and_reruns(
    cache: Path, style: str, depth: int, where: str
) -> None:
    from taskproc.store import MemoryStore

    store = MemoryStore() if where == "memory" else None
    with Graph(cache, store=store):
        root = ChainInit(depth - 1) if style == "init" else build_arg_chain(depth)
    ans, stats = root.run_graph(executor=InlineExecutor())  # type: ignore[union-attr]
    assert ans == depth
    assert stats["executed"] == depth
    ans, stats = root.run_graph(executor=InlineExecutor())  # type: ignore[union-attr]
    assert ans == depth and stats["executed"] == 0


def test_why_on_a_chain_of_100k_follows_each_link_once() -> None:
    """Every task of a new chain reruns because of the first: explaining all of them must not
    walk the chain once per task (that would be 5e9 steps)."""
    from taskproc.store import MemoryStore

    with Graph("memory", store=MemoryStore()):
        root = ChainInit(DEPTH - 1)
    whys = root.why()
    assert len(whys) == DEPTH
    assert whys[0].summary == "no cached result: never run"
    assert whys[-1].cause == "test_scale.ChainInit(n=0): no cached result: never run"
