"""The bare floor: the least any cached task framework must do.

Each task runs on a plain ``concurrent.futures`` pool, pickles its result, gzips it (level 9,
taskproc's default) into a uniquely named temporary file and renames it into place. DAGs are
driven by ``graphlib.TopologicalSorter`` with upstream values passed in memory. The cached
check is a new process that ``os.path.exists``-checks every result file and loads the root.
"""

from __future__ import annotations

import gzip
import os
import pickle
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from common import (
    Invocation,
    burn_cpu,
    check,
    choose_value,
    count_choose_tasks,
    dispatch,
    gzip_test,
    make_payload,
    self_maxrss_bytes,
)

LEVEL = 9
_WRITE_SLICE = 1 << 20


def make_executor(kind: str, workers: int) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(workers)
    if kind == "process":
        return ProcessPoolExecutor(workers)
    raise ValueError(f"executor must be 'thread' or 'process', got {kind!r}")


def tmp_name(path: str) -> str:
    return f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"


def save_small(path: str, value: object, level: int = LEVEL) -> None:
    tmp = tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(gzip.compress(pickle.dumps(value, protocol=5), compresslevel=level))
    os.replace(tmp, path)


def load(path: str) -> Any:
    with gzip.open(path, "rb") as f:
        return pickle.load(f)


