"""benchmarks/bench_cluster.py still runs on every back end (a small size, no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_env import Slurm

pytestmark = pytest.mark.cluster

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cluster.py"


def test_bench_cluster_runs(slurm: Slurm, distributed_module: object, tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCH), "--jobs", "6", "--limit", "3", "--seconds", "0.05"]
    proc = subprocess.run(
        [*cmd, "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    backends = [row["backend"] for row in rows]
    assert backends == ["process", "dask", "slurm srun", "slurm srun, batches of 25"]
    for row in rows:
        assert row["note"] == "" and row["jobs"] == 6 and 1 <= row["max_at_once"] <= 3
