"""Typing behaviour users rely on; checked by mypy in test_typing.py (never imported)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typing_extensions import assert_type

from taskproc import (
    Const,
    FailedTaskError,
    Future,
    FutureDict,
    FutureList,
    InputFile,
    Task,
    allow_failed,
)


class Choose(Task):
    def __init__(self, n: int, k: int) -> None:
        self.left: Future[int] = Choose(n - 1, k - 1) if 0 < k < n else Const(0)

    def run_task(self) -> int:
        return self.left.get_result()


class Splits(Task):
    def run_task(self) -> dict[str, list[float]]:
        return {"train": [1.0], "test": [2.0]}


class Pair(Task):
    def run_task(self) -> tuple[int, str]:
        return (1, "a")


def needs_int(x: Future[int]) -> None: ...


assert_type(Choose(6, 3), Choose)
assert_type(Choose(6, 3).run_graph()[0], int)
assert_type(Choose(6, 3).run_graph()[1], dict[str, Any])
assert_type(Choose(6, 3).get_result(), int)
assert_type(Splits()["train"], Future[list[float]])
assert_type(Splits()["train"][0], Future[float])
assert_type(Splits()["train"][0].get_result(), float)
assert_type(Const(3), Const[int])
assert_type(FutureList([Choose(1, 1), Choose(2, 1)]), FutureList[int])
assert_type(FutureList([Choose(1, 1)]).get_result(), list[int])
assert_type(FutureList([Const("a")]).get_result(), list[str])
assert_type(FutureDict({"a": Choose(1, 1)}).get_result(), dict[str, int])
assert_type(FutureDict({"a": Splits()["test"]}), FutureDict[str, list[float]])
needs_int(Choose(1, 1))
needs_int(Const(1))
needs_int(Splits()["train"][0])  # type: ignore[arg-type]  # a float is not an int
Choose("a", 1)  # type: ignore[arg-type]  # constructor arguments keep their types

# allow_failed: a failed entry's value is its FailedTaskError.
assert_type(FutureList([Choose(1, 1)], allow_failed=True), FutureList[int | FailedTaskError])
assert_type(FutureList([Choose(1, 1)], allow_failed=True).get_result(), list[int | FailedTaskError])
assert_type(FutureList([Const("a")], allow_failed=True), FutureList[str | FailedTaskError])
assert_type(FutureList([Choose(1, 1)], allow_failed=False), FutureList[int])
assert_type(
    FutureDict({"a": Choose(1, 1)}, allow_failed=True).get_result(),
    dict[str, int | FailedTaskError],
)
assert_type(
    FutureDict({"a": Splits()["test"]}, allow_failed=True),
    FutureDict[str, list[float] | FailedTaskError],
)
assert_type(allow_failed(Choose(1, 1)), Future[int | FailedTaskError])
assert_type(allow_failed(Splits()["train"]).get_result(), list[float] | FailedTaskError)
needs_int(allow_failed(Choose(1, 1)))  # type: ignore[arg-type]  # it may be a failure
FutureList([Choose(1, 1)], allow_failed=1)  # type: ignore[call-overload]  # a bool


# An input file is a future of its path, alone and in lists and dicts.
def needs_path(x: Future[Path]) -> None: ...


needs_path(InputFile("data.csv"))
needs_path(InputFile(Path("data")))
assert_type(InputFile("data.csv").get_result(), Path)
assert_type(FutureList([InputFile("a"), InputFile("b")]), FutureList[Path])
assert_type(FutureDict({"a": InputFile("a")}), FutureDict[str, Path])
