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


@pytest.mark.parametrize("kind", ["inline", "thread", "process"])
@pytest.mark.parametrize("prefix", [False, True])
def test_code_read_from_standard_input_is_main(tmp_path: Path, kind: str, prefix: bool) -> None:
    """`python - < binom.py`: the module's file is '<stdin>', not a path; its tasks are named
    as in `python -c` (`__main__.Choose`), and rerun from the cache."""
    args = [sys.executable, "-", kind] + (["prefix"] if prefix else [])
    for stats in ("{'__main__.Choose': 15}", "{'__main__.Choose': 0}"):
        out = subprocess.run(
            args, input=SCRIPT, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"20 {stats}"


@pytest.mark.parametrize("name", ["<stdin>", "<string>", "<input>"])
def test_a_pseudo_file_name_stands_for_main(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    from types import ModuleType

    from taskproc.model._naming import main_module_name

    main = ModuleType("__main__")
    main.__file__ = name
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert main_module_name() == "__main__"
    main.__file__ = "/somewhere/pipeline.py"
    assert main_module_name() == "pipeline"


FAILS = """
import sys
from taskproc import Graph, Task
from taskproc.run import process_pool

class Boom(Task):
    def run_task(self) -> int:
        raise RuntimeError("boom in __main__")

prefixes = {"*": "env A=1"} if sys.argv[1:] else {}
with Graph("cache"):
    try:
        Boom().run_graph(executor=process_pool(1), prefixes=prefixes)
    except Exception as group:
        print(group.exceptions[0])
"""


@pytest.mark.parametrize("prefix", [False, True])
def test_a_failure_in_main_shows_the_script_line(tmp_path: Path, prefix: bool) -> None:
    """Classes of `__main__` travel to process workers by value; their traceback still names
    the script and shows its line."""
    script = tmp_path / "boom.py"
    script.write_text(FAILS)
    args = [sys.executable, "boom.py"] + (["prefix"] if prefix else [])
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert f'File "{script}", line 8, in run_task' in out.stdout, out.stdout + out.stderr
    assert 'raise RuntimeError("boom in __main__")' in out.stdout
