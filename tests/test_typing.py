"""The typing users rely on is pinned: mypy --strict on typing_cases.py, and on the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

mypy = pytest.importorskip("mypy")


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--warn-unused-ignores",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_typing_cases() -> None:
    out = _mypy("tests/typing_cases.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_is_strict_clean() -> None:
    out = _mypy("-p", "taskproc")
    assert out.returncode == 0, out.stdout + out.stderr


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "taskproc" / "py.typed").exists()
