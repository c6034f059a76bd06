"""The benchmark suite's smoke size runs end to end and writes its report.

Timings are not asserted (CI machines are shared and noisy); only that the suite ran, wrote
its files, and that taskproc and the floor measured every case without an error. The peers
(taskproc 0.25.3, dask) are not checked here, so they are not run: their venvs alone took a
minute to build. The plot's venv is kept in the user's cache folder, built once per machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"
SMOKE_TIMEOUT_S = 900
VENVS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "taskproc-bench-venvs"


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-out")
    work = tmp_path_factory.mktemp("bench-work")
    command = [
        sys.executable,
        str(BENCH_DIR / "run.py"),
        "--size",
        "smoke",
        "--out",
        str(out),
        "--work",
        str(work),
        "--systems",
        "floor",
        "taskproc",
        "--venvs",
        str(VENVS),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def results(smoke_out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((smoke_out / "results.json").read_text())
    return data


def test_markdown_report_has_targets_and_tables(smoke_out: Path) -> None:
    text = (smoke_out / "results.md").read_text()
    assert "### Targets" in text
    for title in ("Fan-in, fresh", "cached rerun", "Choose", "Chains", "big result", "CPU-bound"):
        assert title in text


def test_every_workload_ran_on_taskproc_without_error(results: dict[str, Any]) -> None:
    rows = [m for m in results["measurements"] if m["system"] == "taskproc"]
    workloads = {m["workload"] for m in rows}
    assert workloads == {"fanin", "cached", "choose", "chain", "big_save", "big_load", "cpu"}
    failed = [f"{m['id']}: {m['status']} {m['error']}" for m in rows if m["status"] != "OK"]
    assert not failed


def test_the_floor_ran_without_error(results: dict[str, Any]) -> None:
    rows = [m for m in results["measurements"] if m["system"] == "floor"]
    assert rows
    assert all(m["status"] == "OK" for m in rows), [m["error"] for m in rows]


def test_every_target_is_reported(results: dict[str, Any]) -> None:
    labels = {t["label"] for t in results["targets"]}
    assert {
        *("1a", "1b", "1c", "1d", "2a", "3a", "3b", "3c", "4a", "5a", "5g", "5i", "6"),
        *("7a", "7b", "7c", "7d"),
    } <= labels
    assert {t["status"] for t in results["targets"]} <= {"MET", "MISSED", "N/A"}


def test_plot_is_written(smoke_out: Path, results: dict[str, Any]) -> None:
    if results["meta"]["plot_error"]:
        pytest.skip(f"plot venv unavailable: {results['meta']['plot_error']}")
    assert (smoke_out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_fingerprint_benchmark_prints_its_figure() -> None:
    """`benchmarks/fingerprint.py` runs and reports (small sizes: its timing is not judged)."""
    command = [sys.executable, str(BENCH_DIR / "fingerprint.py"), "--classes", "10"]
    proc = subprocess.run(
        [*command, "--helpers", "100", "--repeat", "1"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("fingerprints: 10 task classes reaching 100 helper functions")


def test_a_batch_is_measured_in_rounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases compared across thread counts run one after the other in each round (so a
    slow drift of the machine's load does not bias their ratio); each reports its best run."""
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    from suite import runner
    from suite.records import Case, Measurement, Status

    order: list[str] = []

    def fake_run(case: Case, work: Path, settings: runner.RunSettings) -> Measurement:
        order.append(case.variant)
        return Measurement(case, Status.OK, time_s=1.0 + len(order) % 3, n_tasks=1)

    monkeypatch.setattr(runner, "run_case", fake_run)
    cases = [
        Case("fanin", variant, 10, "taskproc", {}, repeats=2, batch="fanin/10")
        for variant in ("thread", "6 threads", "64 threads")
    ]
    cases.insert(1, Case("fanin", "thread", 10, "dask", {}, repeats=2))
    settings = runner.RunSettings(tmp_path, tmp_path / "work", 10, {})
    got = runner.run_plan(cases, settings, lambda index, m: None)
    assert order[:6] == ["thread", "6 threads", "64 threads"] * 2
    assert order[6:] == ["thread", "thread"]  # dask's case, not in the batch, on its own
    assert [m.case.id for m in got] == [c.id for c in cases]
    assert all(m.time_s == min(m.fields["times"]) for m in got)


def test_the_worker_start_benchmark_prints_its_figures(tmp_path: Path) -> None:
    """`benchmarks/bench_worker_start.py` runs and reports (its timing is not judged)."""
    command = [sys.executable, str(BENCH_DIR / "bench_worker_start.py"), "--tasks", "2"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "python -m taskproc.run.worker JOB: min" in proc.stdout
    assert "modules imported at the first line:" in proc.stdout
