"""A cache written by an older taskproc is read, not recomputed, by today's code.

``tests/fixtures/legacy_cache`` was made by ``tests/fixtures/make_legacy_cache.py`` (see its
docstring: taskproc 0.26.0, commit f7bf927) from the graph of
``tests/fixtures/legacy_pipeline.py``. Each test copies it into ``tmp_path``, builds the same
graph there with the code under test and checks, through the public API and the ``taskproc``
command only, that the old cache is used as it is: the same task ids, the same folder layout,
result files that still load, and nothing run again. A change to how ids are computed, to the
result-file format or to the layout fails these tests; such a change needs a migration, not a
new fixture.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import taskproc
from taskproc import Graph, InlineExecutor

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LEGACY_CACHE = FIXTURES / "legacy_cache"
META = json.loads((FIXTURES / "legacy_cache.meta.json").read_text(encoding="utf-8"))

# Every task of the fixture, as `task_name/task_id` (the folders under <name>/results/).
EXPECTED_KEYS = {
    "legacy.Main/2afb9b83f9314e5d029766197f539792",
    "legacy.Leaf/5f0846a8d9de2a7103a2883bb07fd718",  # Leaf(4, 5)
    "legacy.Leaf/ab1602357a46a737fad9188c505c6691",  # Leaf(0, 3)
    "legacy.Leaf/22649c5fba645a66b84931edf73a57c8",  # Leaf(1, 3)
    "legacy.Leaf/dc6684abc483174e4179b9d8108e5fc8",  # Leaf(2, 3)
    "legacy.Leaf/758c9b4afc8ca70d6110d12a06a7e4e0",  # Leaf(3, 3)
    "legacy.Leaf/30e5ad9e1326fc125d406ad3d417e680",  # Leaf(2, 10)
    "legacy.Leaf/0bbab0f4ecc6790810bfbde369ec9db5",  # Leaf(4, 10)
    "legacy.Configured/be7e141e8b045594a12d1731b4cf9aea",
    "legacy.Gather/78f80dc4984cf1d3e32cc2940724c8fd",
    "legacy.ByName/07ae131ff6439775a6627f4f6c8be117",
    "legacy.WriteFile/b06884845a1e3408a8a71f177fca9e64",
    "legacy.Versioned/0268250a38e6edb73b80b56e1b1f4c12",
}
TASK_NAMES = sorted({key.partition("/")[0] for key in EXPECTED_KEYS})

EXPECTED_RESULT = {
    "leaf": 40,
    "configured": {
        "keys": ["flag", "label", "nested", "nothing", "ratio"],
        "total": 6,
        "pair": ("pair", 1.5),
        "label": "naïve",
    },
    "gather": [0, 3, 6, 9],
    "by_name": {"ab": 20, "abcd": 40, "const": 7},
    "file": "note.txt",
    "versioned": 106,
    "strings": ["a", "b"],
}


def load_pipeline() -> ModuleType:
    """``tests/fixtures/legacy_pipeline.py``, imported once as ``legacy_pipeline``."""
    name = "legacy_pipeline"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FIXTURES / "legacy_pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect.getsource (code fingerprints) looks it up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def legacy() -> ModuleType:
    return load_pipeline()


@pytest.fixture
def old_cache(tmp_path: Path) -> Path:
    """A copy of the fixture cache (the fixture itself is never written to)."""
    copy = tmp_path / "legacy_cache"
    shutil.copytree(LEGACY_CACHE, copy, symlinks=True)
    return copy


def result_files(root: Path) -> dict[str, bytes]:
    """The bytes of every result file under `root`, by `task_name/task_id`."""
    return {
        f"{path.parent.parent.parent.name}/{path.parent.name}": path.read_bytes()
        for path in root.glob("*/results/*/result.pkl.gz")
    }


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m taskproc ARGS`` in `cwd` (``-m`` puts it first on sys.path), with the
    taskproc this process imported first on PYTHONPATH."""
    env = dict(os.environ)
    here = str(Path(taskproc.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "taskproc", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_the_fixture_is_complete() -> None:
    """The fixture holds exactly the expected task folders, each with a result."""
    assert set(result_files(LEGACY_CACHE)) == EXPECTED_KEYS
    assert (LEGACY_CACHE / ".taskproc" / "cache.json").is_file()


def test_the_graph_has_the_ids_and_folders_of_the_fixture(
    legacy: ModuleType, old_cache: Path
) -> None:
    with Graph(old_cache):
        workers = legacy.Main().get_workers()
    assert set(workers) == EXPECTED_KEYS, "task ids differ from those the old code computed"
    for key, worker in workers.items():
        name, _, task_id = key.partition("/")
        expected = old_cache / name / "results" / task_id
        assert Path(worker.task_dir).resolve() == expected.resolve(), key
        assert Path(worker.result_path).is_file(), key


@pytest.mark.parametrize(
    "options", [{}, {"detect_source_change": False}], ids=["default", "no-source-check"]
)
def test_run_graph_reads_everything_from_the_old_cache(
    legacy: ModuleType, old_cache: Path, options: dict[str, Any]
) -> None:
    before = result_files(old_cache)
    with Graph(old_cache):
        result, stats = legacy.Main().run_graph(executor=InlineExecutor(), **options)
    assert result == EXPECTED_RESULT
    executed = stats["stats"]
    assert set(executed) <= set(TASK_NAMES), executed
    assert {name: executed.get(name, 0) for name in TASK_NAMES} == dict.fromkeys(TASK_NAMES, 0)
    assert result_files(old_cache) == before, "a result file was written again"


def test_run_graph_with_source_check_reads_everything(legacy: ModuleType, old_cache: Path) -> None:
    """With ``detect_source_change=True`` too, on the Python the fixture was made with: the code
    fingerprints hash Python's ``ast.dump``, which differs between Python versions."""
    made_with = tuple(META["python_minor"])
    if sys.version_info[:2] != made_with:
        pytest.skip(f"code fingerprints depend on the Python version; fixture made on {made_with}")
    before = result_files(old_cache)
    with Graph(old_cache):
        result, stats = legacy.Main().run_graph(
            executor=InlineExecutor(), detect_source_change=True
        )
    assert result == EXPECTED_RESULT
    assert {name: stats["stats"].get(name, 0) for name in TASK_NAMES} == dict.fromkeys(
        TASK_NAMES, 0
    )
    assert result_files(old_cache) == before, "a result file was written again"


def test_get_result_loads_the_stored_values(legacy: ModuleType, old_cache: Path) -> None:
    with Graph(old_cache):
        main = legacy.Main()
        assert main.get_result() == EXPECTED_RESULT
        assert main.leaf.get_result() == 20
        assert legacy.Leaf(2, 10).get_result() == 20
        assert main.gather.get_result() == [0, 3, 6, 9]
        assert main.by_name.get_result() == {"ab": 20, "abcd": 40, "const": 7}
        assert main.configured.get_result() == EXPECTED_RESULT["configured"]
        assert main.versioned.get_result() == 106
        assert main.file.get_result() == "note.txt"
    assert result_files(old_cache) == result_files(LEGACY_CACHE)


def test_the_file_in_task_directory_is_there(legacy: ModuleType, old_cache: Path) -> None:
    with Graph(old_cache):
        task = legacy.Main().file
        folder = Path(task.task_directory)
    assert folder.resolve().is_relative_to(old_cache.resolve())
    assert (folder / "note.txt").read_text(encoding="utf-8") == "gathered: [0, 3, 6, 9]\n"


def test_status_reports_every_task_done(old_cache: Path) -> None:
    proc = cli("status", str(old_cache), "--json", cwd=old_cache.parent)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stderr\n{proc.stderr}"
    report = json.loads(proc.stdout)
    n = len(EXPECTED_KEYS)
    assert report["totals"] == {"done": n, "stale": 0, "running": 0, "failed": 0, "incomplete": 0}
    assert sorted(report["task_names"]) == TASK_NAMES
    for name, counts in report["task_names"].items():
        expected = sum(key.startswith(f"{name}/") for key in EXPECTED_KEYS)
        assert counts["done"] == expected, (name, counts)
    for state in ("running", "failed", "stale", "incomplete"):
        assert report[state] == [], state


def test_ls_lists_every_task(old_cache: Path) -> None:
    proc = cli("ls", str(old_cache), "--json", cwd=old_cache.parent)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stderr\n{proc.stderr}"
    entries = json.loads(proc.stdout)
    assert {f"{e['task_name']}/{e['task_id']}" for e in entries} == EXPECTED_KEYS
    assert len(entries) == len(EXPECTED_KEYS)
    assert {e["state"] for e in entries} == {"done"}
