"""Tasks defined in a script's __main__ run on every executor, with prefixes too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
from concurrent.futures import ThreadPoolExecutor
from taskproc import Const, Graph, InlineExecutor, Task
from taskproc.run import process_pool

class Choose(Task):
    def __init__(self, n: int, k: int):
        if 0 < k < n:
            self.left = Choose(n - 1, k - 1)
            self.right = Choose(n - 1, k)
        else:
            self.left = Const(0)
            self.right = Const(1)

    def run_task(self) -> int:
        return self.left.get_result() + self.right.get_result()

kind = sys.argv[1]
executor = {"inline": InlineExecutor, "thread": lambda: ThreadPoolExecutor(2),
            "process": lambda: process_pool(2)}[kind]()
prefixes = {"*": "env A=1"} if len(sys.argv) > 2 else None
with Graph("cache"):
    ans, stats = Choose(6, 3).run_graph(executor=executor, prefixes=prefixes)
print(ans, stats["stats"])
"""


@pytest.mark.parametrize("kind", ["inline", "thread", "process"])
@pytest.mark.parametrize("prefix", [False, True])
def test_main_module_tasks_run(tmp_path: Path, kind: str, prefix: bool) -> None:
    (tmp_path / "binom.py").write_text(SCRIPT)
    args = [sys.executable, "binom.py", kind] + (["prefix"] if prefix else [])
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "20 {'binom.Choose': 15}"
    # the same cache is shared with a different executor: nothing reruns
    out = subprocess.run(
        [sys.executable, "binom.py", "inline"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "20 {'binom.Choose': 0}"
