"""Shared fixtures: a cache folder under tmp_path and the three executor kinds."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import pytest

from taskproc import InlineExecutor
from taskproc.run import process_pool

EXECUTORS = ("inline", "thread", "process")


def make(kind: str, workers: int = 2) -> Executor:
    if kind == "inline":
        return InlineExecutor()
    if kind == "thread":
        return ThreadPoolExecutor(workers)
    return process_pool(workers)


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    ex = make(request.param)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def run_script(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run a Python file in a subprocess with the repository importable; return it."""
    import subprocess

    def run(
        path: Path,
        *args: str,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ, **(env or {}))
        proc = subprocess.run(
            [sys.executable, str(path), *args],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--stress", action="store_true", help="run the long stress modes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--stress"):
        return
    skip = pytest.mark.skip(reason="stress mode: run with --stress")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
