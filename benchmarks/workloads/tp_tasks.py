"""Task classes of the benchmark workloads, written against the seed README's API only.

The same file runs on our taskproc and on the published taskproc 0.25.3. The classes live in
an importable module (not in ``__main__``) as they would in a real pipeline.
"""

from __future__ import annotations

from common import burn_cpu, make_payload, write_stamp

from taskproc import Const, Future, FutureList, Task


class Leaf(Task):
    """A trivial task: the unit of per-task overhead."""

    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        return self.i


class FanIn(Task):
    def __init__(self, n: int) -> None:
        self.leaves = FutureList([Leaf(i) for i in range(n)])

    def run_task(self) -> int:
        return sum(self.leaves.get_result())


class Choose(Task):
    """The binomial graph of the seed README."""

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


class ChainInit(Task):
    """A chain whose upstream task is built in ``__init__`` (recursive construction)."""

    def __init__(self, depth: int) -> None:
        self.prev = ChainInit(depth - 1) if depth > 0 else Const(0)

    def run_task(self) -> int:
        return self.prev.get_result() + 1


class ChainArg(Task):
    """A chain whose upstream task is passed in as an argument (built in a loop)."""

    def __init__(self, step: int, prev: Future[int]) -> None:
        self.prev = prev

    def run_task(self) -> int:
        return self.prev.get_result() + 1


def build_chain_arg(depth: int) -> ChainArg:
    task: Future[int] = Const(0)
    for step in range(depth + 1):
        task = ChainArg(step, task)
    return task  # type: ignore[return-value]  # the loop runs at least once


class BigResult(Task):
    """One large result saved at the default compression level."""

    def __init__(self, nbytes: int, kind: str, stamp: str) -> None:
        self.nbytes = nbytes
        self.kind = kind
        self.stamp = stamp

    def run_task(self) -> bytearray:
        data = make_payload(self.nbytes, self.kind)
        write_stamp(self.stamp)
        return data


class BigResultRaw(Task):
    """The same, saved at compression level 0 (a separate class: both versions key on it)."""

    task_compress_level = 0

    def __init__(self, nbytes: int, kind: str, stamp: str) -> None:
        self.nbytes = nbytes
        self.kind = kind
        self.stamp = stamp

    def run_task(self) -> bytearray:
        data = make_payload(self.nbytes, self.kind)
        write_stamp(self.stamp)
        return data


class Burn(Task):
    """A CPU-bound task: ``seconds`` of pure-Python work."""

    def __init__(self, i: int, seconds: float) -> None:
        self.seconds = seconds

    def run_task(self) -> int:
        return burn_cpu(self.seconds)


class BurnAll(Task):
    def __init__(self, n: int, seconds: float) -> None:
        self.parts = FutureList([Burn(i, seconds) for i in range(n)])

    def run_task(self) -> int:
        return len(self.parts.get_result())
