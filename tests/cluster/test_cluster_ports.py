""".ci/cluster-up.sh on a host where another Slurm holds the ports: the test cluster already
running is that other Slurm. A second cluster (a folder and env file of its own) must start on
other ports, say so in one line, run a job, and stop again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_env import Slurm

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def port_of(conf: Path) -> int:
    line = next(x for x in conf.read_text().splitlines() if x.startswith("SlurmctldPort="))
    return int(line.partition("=")[2])


@pytest.mark.timeout(300)
def test_a_second_cluster_starts_on_free_ports(slurm: Slurm, tmp_path: Path) -> None:
    first_conf = Path(os.environ["SLURM_CONF"])
    env = {
        **os.environ,
        "TASKPROC_CLUSTER_DIR": str(tmp_path / "slurm"),
        "TASKPROC_CLUSTER_ENV": str(tmp_path / "cluster.env"),
        "PYTHON": sys.executable,
    }
    try:
        up = subprocess.run(
            ["bash", str(ROOT / ".ci" / "cluster-up.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert up.returncode == 0, up.stderr
        assert "No such file or directory" not in up.stderr, up.stderr
        second_conf = tmp_path / "slurm" / "etc" / "slurm.conf"
        first, second = port_of(first_conf), port_of(second_conf)
        assert second != first
        if first == 6817:  # the default ports were taken: one line says which are used instead
            said = [line for line in up.stderr.splitlines() if "are in use" in line]
            assert len(said) == 1 and f"this cluster uses {second}-" in said[0], up.stderr
        job = subprocess.run(
            ["srun", "-p", slurm.cpu_partition, "-n", "1", "echo", "hello from the second"],
            env={**env, "SLURM_CONF": str(second_conf)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert job.returncode == 0 and job.stdout.strip() == "hello from the second", job.stderr
    finally:
        down = subprocess.run(
            ["bash", str(ROOT / ".ci" / "cluster-down.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert down.returncode == 0, down.stderr
    assert not list((tmp_path / "slurm" / "run").glob("*.pid")), "daemons left running"
