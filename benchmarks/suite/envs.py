"""Virtual environments for the peers and the plot, built with ``python -m venv`` and pip.

Each venv lives in ``benchmarks/.venvs/<name>`` (git-ignored) and records the requirements it
was built from; a venv whose record matches and whose probe imports is reused as it is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_RECORD = "bench-requirements.txt"


@dataclass(frozen=True, slots=True)
class VenvSpec:
    name: str
    requirements: tuple[str, ...]
    probe: str  # Python code printing the version of what was installed


@dataclass(frozen=True, slots=True)
class VenvStatus:
    name: str
    python: Path | None
    version: str
    error: str = ""


VENVS: tuple[VenvSpec, ...] = (
    VenvSpec(
        "taskproc-0.25.3",
        ("taskproc==0.25.3",),
        "import importlib.metadata as m; print('taskproc', m.version('taskproc'))",
    ),
    VenvSpec("dask", ("dask",), "import dask; print('dask', dask.__version__)"),
    VenvSpec(
        "plot", ("matplotlib",), "import matplotlib; print('matplotlib', matplotlib.__version__)"
    ),
)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _probe(python: Path, code: str) -> tuple[bool, str]:
    if not python.exists():
        return False, f"{python} does not exist"
    # -I: isolated, so neither PYTHONPATH nor the working folder (this repo) can shadow the
    # venv's own packages.
    proc = subprocess.run(
        [str(python), "-I", "-c", code], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        return False, last_line(proc.stderr)
    return True, last_line(proc.stdout)


def _build(spec: VenvSpec, folder: Path, timeout_s: float) -> str:
    """Create the venv afresh; returns an error line, or '' on success."""
    shutil.rmtree(folder, ignore_errors=True)
    steps = (
        [sys.executable, "-m", "venv", str(folder)],
        [
            str(folder / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *spec.requirements,
        ],
    )
    for step in steps:
        try:
            proc = subprocess.run(step, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout_s:.0f} s: {' '.join(step)}"
        if proc.returncode != 0:
            return last_line(proc.stderr) or f"exit {proc.returncode}: {' '.join(step)}"
    (folder / _RECORD).write_text("\n".join(spec.requirements) + "\n")
    return ""


def ensure_venv(spec: VenvSpec, venvs_dir: Path, timeout_s: float = 600) -> VenvStatus:
    folder = venvs_dir / spec.name
    python = folder / "bin" / "python"
    record = folder / _RECORD
    wanted = "\n".join(spec.requirements) + "\n"
    if record.exists() and record.read_text() == wanted:
        ok, version = _probe(python, spec.probe)
        if ok:
            return VenvStatus(spec.name, python, version)
    error = _build(spec, folder, timeout_s)
    if error:
        return VenvStatus(spec.name, None, "", f"venv setup failed: {error}")
    ok, version = _probe(python, spec.probe)
    if not ok:
        return VenvStatus(spec.name, None, "", f"venv probe failed: {version}")
    return VenvStatus(spec.name, python, version)
