"""Workloads on dask's local schedulers (threads and processes), in dask's own venv.

Two ways of writing each graph, chosen by the ``api`` parameter:

- ``delayed``: ``dask.delayed`` calls and ``.compute(scheduler=...)``, as users write dask;
- ``graph``: dask's low-level graph spec run by ``dask.threaded.get`` /
  ``dask.multiprocessing.get``, its leanest path (no delayed objects, no tokenising).

dask keeps results in memory only, so it has no cached or big-result workloads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dask
import dask.multiprocessing
import dask.threaded
from common import Invocation, burn_cpu, check, choose_value, count_choose_tasks, dispatch
from dask import delayed


def scheduler(kind: str) -> Callable[..., Any]:
    if kind == "thread":
        return dask.threaded.get
    if kind == "process":
        return dask.multiprocessing.get
    raise ValueError(f"executor must be 'thread' or 'process', got {kind!r}")


def identity(x: int) -> int:
    return x


def total(values: list[int]) -> int:
    return sum(values)


def add(a: int, b: int) -> int:
    return a + b


def inc(a: int) -> int:
    return a + 1


def one() -> int:
    return 1


def timed_get(build: Callable[[], dict[Any, Any]], key: Any, kind: str, workers: int) -> Any:
    t0 = time.perf_counter()
    dsk = build()
    result = scheduler(kind)(dsk, key, num_workers=workers)
    return result, time.perf_counter() - t0


def timed_compute(build: Callable[[], Any], kind: str, workers: int) -> Any:
    names = {"thread": "threads", "process": "processes"}
    t0 = time.perf_counter()
    root = build()
    result = root.compute(scheduler=names[kind], num_workers=workers)
    return result, time.perf_counter() - t0


def run(
    inv: Invocation,
    graph: Callable[[], dict[Any, Any]],
    key: Any,
    lazy: Callable[[], Any],
    kind: str,
) -> tuple[Any, float]:
    """Build and run the graph in the requested API; returns (result, seconds)."""
    workers = int(inv.params["workers"])
    api = str(inv.params["api"])
    if api == "graph":
        return timed_get(graph, key, kind, workers)  # type: ignore[no-any-return]
    if api == "delayed":
        return timed_compute(lazy, kind, workers)  # type: ignore[no-any-return]
    raise ValueError(f"api must be 'graph' or 'delayed', got {api!r}")


def fanin_graph(n: int) -> dict[Any, Any]:
    dsk: dict[Any, Any] = {("leaf", i): (identity, i) for i in range(n)}
    dsk["root"] = (total, [("leaf", i) for i in range(n)])
    return dsk


def fanin_delayed(n: int) -> Any:
    return delayed(total)([delayed(identity)(i) for i in range(n)])


def fanin(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    kind = str(inv.params["executor"])
    result, elapsed = run(inv, lambda: fanin_graph(n), "root", lambda: fanin_delayed(n), kind)
    check(result == n * (n - 1) // 2, "wrong fan-in result")
    return {"time_s": elapsed, "n_tasks": n}


def choose_graph(n: int, k: int) -> dict[Any, Any]:
    dsk: dict[Any, Any] = {}
    stack = [(n, k)]
    while stack:
        nn, kk = stack.pop()
        key = ("choose", nn, kk)
        if key in dsk:
            continue
        if 0 < kk < nn:
            dsk[key] = (add, ("choose", nn - 1, kk - 1), ("choose", nn - 1, kk))
            stack.extend(((nn - 1, kk - 1), (nn - 1, kk)))
        else:
            dsk[key] = (one,)
    return dsk


def choose_delayed(n: int, k: int) -> Any:
    """The same graph from delayed calls, built upstream-first (no recursion)."""
    nodes: dict[tuple[int, int], Any] = {}
    for nn, kk in sorted(key[1:] for key in choose_graph(n, k)):
        if 0 < kk < nn:
            nodes[nn, kk] = delayed(add)(nodes[nn - 1, kk - 1], nodes[nn - 1, kk])
        else:
            nodes[nn, kk] = delayed(one)()
    return nodes[n, k]


def choose(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    k = n // 2
    result, elapsed = run(
        inv, lambda: choose_graph(n, k), ("choose", n, k), lambda: choose_delayed(n, k), "thread"
    )
    check(result == choose_value(n, k), "wrong Choose result")
    return {"time_s": elapsed, "n_tasks": count_choose_tasks(n, k)}


def chain_graph(depth: int) -> dict[Any, Any]:
    dsk: dict[Any, Any] = {("step", 0): (one,)}
    for i in range(1, depth + 1):
        dsk[("step", i)] = (inc, ("step", i - 1))
    return dsk


def chain_delayed(depth: int) -> Any:
    step = delayed(one)()
    for _ in range(depth):
        step = delayed(inc)(step)
    return step


def chain(inv: Invocation) -> dict[str, Any]:
    depth = int(inv.params["depth"])
    result, elapsed = run(
        inv, lambda: chain_graph(depth), ("step", depth), lambda: chain_delayed(depth), "thread"
    )
    check(result == depth + 1, "wrong chain result")
    return {"time_s": elapsed, "n_tasks": depth + 1}


def cpu(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    seconds = float(inv.params["seconds"])

    def graph() -> dict[Any, Any]:
        dsk: dict[Any, Any] = {("burn", i): (burn_cpu, seconds) for i in range(n)}
        dsk["root"] = (len, [("burn", i) for i in range(n)])
        return dsk

    def lazy() -> Any:
        return delayed(len)([delayed(burn_cpu)(seconds) for _ in range(n)])

    result, elapsed = run(inv, graph, "root", lazy, "process")
    check(result == n, "wrong cpu result")
    return {"time_s": elapsed, "n_tasks": n}


if __name__ == "__main__":
    print("dask", dask.__version__)
    dispatch({"fanin": fanin, "choose": choose, "chain": chain, "cpu": cpu})
