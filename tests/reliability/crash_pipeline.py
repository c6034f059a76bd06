"""A pipeline of 241 small tasks whose answer is known, for kill -9 trials.

Leaves return a checksummed payload, so a wrong or torn result is noticed downstream.
"""

from __future__ import annotations

import hashlib

from taskproc import FutureList, Task

LEAVES, GROUPS = 225, 15


def payload(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * 400  # 12.8 KB


class Leaf(Task):
    task_compress_level = 1

    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> tuple[int, bytes]:
        return self.i * self.i, payload(self.i)


class Group(Task):
    def __init__(self, j: int) -> None:
        self.j = j
        per = LEAVES // GROUPS
        self.leaves = FutureList([Leaf(j * per + i) for i in range(per)])

    def run_task(self) -> int:
        total = 0
        per = LEAVES // GROUPS
        for i, (square, data) in enumerate(self.leaves.get_result()):
            if data != payload(self.j * per + i):
                raise ValueError(f"wrong payload for leaf {self.j * per + i}")
            total += square
        return total


class Main(Task):
    def __init__(self) -> None:
        self.groups = FutureList([Group(j) for j in range(GROUPS)])

    def run_task(self) -> int:
        answer = sum(self.groups.get_result())
        print(f"ANSWER {answer}")
        return answer


EXPECTED = sum(i * i for i in range(LEAVES))
