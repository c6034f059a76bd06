"""Every way code is reached, through the command line: each kind of edit in
`freshness_cases.py` is made to a small project between two runs of ``taskproc pipe.py``,
and exactly the tasks that reach it run again (the cosmetic twin: none), on a thread pool and
a process pool. Which tasks ran is read from their result files (a run writes a new file).

A few cases of each sort run by default; every case runs with ``--stress``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from freshness_cases import CASES, Case

TASKPROC = str(Path(sys.executable).with_name("taskproc"))
DEFAULT = {
    "import inside run_task",
    "import inside a helper",
    "nested dataclasses",
    "object holding a function",
    "a global bound to a builtin",
    "class made by a factory",
    "a module named like the standard library's",
    "a static method of another task class",
    "a class attribute set after the class statement",
    "a decorated helper's body",
    "an lru_cache helper",
}


def taskproc(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [TASKPROC, "pipe.py", "-o", "cache", "--dont-show-progress", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def results(folder: Path) -> dict[str, int]:
    """Each task name's result file, by inode (a run that writes one makes a new file)."""
    found = {}
    for path in (folder / "cache").glob("pipe.*/results/*/result.pkl.gz"):
        found[path.parts[-4]] = path.stat().st_ino
    return found


def ran_after(folder: Path, edit: tuple[str, str, str], executor: str) -> set[str]:
    taskproc(folder, "-t", executor)
    before = results(folder)
    Case.apply(folder, edit)
    taskproc(folder, "-t", executor, "--dont-force-entrypoint")
    after = results(folder)
    return {name for name, inode in after.items() if before.get(name) != inode}


def _params() -> list[object]:
    out = []
    for case in CASES:
        marks = [] if case.name in DEFAULT else [pytest.mark.slow]
        for executor in ("thread", "process"):
            out.append(pytest.param(case, executor, id=f"{case.name}-{executor}", marks=marks))
    return out


@pytest.mark.parametrize(("case", "executor"), _params())
def test_an_edit_reruns_what_reaches_it_and_a_cosmetic_one_nothing(
    tmp_path: Path, case: Case, executor: str
) -> None:
    edited, cosmetic = tmp_path / "edited", tmp_path / "cosmetic"
    case.write(edited)
    case.write(cosmetic)
    assert ran_after(edited, case.edit, executor) == {"pipe.Uses", "pipe.Main"}
    assert ran_after(cosmetic, case.cosmetic, executor) == set()


LONG_LIVED = """
import sys, warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from taskproc import Graph
import pipe

def run():
    with Graph("cache"):
        with ThreadPoolExecutor(2) as pool:
            return pipe.Main().run_graph(executor=pool, detect_source_change=True)[0]

print("FIRST", run())
Path("helpers.py").write_text(Path("helpers.py").read_text().replace("x * 2", "x * 3"))
print("SECOND", run())
"""


def test_a_long_lived_process_never_stores_the_file_identity_for_the_code_in_memory(
    tmp_path: Path,
) -> None:
    """A script edits a helper module between two ``run_graph`` calls without reloading it:
    the second run says so in one line naming the module, and what it stored is not taken
    as the new code's result by a fresh run."""
    case = next(c for c in CASES if c.name == "helper function body")
    case.write(tmp_path)
    (tmp_path / "script.py").write_text(textwrap.dedent(LONG_LIVED))
    proc = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "FIRST [6, 'other']" in proc.stdout
    assert "SECOND [6, 'other']" in proc.stdout  # the code in memory ran
    warned = [
        line for line in proc.stderr.splitlines() if "was edited since it was imported" in line
    ]
    assert len(warned) == 1, proc.stderr
    assert "helpers (" in warned[0] and "importlib.reload(helpers)" in warned[0]
    fresh = taskproc(tmp_path, "-t", "thread")
    assert "RESULT 9" in fresh.stdout  # the file's code ran: nothing stale was served


STDIN = """
from taskproc import Graph, Task, InlineExecutor


class Job(Task):
    def run_task(self):
        {doc}return 41 + 1


with Graph("cache"):
    stats = Job().run_graph(executor=InlineExecutor(), detect_source_change=True)[1]
    print("RAN", stats["executed"])
"""


def test_a_docstring_in_code_from_standard_input_changes_nothing(tmp_path: Path) -> None:
    def run(doc: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-"],
            input=textwrap.dedent(STDIN).replace("{doc}", doc),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert run("") == "RAN 1"
    assert run('"""Now documented."""\n        ') == "RAN 0"
    assert run("") == "RAN 0"
    assert run("x = 1\n        ") == "RAN 1"  # code that differs still counts
