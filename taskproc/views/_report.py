"""Reports of the store's views: ``taskproc status`` and ``ls`` as text and JSON, the
result of ``clear``, and the ``--dry-run`` plan. Plain functions from records to text."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from taskproc.model import Reason, TaskBase, apart
from taskproc.run import TaskState, graph_labels, unknown_labels_message
from taskproc.store import RunSummary, hostname, scheme_of
from taskproc.views._live import LiveRun
from taskproc.views._scan import STATES, TaskEntry, summarize, total_size
from taskproc.views._why import Explainer, plan_of

# What status cannot know, said under its table.
CODE_NOTE = "(stale follows upstream tasks, not code changes: see 'taskproc why FILE.py')"
LIST_LIMIT = 20  # rows of running/failed tasks in the text report; --json has them all


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def human_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


# Control characters, but tabs and line ends (the report's own).
_CONTROL = frozenset(c for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (9, 10))


def printable(text: str) -> str:
    """`text` with control characters (terminal escapes, bells, carriage returns: from error
    text or arguments in the cache) shown as ``\\xNN``, so that printing it cannot move the
    cursor, retitle the terminal or hide a line."""
    if not any(ord(c) in _CONTROL for c in text):
        return text
    return "".join(f"\\x{ord(c):02x}" if ord(c) in _CONTROL else c for c in text)


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _running_line(e: TaskEntry, now: float) -> str:
    who = f"on {e.holder.host} pid {e.holder.pid}" if e.holder else ""
    since = f" for {human_time(max(0.0, now - e.claimed_since))}" if e.claimed_since else ""
    return f"  {e.task}  {who}{since}\n      log: {e.log}"


def _failed_line(e: TaskEntry) -> str:
    at = f"\n      raised at: {e.raised_at}" if e.raised_at else ""
    return f"  {e.task}  {e.error}{at}\n      log: {e.log}\n      traceback: {e.error_file}"


def _count(state: TaskState, n: int, old: int) -> str:
    """``3 failed``, and of those how many are old (``3 failed (2 old)``)."""
    return f"{n} {state}" + (f" ({old} old)" if state is TaskState.FAILED and old else "")


def _old_failures(root: str, entries: list[TaskEntry], now: float) -> list[str]:
    """The failures that a later successful run of their task name made history: when each
    failed, and how to remove them."""
    lines = []
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.failed_at or 0.0))
        ago = human_time(max(0.0, now - (e.failed_at or now)))
        lines.append(
            f"  {e.task}  failed {when} ({ago} ago): {e.error}\n      traceback: {e.error_file}"
        )
    if not lines:
        return []
    title = "old failures (a task of the same name succeeded since)"
    return [*_section(title, lines), f"  to remove them: taskproc clear {root} --failed"]


def _section(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    more = len(lines) - LIST_LIMIT
    tail = [f"  ... and {more} more (taskproc status --json lists all)"] if more > 0 else []
    return ["", f"{title}:", *lines[:LIST_LIMIT], *tail]


def last_run_line(run: RunSummary | None) -> str:
    """The last run's wall time, to read beside the summed task time of `status`."""
    if run is None:
        return "last run: none recorded"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.finished))
    failed = f", {run.failed} failed" if run.failed else ""
    return (
        f"last run: {human_time(run.wall_time)} wall time, {run.ran} task"
        f"{'' if run.ran == 1 else 's'} run{failed}; "
        f"finished {when} on {run.host} pid {run.pid}"
    )


def shown_root(root: str) -> str:
    """A cache as reports name it: a folder as an absolute path, a URL as it is."""
    return root if scheme_of(root) not in (None, "file") else os.path.abspath(root)


def run_lines(runs: Sequence[LiveRun], now: float) -> list[str]:
    """The runs in progress (and those killed mid-run): how much is left, and when it ends."""
    lines = []
    for run in runs:
        when = time.strftime("%H:%M:%S", time.localtime(run.started))
        who = f"runner {run.runner} on {run.host} pid {run.pid}, started {when}"
        counts = f"{run.total('done')} done, {run.total('running')} running or queued"
        if run.total("failed"):
            counts += f", {run.total('failed')} failed"
        left = f"{run.total('left')} of {run.total('to_run')} left ({counts})"
        if not run.in_progress:
            lines.append(f"run killed: {left}; {who} (its runner is gone)")
            continue
        eta = f", ETA {human_time(run.eta)}" if run.eta is not None else ""
        ago = human_time(max(0.0, now - run.started))
        lines.append(f"run in progress: {left}{eta}; {who} ({ago} ago)")
        busy = [n for n in run.names if n.left]
        if len(run.names) > 1:
            lines += [
                f"  {n.task_name}: {n.left} of {n.to_run} left ({n.running} running or queued)"
                for n in busy[:LIST_LIMIT]
            ]
            if len(busy) > LIST_LIMIT:
                lines.append(f"  ... and {len(busy) - LIST_LIMIT} more task names")
    return lines


