"""The issues' seven targets, each evaluated from measurements of the same run.

A check is MET or MISSED when its measurements exist; MISSED also when taskproc's own run
failed; N/A when a peer failed or the size was not part of this run (e.g. 1,000,000 tasks,
measured only with ``--size full``: the default size checks the largest size it ran).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from suite.plan import THREAD_COUNTS, WORKERS, threads_variant
from suite.records import Measurement, Status
from suite.systems import DASK, FLOOR, TASKPROC, TASKPROC_OLD

MET, MISSED, NA = "MET", "MISSED", "N/A"
KB = 1024
# Below these sizes a peak RSS is mostly the interpreter itself, so per-task or per-byte
# memory figures say nothing about the engine (smoke sizes).
MIN_TASKS_FOR_MEMORY = 100_000
MIN_BYTES_FOR_MEMORY = 100_000_000


@dataclass(frozen=True, slots=True)
class TargetCheck:
    target: int
    label: str
    what: str
    measured: str
    threshold: str
    status: str
    value: float | None = None


class _Index:
    """Measurements by (workload, variant, size, system)."""

    def __init__(self, measurements: Sequence[Measurement]) -> None:
        self._by_key = {
            (m.case.workload, m.case.variant, m.case.size, m.case.system): m for m in measurements
        }

    def get(self, workload: str, variant: str, size: int, system: str) -> Measurement | None:
        return self._by_key.get((workload, variant, size, system))

    def largest_ok(self, workload: str, variant: str, system: str) -> Measurement | None:
        found = [
            m
            for (w, v, _, s), m in self._by_key.items()
            if (w, v, s) == (workload, variant, system) and m.ok
        ]
        return max(found, key=lambda m: m.case.size, default=None)


def _missing(ours: Measurement | None, peer: Measurement | None) -> str:
    """Why a check cannot be computed ('' if it can)."""
    for m, name in ((ours, TASKPROC), (peer, "peer")):
        if m is None:
            return f"{name}: not measured at this size"
        if not m.ok:
            return f"{m.case.system}: {m.status.value} {m.error}".strip()
    return ""


def _na_or_missed(
    label: str, target: int, what: str, threshold: str, ours: Measurement | None, why: str
) -> TargetCheck:
    ours_failed = ours is not None and ours.status in (Status.ERROR, Status.TIMEOUT)
    return TargetCheck(target, label, what, why, threshold, MISSED if ours_failed else NA)


def _compare(
    target: int,
    label: str,
    what: str,
    ours: Measurement | None,
    peer: Measurement | None,
    metric: Callable[[Measurement], float | None],
    at_least: float,
    unit: str,
) -> TargetCheck:
    """ours' metric / peer's metric >= at_least (metric: higher is better)."""
    threshold = f">= {at_least:g}x"
    why = _missing(ours, peer)
    if why or ours is None or peer is None:
        return _na_or_missed(label, target, what, threshold, ours, why)
    a, b = metric(ours), metric(peer)
    if a is None or b is None or b == 0:
        return _na_or_missed(label, target, what, threshold, ours, "no rate")
    ratio = a / b
    measured = f"{ratio:.2f}x ({a:,.0f} vs {b:,.0f} {unit})"
    return TargetCheck(
        target, label, what, measured, threshold, MET if ratio >= at_least else MISSED, ratio
    )


def _tasks_per_s(m: Measurement) -> float | None:
    return m.tasks_per_s


def _mb_per_s(m: Measurement) -> float | None:
    return m.mb_per_s


def _target1(ix: _Index) -> list[TargetCheck]:
    checks = []
    for ex, letter in (("thread", "a"), ("process", "b")):
        ours = ix.get("fanin", ex, 10_000, TASKPROC)
        checks.append(
            _compare(
                1,
                f"1{letter}",
                f"fresh fan-in 10,000, {ex} pool, vs floor",
                ours,
                ix.get("fanin", ex, 10_000, FLOOR),
                _tasks_per_s,
                0.7,
                "tasks/s",
            )
        )
    for ex, letter in (("thread", "c"), ("process", "d")):
        ours = ix.get("fanin", ex, 10_000, TASKPROC)
        checks.append(
            _compare(
                1,
                f"1{letter}",
                f"fresh fan-in 10,000, {ex} pool, vs dask",
                ours,
                ix.get("fanin", ex, 10_000, DASK),
                _tasks_per_s,
                3.0,
                "tasks/s",
            )
        )
    return checks


def _bound(
    target: int,
    label: str,
    what: str,
    ours: Measurement | None,
    value: float | None,
    limit: float,
    fmt: str,
    threshold: str,
    *,
    at_least: bool = False,
) -> TargetCheck:
    """``value`` <= ``limit`` (or >= with ``at_least``); ``ours`` tells why it may be missing."""
    if ours is None or value is None:
        if ours is None:
            why = "not measured at this size"
        elif not ours.ok:
            why = f"{ours.status.value} {ours.error}".strip()
        else:
            why = "not judged at this size (too small)"
        return _na_or_missed(label, target, what, threshold, ours, why)
    met = value >= limit if at_least else value <= limit
    return TargetCheck(
        target, label, what, fmt.format(value), threshold, MET if met else MISSED, value
    )


def _target2(ix: _Index) -> list[TargetCheck]:
    at_10k = ix.get("cached", "new process", 10_000, TASKPROC)
    biggest = ix.largest_ok("cached", "new process", TASKPROC)
    checks = [
        _bound(
            2,
            "2a",
            "cached rerun, 10,000 tasks: per task",
            at_10k,
            at_10k.us_per_task if at_10k else None,
            30.0,
            "{:.1f} µs",
            "<= 30 µs",
        )
    ]
    if biggest is None or biggest.case.size <= 10_000:
        checks.append(
            _bound(
                2,
                "2b",
                "cached rerun, largest size: per-task growth over 10,000",
                None,
                None,
                1.5,
                "",
                "<= 1.5x",
            )
        )
        return checks
    size = f"{biggest.case.size:,}"
    checks.append(
        _bound(
            2,
            "2b",
            f"cached rerun, {size} tasks: per task",
            biggest,
            biggest.us_per_task,
            30.0,
            "{:.1f} µs",
            "<= 30 µs",
        )
    )
    growth = None
    if at_10k and at_10k.us_per_task and biggest.us_per_task:
        growth = biggest.us_per_task / at_10k.us_per_task
    checks.append(
        _bound(
            2,
            "2c",
            f"cached rerun, per-task cost {size} / 10,000",
            biggest,
            growth,
            1.5,
            "{:.2f}x",
            "<= 1.5x",
        )
    )
    return checks


def _target3(ix: _Index) -> list[TargetCheck]:
    choose = ix.get("choose", "thread", 100, TASKPROC)
    checks = [
        _bound(
            3,
            "3a",
            "Choose(100, 50) fresh, thread pool",
            choose,
            choose.time_s if choose and choose.ok else None,
            2.0,
            "{:.2f} s",
            "< 2 s",
        )
    ]
    for style, letter in (("init", "b"), ("arg", "c")):
        short = ix.get("chain", style, 1_000, TASKPROC)
        long = ix.get("chain", style, 100_000, TASKPROC)
        growth = None
        if short and long and short.us_per_task and long.us_per_task:
            growth = long.us_per_task / short.us_per_task
        measured_on = long if long is not None else short
        checks.append(
            _bound(
                3,
                f"3{letter}",
                f"chain 100,000 / 1,000 per task ({style} style)",
                measured_on,
                growth,
                1.5,
                "{:.2f}x",
                "<= 1.5x",
            )
        )
    return checks


def _target4(ix: _Index) -> list[TargetCheck]:
    checks = []
    for workload, variant, letter, phase in (
        ("fanin", "thread", "a", "build + run, thread pool"),
        ("fanin", "process", "b", "build + run, process pool"),
        ("cached", "new process", "c", "rerun"),
    ):
        m = ix.largest_ok(workload, variant, TASKPROC)
        per_task = m.peak_rss / m.n_tasks if m and m.peak_rss and m.n_tasks else None
        if m is not None and m.case.size < MIN_TASKS_FOR_MEMORY:
            per_task = None  # the interpreter's own memory would dominate
        size = f"{m.case.size:,}" if m else "largest"
        checks.append(
            _bound(
                4,
                f"4{letter}",
                f"peak memory per task, {size} tasks, {phase}",
                m,
                per_task,
                2 * KB,
                "{:,.0f} B",
                "< 2,048 B",
            )
        )
    return checks


def _target5(ix: _Index, measurements: Sequence[Measurement]) -> list[TargetCheck]:
    sizes = sorted({m.case.size for m in measurements if m.case.workload == "big_save"})
    if not sizes:
        return [TargetCheck(5, "5", "200 MB result", "not measured", "", NA)]
    mb = sizes[-1]
    checks = []
    for n, variant in enumerate(("random-9", "random-0", "compressible-9", "compressible-0")):
        checks.append(
            _compare(
                5,
                f"5{'abcd'[n]}",
                f"load {mb} MB {variant} vs 0.25.3",
                ix.get("big_load", variant, mb, TASKPROC),
                ix.get("big_load", variant, mb, TASKPROC_OLD),
                _mb_per_s,
                2.0,
                "MB/s",
            )
        )
    for letter, variant, at_least in (
        ("e", "random-0", 1.0),
        ("f", "compressible-0", 1.0),
        ("g", "random-9", 3.0),
    ):
        checks.append(
            _compare(
                5,
                f"5{letter}",
                f"save {mb} MB {variant} vs 0.25.3",
                ix.get("big_save", variant, mb, TASKPROC),
                ix.get("big_save", variant, mb, TASKPROC_OLD),
                _mb_per_s,
                at_least,
                "MB/s",
            )
        )
    saves = [
        ix.get("big_save", v, mb, TASKPROC)
        for v in ("random-9", "random-0", "compressible-9", "compressible-0")
    ]
    ok = [m for m in saves if m is not None and m.ok]
    failed = next((m for m in saves if m is not None and not m.ok), None)
    if failed is not None or not ok:
        why = f"{failed.status.value} {failed.error}" if failed else "not measured"
        for label, what in (
            ("5h", "gzip -t of the result files"),
            ("5i", "worker peak memory / result size"),
        ):
            checks.append(_na_or_missed(label, 5, what, "", failed, why))
        return checks
    passed = sum(bool(m.fields.get("gzip_ok")) for m in ok)
    checks.append(
        TargetCheck(
            5,
            "5h",
            "gzip -t of the result files",
            f"{passed}/{len(ok)} pass",
            "all pass",
            MET if passed == len(ok) else MISSED,
            passed,
        )
    )
    worst = max(ok, key=lambda m: float(m.fields.get("worker_maxrss", 0)))
    peak: float | None = float(worst.fields.get("worker_maxrss", 0)) / float(worst.nbytes or 1)
    if (worst.nbytes or 0) < MIN_BYTES_FOR_MEMORY:
        peak = None  # too small to judge
    checks.append(
        _bound(
            5,
            "5i",
            f"worker peak memory / result size (worst: {worst.case.variant})",
            worst,
            peak,
            1.5,
            "{:.2f}x",
            "<= 1.5x",
        )
    )
    return checks


def _target6(ix: _Index, measurements: Sequence[Measurement]) -> list[TargetCheck]:
    sizes = sorted({m.case.size for m in measurements if m.case.workload == "cpu"})
    if not sizes:
        return [TargetCheck(6, "6", "CPU-bound speed-up", "not measured", ">= 1.9x", NA)]
    n = sizes[-1]
    speedup = _speedup(ix, n, TASKPROC)
    two = ix.get("cpu", "2 worker", n, TASKPROC)
    shown = two if two is None or not two.ok else ix.get("cpu", "1 worker", n, TASKPROC)
    # The floor's speed-up in the same run tells whether both cores were free at the time.
    control = _speedup(ix, n, FLOOR)
    fmt = "{:.2f}x" + ("" if control is None else f" (floor: {control:.2f}x)")
    what = f"{n} CPU-bound tasks: 2 process workers over 1"
    return [_bound(6, "6", what, shown, speedup, 1.9, fmt, ">= 1.9x", at_least=True)]


def _speedup(ix: _Index, n: int, system: str) -> float | None:
    one = ix.get("cpu", "1 worker", n, system)
    two = ix.get("cpu", "2 worker", n, system)
    if one and two and one.ok and two.ok and one.time_s and two.time_s:
        return one.time_s / two.time_s
    return None


def _per_task_growth(
    ix: _Index, workload: str, size: int, threads: int, system: str
) -> float | None:
    """Per-task time on `threads` threads over that on WORKERS threads, same size and run."""
    base = ix.get(workload, threads_variant(WORKERS), size, system)
    many = ix.get(workload, threads_variant(threads), size, system)
    if base and many and base.us_per_task and many.us_per_task:
        return many.us_per_task / base.us_per_task
    return None


def _target7(ix: _Index, measurements: Sequence[Measurement]) -> list[TargetCheck]:
    """More threads than cores must not slow the engine down: the per-task time on 32 and 64
    threads at most 1.3x that on 2 in the same run, with the floor's ratio beside it (what the
    interpreter and the kernel do with that many threads)."""
    checks = []
    letters = iter("abcd")
    for workload, name in (("choose", "Choose(n, n/2)"), ("fanin", "fan-in")):
        many = threads_variant(THREAD_COUNTS[-1])
        size = max(
            (
                m.case.size
                for m in measurements
                if (m.case.workload, m.case.variant) == (workload, many)
            ),
            default=None,
        )
        shown = "" if size is None else f" {size:,}" if workload == "fanin" else f" n={size}"
        for threads in (32, 64):
            label = f"7{next(letters)}"
            what = f"{name}{shown} per task, {threads} threads / {WORKERS} threads"
            if size is None:
                checks.append(TargetCheck(7, label, what, "not measured", "<= 1.3x", NA))
                continue
            ours = ix.get(workload, threads_variant(threads), size, TASKPROC)
            base = ix.get(workload, threads_variant(WORKERS), size, TASKPROC)
            if ours is not None and ours.ok and (base is None or not base.ok):
                ours = base  # so that the check says why the 2-thread figure is missing
            growth = _per_task_growth(ix, workload, size, threads, TASKPROC)
            control = _per_task_growth(ix, workload, size, threads, FLOOR)
            fmt = "{:.2f}x" + ("" if control is None else f" (floor: {control:.2f}x)")
            checks.append(_bound(7, label, what, ours, growth, 1.3, fmt, "<= 1.3x"))
    return checks


def evaluate(measurements: Sequence[Measurement]) -> list[TargetCheck]:
    ix = _Index(measurements)
    return [
        *_target1(ix),
        *_target2(ix),
        *_target3(ix),
        *_target4(ix),
        *_target5(ix, measurements),
        *_target6(ix, measurements),
        *_target7(ix, measurements),
    ]
