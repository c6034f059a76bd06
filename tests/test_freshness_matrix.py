"""The freshness matrix: every kind of edit in `freshness_cases.py` and its cosmetic twin.

Each case's project is written twice (one copy gets the edit, one the cosmetic edit). A fresh
process computes, for every copy, the code identity of ``Uses`` and ``Other`` and what their
``run_task`` returns; the edits are made; a second fresh process does the same. A task is
*stale* if its result changed but its identity did not (a cached result would be served as
new), *needless* if its identity changed but its result did not (it would rerun for
nothing). The figure:

    python tests/test_freshness_matrix.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from freshness_cases import CASES, Case

PROBE = r"""
import json, sys, importlib
from pathlib import Path
from taskproc import Graph
from taskproc.model import Fingerprints

out = {}
for folder in sys.argv[1:]:
    sys.path.insert(0, folder)
    try:
        pipe = importlib.import_module("pipe")
        code = Fingerprints()
        with Graph(str(Path(folder) / "cache")):
            row = {}
            for name in ("Uses", "Other"):
                cls = getattr(pipe, name)
                try:
                    result = repr(cls().run_task())
                except Exception as exc:
                    result = f"raised {type(exc).__name__}: {exc}"
                row[name] = [code(cls), result]
        out[folder] = row
    finally:
        sys.path.remove(folder)
        for key, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(folder):
                del sys.modules[key]
print(json.dumps(out))
"""


def _probe(folders: list[Path]) -> dict[str, dict[str, list[str]]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, folders)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise AssertionError(proc.stderr)
    found: dict[str, dict[str, list[str]]] = json.loads(proc.stdout.splitlines()[-1])
    return found


def run_matrix(root: Path) -> tuple[list[str], list[str], int]:
    """The stale and needless (case, task) pairs, and the number of kinds of edit."""
    copies: list[tuple[Case, str, Path]] = []
    for i, case in enumerate(CASES):
        for variant in ("edit", "cosmetic"):
            folder = root / f"case{i:02d}_{variant}"
            case.write(folder)
            copies.append((case, variant, folder))
    before = _probe([f for _, _, f in copies])
    for case, variant, folder in copies:
        Case.apply(folder, case.edit if variant == "edit" else case.cosmetic)
    after = _probe([f for _, _, f in copies])
    stale, needless = [], []
    for case, variant, folder in copies:
        for task in ("Uses", "Other"):
            (code0, result0), (code1, result1) = before[str(folder)][task], after[str(folder)][task]
            label = f"{case.name} ({variant}): {task} {result0} -> {result1}"
            if result0 != result1 and code0 == code1:
                stale.append(label)
            if result0 == result1 and code0 != code1:
                needless.append(label)
        if variant == "edit" and before[str(folder)]["Uses"][1] == after[str(folder)]["Uses"][1]:
            raise AssertionError(f"{case.name}: the edit does not change what Uses returns")
    return stale, needless, len(copies)


def test_no_edit_is_missed_and_at_most_one_reruns_for_nothing(tmp_path: Path) -> None:
    stale, needless, kinds = run_matrix(tmp_path)
    print(f"\n{kinds} kinds of edit: {len(stale)} stale, {len(needless)} needless")
    assert kinds >= 94
    assert stale == []
    assert len(needless) <= 1, needless


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        stale, needless, kinds = run_matrix(Path(folder))
    print(f"{kinds} kinds of edit: {len(stale)} stale, {len(needless)} needless")
    for line in stale:
        print("  stale:", line)
    for line in needless:
        print("  needless:", line)
    sys.exit(1 if stale or len(needless) > 1 else 0)