def format_status(
    root: str,
    entries: list[TaskEntry],
    last_run: RunSummary | None = None,
    runs: Sequence[LiveRun] = (),
) -> str:
    """The text report of `taskproc status`: `task time` is the time of the tasks summed
    (on many workers, far more than the wall time of the run, shown beside it); the runs in
    progress with what is left and their ETA (`runs`, from `read_runs` and `with_eta`)."""
    summary = summarize(entries)
    totals = {s: sum(n.counts.get(s, 0) for n in summary.values()) for s in STATES}
    old = [e for e in entries if e.old_failure]
    head = f"cache {shown_root(root)}: {len(entries)} tasks"
    head += "".join(f", {_count(s, totals[s], len(old))}" for s in STATES if totals[s])
    now = time.time()
    if not entries:
        return "\n".join([head + " (nothing has run yet)", *run_lines(runs, now)])
    size = total_size(entries)
    if size is not None:
        head += f"; {human_size(size)}"
    rows = [["task name", *(s.value for s in STATES), "task time", "size"]]
    for name in sorted(summary):
        s = summary[name]
        counts = [str(s.counts.get(st, 0)) for st in STATES]
        rows.append([name, *counts, human_time(s.time), human_size(s.size)])
    times = [s.time for s in summary.values() if s.time is not None]
    task_time = human_time(sum(times)) if times else ""
    rows.append(["total", *(str(totals[st]) for st in STATES), task_time, human_size(size)])
    lines = [
        head,
        last_run_line(last_run),
        *run_lines(runs, now),
        "",
        _table(rows, set(range(1, len(STATES) + 3))),
    ]
    lines.append(CODE_NOTE)
    lines += _section(
        "running", [_running_line(e, now) for e in entries if e.state is TaskState.RUNNING]
    )
    lines += _section(
        "failed",
        [_failed_line(e) for e in entries if e.state is TaskState.FAILED and not e.old_failure],
    )
    lines += _old_failures(root, old, now)
    abandoned = [
        f"  {e.task}  claimed by a runner that is gone ({e.holder.host} pid {e.holder.pid}); "
        "the next run takes it over"
        for e in entries
        if e.state is TaskState.INCOMPLETE and e.holder is not None
    ]
    lines += _section("abandoned", abandoned)
    return "\n".join(lines)


