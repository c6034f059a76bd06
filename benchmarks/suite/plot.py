"""Draw ``results.png`` from ``results.json``; run by the plot venv's Python (matplotlib).

python plot.py RESULTS_JSON OUTPUT_PNG
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display here: render straight to the file
import matplotlib.pyplot as plt  # noqa: E402  # must follow the backend choice
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

Row = dict[str, Any]
COLORS = {
    "taskproc": "tab:blue",
    "floor": "tab:gray",
    "taskproc-0.25.3": "tab:red",
    "dask": "tab:green",
    "dask-graph": "tab:olive",
}
STYLES = {"thread": "-", "process": "--", "init": "-", "arg": "--", "loop": ":", "new process": "-"}


def _series(rows: Sequence[Row], workload: str, metric: str) -> dict[tuple[str, str], list[Row]]:
    out: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        if row["workload"] == workload and row["status"] == "OK" and row[metric] is not None:
            out[(row["system"], row["variant"])].append(row)
    return {k: sorted(v, key=lambda r: r["size"]) for k, v in sorted(out.items())}


def _failures(rows: Sequence[Row], workload: str) -> list[str]:
    return [
        f"{r['system']} {r['variant']} {r['size']:,}: {r['status']}"
        for r in rows
        if r["workload"] == workload and r["status"] in ("ERROR", "TIMEOUT")
    ]


def _lines(
    ax: Any,
    rows: Sequence[Row],
    workload: str,
    metric: str,
    title: str,
    ylabel: str,
    xlabel: str,
    x: str = "size",
) -> None:
    for (system, variant), points in _series(rows, workload, metric).items():
        ax.plot(
            [p[x] for p in points],
            [p[metric] for p in points],
            STYLES.get(variant, "-"),
            marker="o",
            color=COLORS.get(system, "black"),
            label=f"{system} {variant}",
        )
    failures = _failures(rows, workload)
    if failures:
        ax.text(
            0.01,
            0.01,
            "\n".join(failures[:6]),
            transform=ax.transAxes,
            fontsize=6,
            color="tab:red",
            va="bottom",
        )
    ax.set(xscale="log", yscale="log", title=title, ylabel=ylabel, xlabel=xlabel)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)


def _bars(ax: Any, rows: Sequence[Row]) -> None:
    groups = sorted(
        {(r["workload"], r["variant"]) for r in rows if r["workload"].startswith("big_")}
    )
    systems = sorted({r["system"] for r in rows if r["workload"].startswith("big_")})
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        values = []
        for workload, variant in groups:
            match = [
                r
                for r in rows
                if (r["workload"], r["variant"], r["system"]) == (workload, variant, system)
                and r["mb_per_s"]
            ]
            values.append(match[0]["mb_per_s"] if match else 0)
        ax.bar(
            [g + i * width for g in range(len(groups))],
            values,
            width,
            color=COLORS.get(system, "black"),
            label=system,
        )
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    labels = [f"{w[4:]}\n{v.replace('compressible', 'compr.')}" for w, v in groups]
    ax.set_xticklabels(labels, fontsize=7)
    ax.set(yscale="log", title="One big result: save and load", ylabel="MB/s")
    ax.legend(fontsize=6)


def _speedups(ax: Any, rows: Sequence[Row]) -> None:
    times = {
        (r["system"], r["variant"]): r["time_s"]
        for r in rows
        if r["workload"] == "cpu" and r["status"] == "OK"
    }
    systems = sorted({s for s, _ in times})
    values = [
        times[(s, "1 worker")] / times[(s, "2 worker")]
        if (s, "1 worker") in times and (s, "2 worker") in times
        else 0
        for s in systems
    ]
    ax.bar(systems, values, color=[COLORS.get(s, "black") for s in systems])
    ax.axhline(1.9, color="black", linestyle=":", label="target 1.9x")
    ax.set(title="CPU-bound tasks: speed-up, 2 workers over 1", ylabel="speed-up")
    ax.tick_params(axis="x", labelsize=6)
    ax.legend(fontsize=6)


def draw(results: dict[str, Any], out: Path) -> None:
    rows: list[Row] = results["measurements"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    _lines(axes[0][0], rows, "fanin", "tasks_per_s", "Fan-in, fresh", "tasks/s", "tasks")
    _lines(
        axes[0][1],
        rows,
        "cached",
        "us_per_task",
        "Fan-in, cached rerun (new process)",
        "µs per task",
        "tasks",
    )
    _lines(
        axes[0][2],
        rows,
        "chain",
        "us_per_task",
        "Chains, fresh (thread pool)",
        "µs per task",
        "depth",
    )
    _lines(
        axes[1][0],
        rows,
        "choose",
        "time_s",
        "Choose(n, n/2), fresh (thread pool)",
        "seconds",
        "tasks",
        x="n_tasks",
    )
    _bars(axes[1][1], rows)
    _speedups(axes[1][2], rows)
    meta = results["meta"]
    fig.suptitle(f"taskproc benchmarks — size {meta['size']}, {meta['date']}, {meta['machine']}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: Sequence[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    draw(json.loads(Path(argv[0]).read_text()), Path(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
