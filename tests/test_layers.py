"""The package's shape: layers that import only downward, and an `import taskproc` that stays
light (every worker process imports it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    """`lint-imports` checks the layers written in pyproject.toml (.ci/run runs it too)."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed (pip install -e .[dev])")
    proc = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_import_taskproc_is_light() -> None:
    """No run loop, no pickling library, no progress bars, no argument parser, no dask."""
    code = "import json, sys, taskproc; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    modules = set(json.loads(out))
    heavy = {
        "cloudpickle",
        "tqdm",
        "argparse",
        "dask",
        "distributed",
        "taskproc.run._driver",
        "taskproc.run._job",
        "taskproc.cli._main",
        "taskproc.views",
    }
    assert not heavy & modules


def test_every_module_is_private_behind_its_package() -> None:
    """Modules are private (a leading underscore) except the packages' own, `errors` and the
    worker entry point, so a reader sees which names are the API."""
    public = {"__init__.py", "__main__.py", "errors.py", "worker.py"}
    for path in (REPO / "taskproc").rglob("*.py"):
        assert path.name in public or path.name.startswith("_"), path


def test_every_private_module_is_guarded_against_other_packages() -> None:
    """Each package's import-linter contract names all its private modules, so a module added
    later cannot be imported from another package behind its `__init__`'s back."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    forbidden = {
        module
        for contract in config["tool"]["importlinter"]["contracts"]
        if contract["name"].startswith("Other packages import")
        for module in contract["forbidden_modules"]
    }
    for package in ("store", "model", "run", "views", "upkeep", "cli"):
        for path in (REPO / "taskproc" / package).glob("_*.py"):
            if path.name != "__init__.py":
                assert f"taskproc.{package}.{path.stem}" in forbidden, path
