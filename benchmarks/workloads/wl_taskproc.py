"""Workloads on taskproc: ours (repo on PYTHONPATH) or the published 0.25.3 (its own venv).

Times cover graph building plus ``run_graph`` (which ends with the root's result in hand);
interpreter start-up and imports are excluded for every system alike.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from common import (
    Invocation,
    check,
    children_maxrss_bytes,
    choose_value,
    count_choose_tasks,
    dispatch,
    save_timing,
    self_maxrss_bytes,
)
from tp_tasks import (
    BigResult,
    BigResultRaw,
    BurnAll,
    ChainInit,
    Choose,
    FanIn,
    build_chain_arg,
)

import taskproc
from taskproc import Graph, Task


def make_executor(kind: str, workers: int) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(workers)
    if kind == "process":
        return ProcessPoolExecutor(workers)
    raise ValueError(f"executor must be 'thread' or 'process', got {kind!r}")


def timed_run(inv: Invocation, build: Any, executor: Executor) -> tuple[Any, int, float, float]:
    """Build the graph with ``build()``, run it; returns (result, executed, build_s, total_s)."""
    t0 = time.perf_counter()
    with Graph(str(inv.work / "cache")):
        root: Task = build()
        t1 = time.perf_counter()
        result, stats = root.run_graph(
            executor=executor, show_progress=False, detect_source_change=False
        )
    t2 = time.perf_counter()
    executor.shutdown(wait=True)  # reap pool workers so the peak memory includes them
    executed = sum(int(v) for v in stats["stats"].values())
    return result, executed, t1 - t0, t2 - t0


def fanin(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    executor = make_executor(str(inv.params["executor"]), int(inv.params["workers"]))
    result, executed, build_s, total_s = timed_run(inv, lambda: FanIn(n), executor)
    check(result == n * (n - 1) // 2, f"wrong fan-in result {result!r}")
    return {"time_s": total_s, "build_s": build_s, "n_tasks": n, "executed": executed}


def cached(inv: Invocation, build: Any, expected: Any, n_tasks: int) -> dict[str, Any]:
    """A rerun in a new process of a graph whose every result is cached."""
    result, executed, build_s, total_s = timed_run(inv, build, ThreadPoolExecutor(2))
    check(executed == 0, f"graph not fully cached: {executed} task(s) ran")
    check(expected(result), "wrong result from the cache")
    return {"time_s": total_s, "build_s": build_s, "n_tasks": n_tasks, "executed": executed}


def fanin_cached(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    return cached(inv, lambda: FanIn(n), lambda r: r == n * (n - 1) // 2, n)


def choose(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    k = n // 2
    executor = make_executor("thread", int(inv.params["workers"]))
    result, executed, build_s, total_s = timed_run(inv, lambda: Choose(n, k), executor)
    check(result == choose_value(n, k), f"wrong Choose({n}, {k}) = {result!r}")
    tasks = count_choose_tasks(n, k)
    return {"time_s": total_s, "build_s": build_s, "n_tasks": tasks, "executed": executed}


def chain(inv: Invocation) -> dict[str, Any]:
    depth = int(inv.params["depth"])
    style = str(inv.params["style"])
    if style == "init":
        build: Any = lambda: ChainInit(depth)  # noqa: E731  # a thunk, timed by timed_run
    elif style == "arg":
        build = lambda: build_chain_arg(depth)  # noqa: E731
    else:
        raise ValueError(f"style must be 'init' or 'arg', got {style!r}")
    executor = make_executor("thread", int(inv.params["workers"]))
    result, executed, build_s, total_s = timed_run(inv, build, executor)
    check(result == depth + 1, f"wrong chain result {result!r}")
    return {"time_s": total_s, "build_s": build_s, "n_tasks": depth + 1, "executed": executed}


def big_task(inv: Invocation) -> Any:
    cls = BigResult if int(inv.params["level"]) == 9 else BigResultRaw
    # The stamp path is an argument of the task, so save and load runs share the work dir.
    stamp = str(inv.work / "stamp")
    return lambda: cls(int(inv.params["nbytes"]), str(inv.params["kind"]), stamp)


def big_save(inv: Invocation) -> dict[str, Any]:
    """One big result computed on a one-worker process pool; time its save, measure the worker."""
    nbytes = int(inv.params["nbytes"])
    executor = ProcessPoolExecutor(1)
    result, _, _, total_s = timed_run(inv, big_task(inv), executor)
    check(len(result) == nbytes, "wrong result size")
    del result
    timing = save_timing(inv.work / "cache", inv.work / "stamp")
    return {
        "time_s": timing["save_s"],
        "total_s": total_s,
        "nbytes": nbytes,
        "worker_maxrss": children_maxrss_bytes(),
        "runner_maxrss": self_maxrss_bytes(),
        **timing,
    }


def big_load(inv: Invocation) -> dict[str, Any]:
    nbytes = int(inv.params["nbytes"])
    out = cached(inv, big_task(inv), lambda r: len(r) == nbytes, 1)
    return {**out, "nbytes": nbytes, "runner_maxrss": self_maxrss_bytes()}


def cpu(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    seconds = float(inv.params["seconds"])
    executor = make_executor("process", int(inv.params["workers"]))
    result, _, _, total_s = timed_run(inv, lambda: BurnAll(n, seconds), executor)
    check(result == n, "wrong cpu result")
    return {"time_s": total_s, "n_tasks": n}


if __name__ == "__main__":
    print("taskproc from", taskproc.__file__)
    dispatch(
        {
            "fanin": fanin,
            "cached": fanin_cached,
            "choose": choose,
            "chain": chain,
            "big_save": big_save,
            "big_load": big_load,
            "cpu": cpu,
        }
    )
