"""`benchmarks/bucket.py` and `benchmarks/bucket_store.py` run and report (tiny sizes: their
timing is not judged)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.s3
def test_bucket_benchmark_runs(s3_server: Any, tmp_path: Path) -> None:
    import s3server

    env_file = tmp_path / "s3.env"
    s3server.write_env_file(s3_server, env_file)  # the server this session uses, whoever started it
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bucket.py"), "--n", "5", "--batch", "20"],
        env={**os.environ, "TASKPROC_S3_ENV": str(env_file)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for row in ("| PUT If-None-Match: * (taken: 412) |", "| get_many (the bucket's threads) |"):
        assert row in proc.stdout
    assert "of .ci/s3-up.sh" in proc.stdout  # it used that server, started none of its own


@pytest.mark.s3
def test_bucket_store_benchmark_runs(s3_server: Any, tmp_path: Path) -> None:
    import s3server

    env_file = tmp_path / "s3.env"
    s3server.write_env_file(s3_server, env_file)
    argv = ["--cached", "40", "--fanin", "20", "--repeat", "1"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bucket_store.py"), *argv],
        env={**os.environ, "TASKPROC_S3_ENV": str(env_file)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: a target missed (not judged here)
    for row in (
        "| fresh fan-in 20, thread-16 | bucket |",
        "| cached rerun 40 (bucket, cold working copy) | bucket |",
        "| cached rerun, warm: µs a task |",
    ):
        assert row in proc.stdout, proc.stdout
