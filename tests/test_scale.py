"""Deep graphs: chains of 100,000 dependent tasks build, run and rerun, written either way."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskproc import Const, Future, Graph, InlineExecutor, Task

DEPTH = 100_000


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


@pytest.mark.parametrize("style", ["init", "arg"])
def test_chain_of_100k(cache: Path, style: str) -> None:
    with Graph(cache):
        root = ChainInit(DEPTH - 1) if style == "init" else build_arg_chain(DEPTH)
    ans, stats = root.run_graph(executor=InlineExecutor())  # type: ignore[union-attr]
    assert ans == DEPTH
    assert stats["executed"] == DEPTH
    ans, stats = root.run_graph(executor=InlineExecutor())  # type: ignore[union-attr]
    assert ans == DEPTH and stats["executed"] == 0


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