class _SlicedWriter:
    """Feeds gzip in 1 MiB slices so a big result never has a second full-size copy."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), _WRITE_SLICE):
            self.raw.write(view[start : start + _WRITE_SLICE])
        return len(view)


def save_big(path: str, value: object, level: int) -> None:
    tmp = tmp_name(path)
    with gzip.open(tmp, "wb", compresslevel=level) as f:
        pickle.dump(value, _SlicedWriter(f), protocol=5)  # type: ignore[arg-type]
    os.replace(tmp, path)


def leaf_paths(cache: Path, n: int) -> list[str]:
    return [str(cache / f"{i}.pkl.gz") for i in range(n)]


def run_leaf(i: int, path: str) -> int:
    save_small(path, i)
    return i


def fanin(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    executor = make_executor(str(inv.params["executor"]), int(inv.params["workers"]))
    cache = inv.work / "cache" / "leaf"
    cache.mkdir(parents=True)
    t0 = time.perf_counter()
    paths = leaf_paths(cache, n)
    with executor:
        futures = [executor.submit(run_leaf, i, p) for i, p in enumerate(paths)]
        total = sum(f.result() for f in futures)
    save_small(str(inv.work / "cache" / "root.pkl.gz"), total)
    elapsed = time.perf_counter() - t0
    check(total == n * (n - 1) // 2, "wrong fan-in result")
    return {"time_s": elapsed, "n_tasks": n}


def fanin_cached(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    t0 = time.perf_counter()
    paths = leaf_paths(inv.work / "cache" / "leaf", n)
    present = all(os.path.exists(p) for p in paths)
    root = load(str(inv.work / "cache" / "root.pkl.gz"))
    elapsed = time.perf_counter() - t0
    check(present and root == n * (n - 1) // 2, "cache incomplete or wrong")
    return {"time_s": elapsed, "n_tasks": n, "executed": 0}


Key = TypeVar("Key", bound=Hashable)
Pair = tuple[int, int]


def run_node(compute: Callable[[Key, list[Any]], Any], key: Key, args: list[Any], path: str) -> Any:
    value = compute(key, args)
    save_small(path, value)
    return value


def run_dag(
    deps: Mapping[Key, Sequence[Key]],
    compute: Callable[[Key, list[Any]], Any],
    path_of: Callable[[Key], str],
    executor: Executor,
) -> dict[Key, Any]:
    """Submit every ready node as soon as its upstream nodes are done; values stay in memory."""
    sorter = TopologicalSorter(deps)
    sorter.prepare()
    values: dict[Key, Any] = {}
    running: dict[Future[Any], Key] = {}
    with executor:
        while sorter.is_active():
            for key in sorter.get_ready():
                args = [values[d] for d in deps[key]]
                running[executor.submit(run_node, compute, key, args, path_of(key))] = key
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                key = running.pop(future)
                values[key] = future.result()
                sorter.done(key)
    return values


def choose_deps(n: int, k: int) -> dict[Pair, tuple[Pair, ...]]:
    deps: dict[Pair, tuple[Pair, ...]] = {}
    stack = [(n, k)]
    while stack:
        nn, kk = node = stack.pop()
        if node in deps:
            continue
        deps[node] = ((nn - 1, kk - 1), (nn - 1, kk)) if 0 < kk < nn else ()
        stack.extend(deps[node])
    return deps


def choose_compute(key: Pair, args: list[Any]) -> int:
    return sum(args) if args else 1


def choose(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    k = n // 2
    cache = inv.work / "cache"
    cache.mkdir(parents=True)
    executor = make_executor("thread", int(inv.params["workers"]))
    t0 = time.perf_counter()
    deps = choose_deps(n, k)
    values = run_dag(
        deps, choose_compute, lambda key: f"{cache}/{key[0]}-{key[1]}.pkl.gz", executor
    )
    elapsed = time.perf_counter() - t0
    check(values[(n, k)] == choose_value(n, k), "wrong Choose result")
    return {"time_s": elapsed, "n_tasks": count_choose_tasks(n, k)}


def chain_compute(key: int, args: list[Any]) -> int:
    return args[0] + 1 if args else 1


def chain(inv: Invocation) -> dict[str, Any]:
    depth = int(inv.params["depth"])
    cache = inv.work / "cache"
    cache.mkdir(parents=True)
    executor = make_executor("thread", int(inv.params["workers"]))
    t0 = time.perf_counter()
    deps: dict[int, tuple[int, ...]] = {i: ((i - 1,) if i else ()) for i in range(depth + 1)}
    values = run_dag(deps, chain_compute, lambda key: f"{cache}/{key}.pkl.gz", executor)
    elapsed = time.perf_counter() - t0
    check(values[depth] == depth + 1, "wrong chain result")
    return {"time_s": elapsed, "n_tasks": depth + 1}


def big_path(inv: Invocation) -> str:
    return str(inv.work / "result.pkl.gz")


def big_save(inv: Invocation) -> dict[str, Any]:
    """In-process: the floor has no scheduler to go through, only the save itself."""
    nbytes = int(inv.params["nbytes"])
    data = make_payload(nbytes, str(inv.params["kind"]))
    t0 = time.perf_counter()
    save_big(big_path(inv), data, int(inv.params["level"]))
    elapsed = time.perf_counter() - t0
    return {
        "time_s": elapsed,
        "nbytes": nbytes,
        "file_bytes": os.path.getsize(big_path(inv)),
        "gzip_ok": gzip_test(Path(big_path(inv))),
        "worker_maxrss": self_maxrss_bytes(),
    }


def big_load(inv: Invocation) -> dict[str, Any]:
    nbytes = int(inv.params["nbytes"])
    t0 = time.perf_counter()
    data = load(big_path(inv))
    elapsed = time.perf_counter() - t0
    check(len(data) == nbytes, "wrong result size")
    return {"time_s": elapsed, "nbytes": nbytes, "n_tasks": 1, "runner_maxrss": self_maxrss_bytes()}


def run_burn(i: int, seconds: float, path: str) -> int:
    value = burn_cpu(seconds)
    save_small(path, value)
    return value


def cpu(inv: Invocation) -> dict[str, Any]:
    n = int(inv.params["n"])
    seconds = float(inv.params["seconds"])
    cache = inv.work / "cache"
    cache.mkdir(parents=True)
    executor = make_executor("process", int(inv.params["workers"]))
    t0 = time.perf_counter()
    with executor:
        futures = [executor.submit(run_burn, i, seconds, f"{cache}/{i}.pkl.gz") for i in range(n)]
        results = [f.result() for f in futures]
    elapsed = time.perf_counter() - t0
    check(len(results) == n, "wrong cpu result")
    return {"time_s": elapsed, "n_tasks": n}


if __name__ == "__main__":
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