def status_json(
    root: str,
    entries: list[TaskEntry],
    last_run: RunSummary | None = None,
    runs: Sequence[LiveRun] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """The machine-readable report of `taskproc status --json` (per task name, `time` is the
    summed task time; `last_run` has the wall time; `runs` the runs in progress, or killed,
    with their counts, what is left and their ETA). docs/cli.md documents it."""
    summary = summarize(entries)
    return {
        "cache": shown_root(root),
        "host": hostname(),
        "time": time.time() if now is None else now,
        "last_run": last_run.to_json() if last_run else None,
        "runs": [run.to_json() for run in runs],
        "totals": {s.value: sum(n.counts.get(s, 0) for n in summary.values()) for s in STATES},
        "size": total_size(entries),
        "task_names": {name: summary[name].to_json() for name in sorted(summary)},
        **{
            state.value: [e.to_json() for e in entries if e.state is state]
            for state in (
                TaskState.RUNNING,
                TaskState.FAILED,
                TaskState.STALE,
                TaskState.INCOMPLETE,
            )
        },
    }


def format_tasks(entries: list[TaskEntry]) -> str:
    """``taskproc ls CACHE NAME``: one row per task."""
    rows = [["id", "state", "size", "time", "task"]]
    rows += [
        [e.task_id, _state(e), human_size(e.size), human_time(e.duration), task]
        for e, task in zip(entries, _told_apart(entries), strict=True)
    ]
    return _table(rows, {2, 3})


def _told_apart(entries: list[TaskEntry]) -> list[str]:
    """Each task as the scan described it; tasks of one name that read the same (their
    arguments cut in the middle) described again, each cut where it differs (`apart`)."""
    shown = [e.task for e in entries]
    alike: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(entries):
        if e.args is not None:
            alike.setdefault((e.task_name, e.task), []).append(i)
    for (name, _), group in alike.items():
        if len(group) > 1:
            texts = apart(name, [json.dumps(entries[i].args) for i in group])
            for i, text in zip(group, texts, strict=True):
                shown[i] = text
    return shown


def _state(e: TaskEntry) -> str:
    return f"{e.state.value} (old)" if e.old_failure else e.state.value


def format_cleared(entries: list[TaskEntry]) -> str:
    """What ``taskproc clear`` deleted."""
    size = sum(e.size or 0 for e in entries)
    lines = [f"cleared {len(entries)} task{'s' if len(entries) != 1 else ''} ({human_size(size)})"]
    lines += [f"  {name}: {len(group)}" for name, group in by_name(entries)]
    return "\n".join(lines)


def format_names(entries: list[TaskEntry]) -> str:
    if not entries:
        return "(no tasks)"
    by_name: dict[str, list[TaskEntry]] = {}
    for e in entries:
        by_name.setdefault(e.task_name, []).append(e)
    rows = [["task name", "tasks", "size", "states"]]
    for name, group in sorted(by_name.items()):
        states = summarize(group)[name].counts
        rows.append(
            [
                name,
                str(len(group)),
                human_size(sum(e.size or 0 for e in group)),
                ", ".join(f"{states[s]} {s.value}" for s in STATES if states.get(s)),
            ]
        )
    return _table(rows, {1, 2})


def by_name(entries: list[TaskEntry]) -> list[tuple[str, list[TaskEntry]]]:
    out: dict[str, list[TaskEntry]] = {}
    for e in entries:
        out.setdefault(e.task_name, []).append(e)
    return sorted(out.items())


def format_dry_run(
    order: Sequence[TaskBase],
    stale: Mapping[TaskBase, Reason],
    detail: Callable[[TaskBase], str],
    per_name: int = 20,
) -> str:
    """The report of `--dry-run`: per task name, the tasks that would run and why (`detail`
    is asked only for the tasks shown)."""
    if not stale:
        return f"dry run: nothing to run; all {len(order)} tasks are cached and fresh"
    groups: dict[str, list[TaskBase]] = {}
    totals: dict[str, int] = {}
    for t in order:
        totals[t.task_name] = totals.get(t.task_name, 0) + 1
        if t in stale:
            groups.setdefault(t.task_name, []).append(t)
    lines = [
        f"dry run: {len(stale)} of {len(order)} tasks would run "
        f"({len(order) - len(stale)} cached); nothing was run"
    ]
    for name, tasks in groups.items():
        why: dict[str, int] = {}
        for t in tasks:
            why[stale[t].value] = why.get(stale[t].value, 0) + 1
        counts = ", ".join(f"{n} {r}" for r, n in why.items())
        lines.append(f"{name}: {len(tasks)} of {totals[name]} would run ({counts})")
        lines += [f"  {t!r}: {detail(t)}" for t in tasks[:per_name]]
        if len(tasks) > per_name:
            lines.append(f"  ... and {len(tasks) - per_name} more")
    return "\n".join(lines)


def dry_run_report(
    task: TaskBase,
    *,
    detect_source_change: bool,
    force_entrypoint: bool,
    labelled: Sequence[tuple[str, Collection[str]]] = (),
) -> tuple[str, list[str]]:
    """The ``--dry-run`` report for a run of `task`, and the warnings met on the way (the run
    would warn of them too: among them, labels of `labelled`, (option, labels), that no task
    has); reads, never writes. Each task shown says why as ``taskproc why`` does."""
    planned = plan_of(
        task, detect_source_change=detect_source_change, force_entrypoint=force_entrypoint
    )
    order, stale = planned.order, planned.plan.stale
    explainer = Explainer(stale, planned.fingerprints, planned.ledger)
    report = format_dry_run(order, stale, lambda t: explainer.why(t).summary)
    known = graph_labels({type(t) for t in order}) if any(g for _, g in labelled) else set()
    unknown = [unknown_labels_message(option, given, known) for option, given in labelled]
    return report, [*(m for m in unknown if m), *planned.warnings]


def format_clear_list(
    root: str, entries: list[TaskEntry], *, dry_run: bool, failed: bool, kept: int = 0
) -> str:
    """What ``taskproc clear --dry-run`` would remove, or what ``clear --failed`` removed: the
    count and total size, then one row per task (key, size, task, and a failure's error);
    `kept`: tasks left alone because a runner took them up meanwhile."""
    what = f"{len(entries)} {'failed ' if failed else ''}task{'s' if len(entries) != 1 else ''}"
    size = human_size(sum(e.size or 0 for e in entries))
    if dry_run:
        lines = [f"would remove {what} ({size}) from {root}; dry run: nothing was removed"]
    else:
        lines = [f"cleared {what} ({size})"]
    if entries:
        rows = [
            [e.key, human_size(e.size), e.task, e.error if e.state is TaskState.FAILED else ""]
            for e in entries
        ]
        lines += ["  " + row for row in _table(rows, {1}).splitlines()]
    if kept:
        lines.append(f"kept {kept} task{'s' if kept != 1 else ''} that a runner took up meanwhile")
    return "\n".join(lines)
