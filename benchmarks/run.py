"""Run the taskproc benchmark suite against the published taskproc 0.25.3, dask and the floor.

    python benchmarks/run.py [--size smoke|default|full] [--only GROUP ...] [--systems NAME ...]

Builds the peers' venvs under benchmarks/.venvs (once), runs every case in a fresh process,
and writes results.md, results.json and results.png to benchmarks/results (or --out). With the
default output folder, the table in benchmarks/README.md is refreshed too.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suite.envs import VENVS, VenvStatus, ensure_venv, last_line
from suite.plan import GROUPS, PROFILES, build_plan, group_of
from suite.records import Case, Measurement
from suite.report import (
    format_memory,
    format_rate,
    format_seconds,
    targets_table,
    update_readme,
    write_results,
)
from suite.runner import RunSettings, run_plan
from suite.systems import BENCH_DIR, REPO_ROOT, SYSTEMS, TASKPROC, System, system_named
from suite.targets import evaluate

DEFAULT_OUT = BENCH_DIR / "results"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(PROFILES), default="default")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=GROUPS,
        default=list(GROUPS),
        help="workload groups to run (cases they reuse run too)",
    )
    parser.add_argument(
        "--systems", nargs="+", choices=[s.name for s in SYSTEMS], default=[s.name for s in SYSTEMS]
    )
    parser.add_argument("--timeout", type=float, help="seconds per measurement (default: by size)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work", type=Path, default=BENCH_DIR / ".work")
    parser.add_argument("--venvs", type=Path, default=BENCH_DIR / ".venvs")
    parser.add_argument("--no-plot", action="store_true", help="skip the plot and its venv")
    return parser.parse_args(argv)


# The main README's copy of the targets table, refreshed by a whole run.
TARGETS_START = "<!-- targets:start -->"
TARGETS_END = "<!-- targets:end -->"


def probe_ours() -> tuple[str, str]:
    """(version, error): our taskproc must import from this repository."""
    system = system_named(TASKPROC)
    code = "import taskproc; print(taskproc.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=system.env(),
        cwd=BENCH_DIR,
        timeout=120,
    )
    if proc.returncode != 0:
        return "", f"taskproc not importable: {last_line(proc.stderr)}"
    where = Path(last_line(proc.stdout)).resolve()
    if REPO_ROOT not in where.parents:
        return "", f"taskproc imported from {where}, not from {REPO_ROOT}"
    # Cases run with PYTHONDONTWRITEBYTECODE, and the peers' venvs hold the bytecode pip
    # compiled at install time. Compile ours as pip would, or every case would compile the
    # modules it imports lazily (the scheduler: 25-50 ms) inside its timed region.
    compileall.compile_dir(str(where.parent), quiet=1)
    git = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    return f"(this repo, {git.stdout.strip() or 'no git'})", ""


def setup(
    systems: Sequence[str], venvs_dir: Path, plot: bool
) -> tuple[dict[str, str], dict[str, str], VenvStatus | None]:
    """Build what the selected systems need; returns (versions, unavailable, plot venv)."""
    versions = {"floor": f"(Python {platform.python_version()})"}
    unavailable: dict[str, str] = {}
    wanted = {system_named(s).venv for s in systems} - {None}
    statuses = {}
    for spec in VENVS:
        if spec.name in wanted or (plot and spec.name == "plot"):
            print(f"venv {spec.name}: ", end="", flush=True)
            statuses[spec.name] = status = ensure_venv(spec, venvs_dir)
            print(status.version or status.error, flush=True)
    for name in systems:
        system: System = system_named(name)
        if system.venv is None:
            continue
        status = statuses[system.venv]
        if status.error:
            unavailable[name] = status.error
        versions[name] = f"({status.version})" if status.version else "(unavailable)"
    if TASKPROC in systems:
        version, error = probe_ours()
        versions[TASKPROC] = version or "(not importable)"
        if error:
            unavailable[TASKPROC] = error
    return versions, unavailable, statuses.get("plot")


def describe_machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = ", " + line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {memory:.0f} GiB{model}, Python {platform.python_version()}"


def progress(total: int) -> Any:
    def report(index: int, m: Measurement) -> None:
        case: Case = m.case
        detail = m.error if not m.ok else f"{format_seconds(m.time_s)}  {format_rate(m)}"
        print(
            f"[{index + 1:>3}/{total}] {case.workload} {case.variant} {case.size:,} "
            f"{case.system}: {m.status.value}  {detail}  {format_memory(m)}",
            flush=True,
        )

    return report


def draw_plot(plot_venv: VenvStatus | None, out_dir: Path) -> str:
    """Render results.png with the plot venv; returns an error line or ''."""
    if plot_venv is None or plot_venv.python is None:
        return plot_venv.error if plot_venv else "plot skipped"
    script = BENCH_DIR / "suite" / "plot.py"
    proc = subprocess.run(
        [
            str(plot_venv.python),
            str(script),
            str(out_dir / "results.json"),
            str(out_dir / "results.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return last_line(proc.stderr) if proc.returncode != 0 else ""


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    profile = PROFILES[args.size]
    versions, unavailable, plot_venv = setup(args.systems, args.venvs, not args.no_plot)
    plan = build_plan(profile, groups=args.only, systems=args.systems)
    print(f"{len(plan)} cases, size {profile.name}", flush=True)
    settings = RunSettings(
        args.venvs,
        args.work.resolve(),
        args.timeout or profile.timeout_s,
        unavailable,
        settle_s=0.0 if profile.name == "smoke" else 65.0,
    )
    measurements = run_plan(plan, settings, progress(len(plan)))
    checks = evaluate(measurements)
    command = "python benchmarks/run.py" + (
        "" if args.size == "default" else f" --size {args.size}"
    )
    if sorted(args.only) != sorted(GROUPS):
        command += " --only " + " ".join(args.only)
    meta = {
        "size": profile.name,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(),
        "command": command,
        "argv": shlex.join(argv),
        "versions": versions,
        "groups": sorted({group_of(c.workload) for c in plan}),
        "timeout_s": settings.timeout_s,
        "elapsed_s": time.monotonic() - started,
        "load_avg": max(m.fields.get("load_before", 0.0) for m in measurements)
        if measurements
        else 0.0,
        "plot_error": "",
    }
    body = write_results(args.out, measurements, checks, meta)
    if not args.no_plot:
        meta["plot_error"] = draw_plot(plot_venv, args.out)
        if meta["plot_error"]:
            print(f"plot: {meta['plot_error']}", flush=True)
            write_results(args.out, measurements, checks, meta)
    if args.out.resolve() == DEFAULT_OUT.resolve() and update_readme(BENCH_DIR / "README.md", body):
        print("updated benchmarks/README.md", flush=True)
    whole = (
        args.size != "smoke"
        and sorted(args.only) == sorted(GROUPS)
        and sorted(args.systems) == sorted(s.name for s in SYSTEMS)
        and args.out.resolve() == DEFAULT_OUT.resolve()
    )
    if whole:
        table = "\n".join(targets_table(checks)) + "\n"
        if update_readme(REPO_ROOT / "README.md", table, TARGETS_START, TARGETS_END):
            print("updated the targets table in README.md", flush=True)
    for check in checks:
        print(f"target {check.label}: {check.status}  {check.measured}  ({check.threshold})")
    print(
        f"wrote {args.out}/results.md, results.json, results.png "
        f"in {(time.monotonic() - started) / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
