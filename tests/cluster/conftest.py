"""Fixtures for the cluster tests: the Slurm cluster of .ci/cluster-up.sh, and dask.

See cluster_env.py for how the cluster is found, and when a missing one skips or fails a test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# The tasks live in cluster_tasks.py next to this file; every process that runs them (pool and
# dask workers, srun-launched workers) must be able to import it.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from cluster_env import ENV_FILE, Slurm, load_env_file, unavailable  # noqa: E402

load_env_file()


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
