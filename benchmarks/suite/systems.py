"""The systems under test and how to start a workload on each."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCH_DIR.parent
WORKLOADS_DIR = BENCH_DIR / "workloads"

TASKPROC = "taskproc"
TASKPROC_OLD = "taskproc-0.25.3"
DASK = "dask"
DASK_GRAPH = "dask-graph"
FLOOR = "floor"


@dataclass(frozen=True, slots=True)
class System:
    """A system: which script runs its workloads, under which interpreter.

    ``venv`` is None for our taskproc, measured in the current interpreter with the repo first
    on the import path; peers run in their own venvs, which must not see the repo.
    """

    name: str
    script: str
    venv: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def python(self, venvs_dir: Path) -> Path:
        if self.venv is None:
            return Path(sys.executable)
        return venvs_dir / self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        paths = [str(WORKLOADS_DIR)]
        if self.venv is None:
            paths.insert(0, str(REPO_ROOT))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def command(self, venvs_dir: Path, workload: str, params: str, work: Path) -> list[str]:
        script = str(WORKLOADS_DIR / self.script)
        return [
            str(self.python(venvs_dir)),
            script,
            workload,
            "--params",
            params,
            "--work",
            str(work),
        ]


SYSTEMS: tuple[System, ...] = (
    System(FLOOR, "wl_floor.py", None, note="concurrent.futures + gzip/pickle, tmp file + rename"),
    System(TASKPROC, "wl_taskproc.py", None, note="this repository"),
    System(TASKPROC_OLD, "wl_taskproc.py", "taskproc-0.25.3", note="published taskproc 0.25.3"),
    System(DASK, "wl_dask.py", "dask", {"api": "delayed"}, note="dask.delayed, local schedulers"),
    System(DASK_GRAPH, "wl_dask.py", "dask", {"api": "graph"}, note="dask low-level graph spec"),
)


def system_named(name: str) -> System:
    for system in SYSTEMS:
        if system.name == name:
            return system
    raise ValueError(f"system must be one of {[s.name for s in SYSTEMS]}, got {name!r}")
