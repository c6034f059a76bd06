"""Every code block of docs/cluster.md, run in order against the Slurm cluster and dask.

All blocks share one working folder:

- a ``python`` block whose first line is ``# file: NAME`` is saved as NAME, for later blocks
  (each such file must be used by a later block);
- any other ``python`` block is saved and run with ``python``;
- a ``bash`` block is run with ``bash -euo pipefail``, its ``pip install`` lines left out
  (the suite's environment has every extra, and a test must not install into it).

A block that names the guide's bucket (``s3://my-bucket/``) runs against the test suite's S3
server (SeaweedFS): the bucket becomes a prefix of the test bucket that no other test uses, and
the block's own ``export AWS_...`` lines (placeholders) give way to the server's variables.

LSF (``bsub``, ``jbsub``) and docker are not available here: stand-ins from ``shims/`` take
their place on PATH. bsub and jbsub submit the job to Slurm with ``srun``; docker checks that the
volumes a taskproc prefix needs are mounted at the same paths, then runs the command directly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cluster_env import Slurm

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "cluster.md"
SHIMS = Path(__file__).resolve().with_name("shims")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
GUIDE_BUCKET = "s3://my-bucket/"
PLACEHOLDER_EXPORT = re.compile(r"^export AWS_.*$", re.MULTILINE)
PIP_INSTALL = re.compile(r"^pip install .*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Block:
    language: str
    code: str
    line: int  # where it starts in the guide

    @property
    def file_name(self) -> str | None:
        first = self.code.splitlines()[0] if self.code else ""
        match = re.fullmatch(r"# file: (\S+)", first.strip())
        return match.group(1) if match else None


def read_blocks(text: str) -> list[Block]:
    return [
        Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def test_guide_blocks_are_all_runnable_kinds() -> None:
    blocks = read_blocks(GUIDE.read_text())
    assert len(blocks) >= 8
    assert {b.language for b in blocks} <= {"python", "bash"}, [b.language for b in blocks]
    later = "\n".join(b.code for b in blocks)
    for i, block in enumerate(blocks):
        if block.file_name:
            used = "\n".join(b.code for b in blocks[i + 1 :])
            assert Path(block.file_name).stem in used, f"{block.file_name} is never used"
    assert "srun" in later and "dask_executor" in later and "bsub -K" in later


def for_test_server(code: str, bucket_url: str) -> str:
    """A block naming the guide's bucket, pointed at the test server's bucket instead."""
    code = PLACEHOLDER_EXPORT.sub(": the test's AWS variables", code)
    return code.replace(GUIDE_BUCKET, bucket_url)


def test_guide_examples_run(
    slurm: Slurm, distributed_module: object, bucket: Any, tmp_path: Path, tag: str
) -> None:
    env = dict(os.environ)  # with the test server's AWS variables (the `bucket` fixture)
    env["TASKPROC_WORKING_COPY"] = str(tmp_path / "working-copy")
    bucket_url = f"{bucket.url}/"  # a prefix of its own, emptied after the test
    env["PATH"] = os.pathsep.join([str(SHIMS), str(Path(sys.executable).parent), env["PATH"]])
    env.pop("PYTHONPATH", None)  # the examples must work as a user runs them
    failures = []
    for n, block in enumerate(read_blocks(GUIDE.read_text())):
        where = f"docs/cluster.md line {block.line}"
        if block.file_name:
            (tmp_path / block.file_name).write_text(block.code)
            continue
        if block.language == "python":
            script = tmp_path / f"block{n}.py"
            script.write_text(block.code)
            cmd = [sys.executable, str(script)]
        else:
            code = PIP_INSTALL.sub(": installed already", block.code)
            cmd = ["bash", "-euo", "pipefail", "-c", for_test_server(code, bucket_url)]
        proc = subprocess.run(
            cmd,
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        (tmp_path / f"block{n}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            failures.append(f"{where} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    assert not failures, "\n\n".join(failures)
    # What the examples claim, checked on what they left behind.
    logs = list(tmp_path.glob("cache-slurm/pipeline.Simulate/results/*/slurm.out"))
    assert len(logs) == 4
    assert len(list(tmp_path.glob("cache-shared/pipeline.Simulate/results/*/result.pkl.gz"))) == 4
    assert len(list(tmp_path.glob("cache-lsf/pipeline.Simulate/results/*/lsf.out"))) == 4
    pulled = list(tmp_path.glob("cache-pulled/pipeline.Simulate/results/*/result.pkl.gz"))
    assert len(pulled) == 4  # run in the bucket, pulled whole
    assert slurm.squeue("pipeline.") == []
