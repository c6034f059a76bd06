"""Writing the results: ``results.json``, ``results.md`` and the table in the README."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from suite.plan import WORKERS, thread_count, threads_variant, variant_key
from suite.records import Measurement
from suite.targets import TargetCheck

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"

_SECTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "fanin",
        "Fan-in, fresh",
        "N trivial tasks and one root summing them; 2 workers (`N threads`: a thread pool of N).",
    ),
    (
        "cached",
        "Fan-in, fully cached rerun in a new process",
        "Graph building, the staleness check and loading the root result.",
    ),
    (
        "choose",
        "Binomial graph `Choose(n, n/2)`, fresh",
        "The seed README's graph; a thread pool of 2 (`N threads`: of N).",
    ),
    (
        "chain",
        "Chains, fresh",
        "Each task adds 1 to its upstream's result; thread pool. `init`: upstream built in "
        "`__init__`; `arg`: upstream passed as an argument; `loop`: the system's only way.",
    ),
    (
        "big_save",
        "One big result: save",
        "From the end of `run_task` to the result file's last write; one process worker.",
    ),
    ("big_load", "One big result: load", "A rerun in a new process: build, check, load."),
    ("cpu", "CPU-bound tasks", "Tasks of pure-Python work on a process pool of 1 or 2 workers."),
)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


def format_bytes(nbytes: float | None) -> str:
    if not nbytes:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes:.0f} B"


def format_rate(m: Measurement) -> str:
    workload = m.case.workload
    if workload in ("big_save", "big_load"):
        return f"{m.mb_per_s:,.0f} MB/s" if m.mb_per_s else ""
    if workload == "cached":
        return f"{m.us_per_task:,.1f} µs/task" if m.us_per_task else ""
    if m.tasks_per_s and m.us_per_task:
        return f"{m.tasks_per_s:,.0f} tasks/s ({m.us_per_task:,.0f} µs/task)"
    return ""


def format_memory(m: Measurement) -> str:
    if not m.peak_rss:
        return ""
    text = format_bytes(m.peak_rss)
    # Per task only where the interpreter's own ~20 MB no longer dominates.
    if m.case.workload in ("fanin", "cached") and m.n_tasks and m.n_tasks >= 10_000 and m.ok:
        text += f" ({m.peak_rss / m.n_tasks:,.0f} B/task)"
    return text


def _note(m: Measurement, by_id: Mapping[str, Measurement]) -> str:
    if not m.ok:
        return m.error.replace("|", "\\|")
    fields = m.fields
    if m.case.workload == "big_save":
        worker = float(fields.get("worker_maxrss", 0))
        gz = "gzip -t ok" if fields.get("gzip_ok") else "gzip -t FAILED"
        ratio = float(fields.get("file_bytes", 0)) / float(m.nbytes or 1)
        peak = f"{format_bytes(worker)} ({worker / (m.nbytes or 1):.2f}x)"
        return f"worker peak {peak}; {gz}; file {ratio:.2f}x of the data"
    if m.case.workload == "cpu":
        return _cpu_note(m, by_id)
    notes = [f"{m.n_tasks:,} tasks"] if m.case.workload == "choose" else []
    growth = _thread_note(m, by_id)
    return "; ".join(notes + ([growth] if growth else []))


def _thread_note(m: Measurement, by_id: Mapping[str, Measurement]) -> str:
    """On more threads than 2: the per-task time over that on 2 threads, same size and run."""
    threads = thread_count(m.case.variant)
    if threads is None or threads == WORKERS or not m.us_per_task:
        return ""
    base = by_id.get(f"{m.case.workload}/{threads_variant(WORKERS)}/{m.case.size}/{m.case.system}")
    if base is None or not base.us_per_task:
        return ""
    return f"{m.us_per_task / base.us_per_task:.2f}x the per-task time on {WORKERS} threads"


def _cpu_note(m: Measurement, by_id: Mapping[str, Measurement]) -> str:
    if m.case.variant != "2 worker" or not m.ok:
        return ""
    one = by_id.get(f"cpu/1 worker/{m.case.size}/{m.case.system}")
    if one is None or not one.ok or not one.time_s or not m.time_s:
        return ""
    return f"speed-up {one.time_s / m.time_s:.2f}x over 1 worker"


def _row(m: Measurement, by_id: Mapping[str, Measurement]) -> str:
    note = _note(m, by_id)
    size = f"{m.case.size:,} MB" if m.case.workload.startswith("big_") else f"{m.case.size:,}"
    cells = (
        size,
        m.case.variant,
        f"**{m.case.system}**" if m.case.system == "taskproc" else m.case.system,
        m.status.value,
        format_seconds(m.time_s),
        format_rate(m),
        format_memory(m),
        note,
    )
    return "| " + " | ".join(cells) + " |"


def table(measurements: Sequence[Measurement], workload: str) -> list[str]:
    by_id = {m.case.id: m for m in measurements}
    rows = [m for m in measurements if m.case.workload == workload]
    if not rows:
        return []
    rows.sort(key=lambda m: (variant_key(m.case.variant), m.case.size))
    head = [
        "| size | variant | system | status | time | throughput / per task | peak memory | note |",
        "|---:|---|---|---|---:|---:|---:|---|",
    ]
    return head + [_row(m, by_id) for m in rows]


def targets_table(checks: Sequence[TargetCheck]) -> list[str]:
    lines = ["| # | target | measured | threshold | status |", "|---|---|---|---|---|"]
    for c in checks:
        status = f"**{c.status}**" if c.status == "MISSED" else c.status
        measured = c.measured.replace("|", "\\|")
        lines.append(f"| {c.label} | {c.what} | {measured} | {c.threshold} | {status} |")
    return lines


def markdown(
    measurements: Sequence[Measurement], checks: Sequence[TargetCheck], meta: Mapping[str, Any]
) -> str:
    met = sum(c.status == "MET" for c in checks)
    missed = sum(c.status == "MISSED" for c in checks)
    lines = [
        f"Size `{meta['size']}`, {meta['date']}, {meta['machine']}; "
        f"{meta['elapsed_s'] / 60:.1f} min. Reproduce with `{meta['command']}`.",
        "",
        "Systems: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        f"Highest 1-minute load average seen before a case: {meta['load_avg']:.1f} "
        f"on {meta['machine'].split(',')[0]} (above the core count, other work competed).",
        "",
        f"### Targets ({met} met, {missed} missed, {len(checks) - met - missed} not measured)",
        "",
        *targets_table(checks),
    ]
    for workload, title, explanation in _SECTIONS:
        rows = table(measurements, workload)
        if rows:
            lines += ["", f"### {title}", "", explanation, "", *rows]
    return "\n".join(lines) + "\n"


def write_results(
    out_dir: Path,
    measurements: Sequence[Measurement],
    checks: Sequence[TargetCheck],
    meta: Mapping[str, Any],
) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": dict(meta),
        "targets": [asdict(c) for c in checks],
        "measurements": [m.to_json() for m in measurements],
    }
    (out_dir / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    body = markdown(measurements, checks, meta)
    (out_dir / "results.md").write_text("# taskproc benchmark results\n\n" + body)
    return body


def update_readme(
    readme: Path, body: str, start_mark: str = README_START, end_mark: str = README_END
) -> bool:
    """Replace the README's block between the two marks; False if it has no such block."""
    if not readme.exists():
        return False
    text = readme.read_text()
    start, end = text.find(start_mark), text.find(end_mark)
    if start < 0 or end < start:
        return False
    new = text[: start + len(start_mark)] + "\n" + body + text[end:]
    readme.write_text(new)
    return True
