"""Fixtures for the cluster tests: the Slurm cluster and dask.

`.ci/cluster-up.sh` starts a one-host Slurm cluster and writes an env file (default
``/tmp/taskproc-cluster.env``, or ``$TASKPROC_CLUSTER_ENV``) that exports ``SLURM_CONF``; it is
read here. Without the cluster (or without dask) these tests skip and say why, unless
``TASKPROC_REQUIRE_CLUSTER=1`` (set by CI), where a missing back end is a failure.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ENV_FILE = Path(os.environ.get("TASKPROC_CLUSTER_ENV", "/tmp/taskproc-cluster.env"))

# The tasks live in cluster_tasks.py next to this file; every process that runs them (pool and
# dask workers, srun-launched workers) must be able to import it.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _load_env_file(path: Path) -> None:
    """Apply the ``export NAME=VALUE`` lines of `path` to os.environ (existing values win)."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            os.environ.setdefault(name, value)


_load_env_file(ENV_FILE)


def unavailable(reason: str) -> None:
    """Skip the test, or fail it where the cluster is required (CI)."""
    if os.environ.get("TASKPROC_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"{reason} (TASKPROC_REQUIRE_CLUSTER=1: run .ci/cluster-up.sh first)")
    pytest.skip(f"{reason}; start it with .ci/cluster-up.sh")


@dataclass(frozen=True, slots=True)
class Slurm:
    """The running test cluster, as .ci/cluster-up.sh describes it in its env file."""

    cpu_partition: str
    gpu_partition: str
    gpus: int
    cpu_slots: int
    log_dir: Path

    def squeue(self, name_part: str) -> list[str]:
        """Jobs (id, state, name) in the queue whose name contains `name_part`."""
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i %T %j"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout
        return [line for line in out.splitlines() if name_part in line]

    def scancel(self, name_part: str) -> None:
        """Cancel our jobs whose name contains `name_part` (cleanup after a failed test)."""
        ids = [line.split()[0] for line in self.squeue(name_part)]
        if ids:
            subprocess.run(["scancel", *ids], check=False, timeout=20)


@pytest.fixture(scope="session")
def slurm() -> Slurm:
    if shutil.which("srun") is None or shutil.which("sinfo") is None:
        unavailable("Slurm client commands (srun, sinfo) are not installed")
    if not os.environ.get("SLURM_CONF"):
        unavailable(f"SLURM_CONF is not set and {ENV_FILE} does not exist")
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess([], 1, "", "sinfo timed out")
    if proc.returncode != 0:
        unavailable(f"the Slurm cluster does not answer: {proc.stderr.strip()}")
    env = os.environ
    cluster = Slurm(
        cpu_partition=env.get("TASKPROC_SLURM_CPU_PARTITION", "cpu"),
        gpu_partition=env.get("TASKPROC_SLURM_GPU_PARTITION", "gpu"),
        gpus=int(env.get("TASKPROC_SLURM_GPUS", "2")),
        cpu_slots=int(env.get("TASKPROC_SLURM_CPU_SLOTS", "16")),
        log_dir=Path(env.get("TASKPROC_CLUSTER_DIR", "/tmp/taskproc-cluster"), "log"),
    )
    if cluster.gpu_partition not in proc.stdout:
        unavailable(f"the Slurm cluster has no {cluster.gpu_partition!r} partition")
    return cluster


@pytest.fixture(scope="session")
def distributed_module() -> object:
    try:
        import distributed
    except ImportError:
        unavailable("dask.distributed is not installed (pip install 'taskproc[dask]')")
    return distributed


@pytest.fixture
def tag() -> str:
    """A unique word for this test's Slurm job names."""
    return f"tp{uuid.uuid4().hex[:8]}"


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for runner and worker subprocesses: they can import cluster_tasks."""
    env = dict(os.environ)
    path = [str(HERE), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    """Run the test with `tmp_path` as its working directory."""
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)
