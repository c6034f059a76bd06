"""The README's set-up commands: `.ci/example` installs taskproc and runs an example, and
`.ci/run` is what CI runs (checked by running it: this suite is its output)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    sys.prefix == sys.base_prefix, reason="needs a virtual environment to install into"
)
def test_example_command_installs_and_runs_an_example(tmp_path: Path) -> None:
    # In the active virtual environment (as under .ci/run) the script reinstalls the package
    # in place and runs the example; on a bare machine it would first make .venv.
    env = dict(
        os.environ,
        VIRTUAL_ENV=sys.prefix,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    out = subprocess.run(
        ["bash", str(ROOT / ".ci" / "example"), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "C(6, 3) = 20" in out.stdout
    assert "binomial.Choose" in out.stdout  # the status table


def test_ci_runs_the_whole_suite() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q" in script and "cluster-up.sh" in script
