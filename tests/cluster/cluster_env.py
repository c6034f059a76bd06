"""The test cluster as .ci/cluster-up.sh describes it, and how a missing one is reported.

`.ci/cluster-up.sh` starts a one-host Slurm cluster and writes an env file (default
``/tmp/taskproc-cluster.env``, or ``$TASKPROC_CLUSTER_ENV``) that exports ``SLURM_CONF``;
`load_env_file` applies it. Without the cluster (or without dask) the cluster tests skip and say
why, unless ``TASKPROC_REQUIRE_CLUSTER=1`` (set by CI), where a missing back end is a failure.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ENV_FILE = Path(os.environ.get("TASKPROC_CLUSTER_ENV", "/tmp/taskproc-cluster.env"))


def load_env_file(path: Path = ENV_FILE) -> None:
    """Apply the ``export NAME=VALUE`` lines of `path` to os.environ (existing values win)."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            os.environ.setdefault(name, value)


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
