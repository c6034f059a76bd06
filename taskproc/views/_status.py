"""Task states read from the cache folder alone: ``taskproc status``, ``ls``, ``clear``, and
``taskproc FILE.py --dry-run``.

`status`, `ls` and `clear` never import the pipeline: they read files only, so they work from
another shell or machine while a run is going on, and after a crash. The state of one task
folder is the first rule that applies:

    running     ``claim`` names a live runner: its heartbeat file exists and, on this host,
                its pid is alive (on another host the heartbeat file alone counts)
    failed      ``error.txt``, and no result written after it
    done        a result whose header record is readable
    stale       done, but an upstream result (found through ``deps/``) changed since, or is gone
    incomplete  none of these: interrupted, killed, or claimed by a runner that died

Source-code changes cannot be seen without the pipeline file: ``taskproc graph`` and
``--dry-run`` import it and show them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from taskproc.model._canonical import describe
from taskproc.errors import CorruptResultError
from taskproc.run._plan import stamps_digest
from taskproc.store._resultfile import read_header, read_record
from taskproc.store._local import MARKER_DIR, Claim, Store, hostname, pid_alive

if TYPE_CHECKING:
    from taskproc.model._task import Task

STATES = ("done", "stale", "running", "failed", "incomplete")
LIST_LIMIT = 20  # rows of running/failed tasks in the text report; --json has them all


@dataclass(frozen=True, slots=True)
class TaskEntry:
    """One task folder as found on disk."""

    task_name: str
    task_id: str
    folder: str
    state: str
    task: str = ""  # e.g. ``pipe.Choose(n=3, k=2)`` from args.json; "" if not read
    duration: float | None = None
    finished: float | None = None
    size: int | None = None
    claim: Claim | None = None
    claimed_since: float | None = None
    error: str = ""  # first line of the error, or why a result is unusable

    @property
    def key(self) -> str:
        return f"{self.task_name}/{self.task_id}"

    def log(self) -> str:
        return os.path.join(self.folder, "stderr.txt")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["claim"] = asdict(self.claim) if self.claim else None
        out["log"] = self.log()
        return out


@dataclass(frozen=True, slots=True)
class NameSummary:
    """The counts and times of one task name."""

    task_name: str
    counts: dict[str, int] = field(default_factory=dict)
    time: float | None = None  # summed over the tasks that have a result; None if none has
    max_time: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **{s: self.counts.get(s, 0) for s in STATES},
            "time": None if self.time is None else round(self.time, 6),
            "max_time": None if self.max_time is None else round(self.max_time, 6),
        }


# -- reading the cache ------------------------------------------------------------------


def open_cache(root: str) -> Store:
    """The store at `root`, or UsageError if it is not a taskproc cache."""
    from taskproc.errors import UsageError

    store = Store(os.path.abspath(root))
    if not os.path.isdir(root):
        raise UsageError(f"{root}: no such folder; give the cache folder of a run (-o CACHE)")
    if not store.is_cache():
        raise UsageError(
            f"{root}: not a taskproc cache (no {MARKER_DIR}/cache.json); "
            "give the folder passed as -o CACHE or Graph(cache_dir)"
        )
    return store


def task_names(root: str) -> list[str]:
    """The task names that have a results folder in the cache, sorted."""
    try:
        entries = os.listdir(root)
    except OSError:
        return []
    return sorted(
        e
        for e in entries
        if not e.startswith(".") and os.path.isdir(os.path.join(root, e, "results"))
    )


def _files(folder: str) -> dict[str, os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return {e.name: e for e in it}
    except OSError:
        return {}


def _mtime(entry: os.DirEntry[str] | None) -> float | None:
    if entry is None:
        return None
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return None


def first_error_line(traceback_text: str) -> str:
    """The ``Type: message`` line of the last exception in a formatted traceback."""
    lines = traceback_text.rstrip().splitlines()
    found = ""
    previous_indented = True
    for line in lines:
        indented = line[:1].isspace()
        if line and not indented and previous_indented and not line.startswith("Traceback ("):
            found = line
        previous_indented = indented or line.startswith("Traceback (")
    return found or (lines[-1].strip() if lines else "")


def runner_alive(store: Store, claim: Claim, here: str) -> bool:
    """Whether the runner behind `claim` is alive, by the rule in the module docstring."""
    if not claim.runner or not os.path.exists(store.runner_file(claim.runner)):
        return False
    return claim.host != here or pid_alive(claim.pid)


def folder_size(folder: str) -> int:
    """Bytes of the files under `folder`, not following the ``deps/`` links."""
    total = 0
    stack = [folder]
    while stack:
        for entry in _files(stack.pop()).values():
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def _describe(task_name: str, task_id: str, folder: str) -> str:
    try:
        with open(os.path.join(folder, "args.json")) as f:
            return describe(task_name, json.dumps(json.load(f)))
    except (OSError, ValueError, AttributeError):
        return f"{task_name}[{task_id[:8]}]"


@dataclass(frozen=True, slots=True)
class _Seen:
    """What one folder holds, before staleness (which needs the other folders) is decided."""

    entry: TaskEntry
    stamp: str | None
    deps: str | None
    upstream: tuple[str, ...] | None


def _upstream_keys(folder: str) -> tuple[str, ...] | None:
    """Keys of the upstream tasks from the ``deps/`` links; None if they cannot be told."""
    deps = os.path.join(folder, "deps")
    links = _files(deps)
    if not links:
        # No deps/ folder: no upstream tasks. An empty one: a file system without symlinks.
        return () if not os.path.lexists(deps) else None
    keys = set()
    for entry in links.values():
        try:
            target = os.readlink(entry.path)
        except OSError:
            return None
        parts = target.split("/")
        if len(parts) < 3 or parts[-2] != "results":
            return None
        keys.add(f"{parts[-3]}/{parts[-1]}")
    return tuple(sorted(keys))


def _read_folder(
    store: Store, task_name: str, task_id: str, *, here: str, with_size: bool
) -> _Seen:
    folder = store.task_dir(task_name, task_id)
    files = _files(folder)
    claim = store.read_claim(folder) if "claim" in files else None
    result_time = _mtime(files.get("result.pkl.gz"))
    error_time = _mtime(files.get("error.txt"))
    record, error = None, ""
    info: dict[str, Any] = {}
    if result_time is not None:
        try:
            header = read_header(os.path.join(folder, "result.pkl.gz"))
        except CorruptResultError as exc:
            error = f"unreadable result: {exc}"
        else:
            if header is not None:
                record, info = header
    if claim is not None and runner_alive(store, claim, here):
        state = "running"
    elif error_time is not None and (record is None or (result_time or 0.0) <= error_time):
        state = "failed"
        error = _error_line(os.path.join(folder, "error.txt"))
    elif record is not None:
        state = "done"
    else:
        state = "incomplete"
    entry = TaskEntry(
        task_name=task_name,
        task_id=task_id,
        folder=folder,
        state=state,
        # Reading args.json is a good part of a scan: done tasks are described only for `ls`.
        task=_describe(task_name, task_id, folder) if with_size or state != "done" else "",
        duration=_float(info.get("duration")),
        finished=_float(info.get("finished")),
        size=folder_size(folder) if with_size else None,
        claim=claim,
        claimed_since=_mtime(files.get("claim")),
        error=error,
    )
    if record is None:
        return _Seen(entry, None, None, None)
    return _Seen(entry, record.stamp, record.deps, _upstream_keys(folder))


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _error_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return first_error_line(f.read(1 << 20))
    except OSError:
        return ""


def _with_staleness(store: Store, seen: list[_Seen], scanned: set[str]) -> Iterator[TaskEntry]:
    stamps: dict[str, str | None] = {s.entry.key: s.stamp for s in seen}

    def stamp_of(key: str) -> str | None:
        if key not in stamps:  # an upstream task of a name that was not scanned
            name, _, task_id = key.partition("/")
            stamps[key] = None if name in scanned else _read_stamp(store, name, task_id)
        return stamps[key]

    for s in seen:
        entry = s.entry
        if entry.state == "done" and s.upstream is not None:
            ups = [(k, stamp_of(k)) for k in s.upstream]
            missing = [k for k, stamp in ups if stamp is None]
            if missing:
                entry = _replace(entry, "stale", f"upstream {missing[0]} has no result")
            elif stamps_digest((k, v or "") for k, v in ups) != s.deps:
                entry = _replace(entry, "stale", "an upstream result changed since it ran")
        yield entry


def _read_stamp(store: Store, task_name: str, task_id: str) -> str | None:
    try:
        record = read_record(os.path.join(store.task_dir(task_name, task_id), "result.pkl.gz"))
    except CorruptResultError:
        return None
    return record.stamp if record else None


def _replace(entry: TaskEntry, state: str, why: str) -> TaskEntry:
    task = entry.task or _describe(entry.task_name, entry.task_id, entry.folder)
    return replace(entry, state=state, error=why, task=task)


def scan(
    store: Store, names: Sequence[str] | None = None, *, with_size: bool = False
) -> list[TaskEntry]:
    """Every task folder of the given task names (default: all), with its state."""
    here = hostname()
    seen: list[_Seen] = []
    scanned = list(names) if names is not None else task_names(store.root)
    for name in scanned:
        results = os.path.join(store.root, name, "results")
        try:
            ids = sorted(os.listdir(results))
        except OSError:
            continue
        for task_id in ids:
            if not task_id.startswith("."):
                seen.append(_read_folder(store, name, task_id, here=here, with_size=with_size))
    return list(_with_staleness(store, seen, set(scanned)))


def summarize(entries: Iterable[TaskEntry]) -> dict[str, NameSummary]:
    """Counts and times per task name."""
    counts: dict[str, dict[str, int]] = {}
    times: dict[str, list[float]] = {}
    for e in entries:
        c = counts.setdefault(e.task_name, {})
        c[e.state] = c.get(e.state, 0) + 1
        if e.duration is not None and e.state in ("done", "stale"):
            times.setdefault(e.task_name, []).append(e.duration)
    out = {}
    for name, c in counts.items():
        t = times.get(name)
        out[name] = NameSummary(name, c, sum(t) if t else None, max(t) if t else None)
    return out


# -- formatting -------------------------------------------------------------------------


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
    who = f"on {e.claim.host} pid {e.claim.pid}" if e.claim else ""
    since = f" for {human_time(max(0.0, now - e.claimed_since))}" if e.claimed_since else ""
    return f"  {e.task}  {who}{since}\n      log: {e.log()}"


def _failed_line(e: TaskEntry) -> str:
    return (
        f"  {e.task}  {e.error}\n      log: {e.log()}\n"
        f"      traceback: {os.path.join(e.folder, 'error.txt')}"
    )


def _section(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    more = len(lines) - LIST_LIMIT
    tail = [f"  ... and {more} more (taskproc status --json lists all)"] if more > 0 else []
    return ["", f"{title}:", *lines[:LIST_LIMIT], *tail]


def format_status(root: str, entries: list[TaskEntry]) -> str:
    """The text report of `taskproc status`."""
    summary = summarize(entries)
    totals = {s: sum(n.counts.get(s, 0) for n in summary.values()) for s in STATES}
    head = f"cache {os.path.abspath(root)}: {len(entries)} tasks"
    head += "".join(f", {totals[s]} {s}" for s in STATES if totals[s])
    if not entries:
        return head + " (nothing has run yet)"
    rows = [["task name", *STATES, "time"]]
    for name in sorted(summary):
        s = summary[name]
        rows.append([name, *(str(s.counts.get(st, 0)) for st in STATES), human_time(s.time)])
    now = time.time()
    lines = [head, "", _table(rows, set(range(1, len(STATES) + 2)))]
    lines += _section("running", [_running_line(e, now) for e in entries if e.state == "running"])
    lines += _section("failed", [_failed_line(e) for e in entries if e.state == "failed"])
    abandoned = [
        f"  {e.task}  claimed by a runner that is gone ({e.claim.host} pid {e.claim.pid}); "
        "the next run takes it over"
        for e in entries
        if e.state == "incomplete" and e.claim is not None
    ]
    lines += _section("abandoned", abandoned)
    return "\n".join(lines)


def status_json(root: str, entries: list[TaskEntry]) -> dict[str, Any]:
    """The machine-readable report of `taskproc status --json`."""
    summary = summarize(entries)
    return {
        "cache": os.path.abspath(root),
        "host": hostname(),
        "time": time.time(),
        "totals": {s: sum(n.counts.get(s, 0) for n in summary.values()) for s in STATES},
        "task_names": {name: summary[name].to_json() for name in sorted(summary)},
        **{
            state: [e.to_json() for e in entries if e.state == state]
            for state in ("running", "failed", "stale", "incomplete")
        },
    }


# -- selecting task names ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """Task names, and optionally one task id per name, chosen on the command line."""

    names: tuple[str, ...]
    ids: tuple[tuple[str, str], ...]  # (task name, task id) of single tasks


def select(store: Store, patterns: Sequence[str]) -> Selection:
    """Resolve ``NAME``, a glob like ``'pipe.*'``, or ``NAME/ID`` (an id prefix will do).

    Raises UsageError for a pattern that matches nothing, before anything is changed.
    """
    from taskproc.errors import UsageError

    known = task_names(store.root)
    names: dict[str, None] = {}
    ids: dict[tuple[str, str], None] = {}
    for pattern in patterns:
        name, _, id_prefix = pattern.partition("/")
        matched = [n for n in known if fnmatch.fnmatchcase(n, name)]
        if not matched:
            hint = ", ".join(known[:8]) + (" ..." if len(known) > 8 else "")
            raise UsageError(
                f"no task named {name!r} in {store.root} (task names: {hint or 'none'}); "
                "see 'taskproc ls CACHE'"
            )
        if not id_prefix:
            names.update(dict.fromkeys(matched))
            continue
        for n in matched:
            ids[(n, _resolve_id(store, n, id_prefix))] = None
    return Selection(tuple(names), tuple(ids))


def _resolve_id(store: Store, name: str, prefix: str) -> str:
    from taskproc.errors import UsageError

    try:
        found = [
            i for i in os.listdir(os.path.join(store.root, name, "results")) if i.startswith(prefix)
        ]
    except OSError:
        found = []
    if len(found) != 1:
        what = "no task" if not found else f"{len(found)} tasks"
        raise UsageError(
            f"{name}/{prefix}: {what} with this id; give a unique id prefix "
            f"(see 'taskproc ls CACHE {name}')"
        )
    return found[0]


# -- the subcommands ------------------------------------------------------------------------


def _parser(command: str) -> argparse.ArgumentParser:
    from taskproc.cli._main import OneLineParser

    p = OneLineParser(prog=f"taskproc {command}", description=_DESCRIPTIONS[command])
    p.add_argument("cache", metavar="CACHE", help="the cache folder (-o CACHE of the run)")
    if command == "ls":
        p.add_argument("name", metavar="TASK_NAME", nargs="?", help="list this task's instances")
    if command == "clear":
        p.add_argument(
            "names",
            metavar="TASK_NAME",
            nargs="*",
            help="task names, globs ('pipe.*') or NAME/ID; none: every task",
        )
        p.add_argument("--force", action="store_true", help="also clear tasks that are running")
    if command != "clear":
        p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


_DESCRIPTIONS = {
    "status": "Per task name: done, stale, running (host, pid), failed (error, log), time. "
    "Reads only the cache folder, so it works during a run and after a crash.",
    "ls": "List task names (or, given TASK_NAME, its tasks: id, arguments, state, size).",
    "clear": "Delete cached tasks: TASK_NAME is like Task.clear_all_tasks(), TASK_NAME/ID like "
    "task.clear_task(); with no TASK_NAME every task is deleted.",
}


def main(argv: list[str]) -> int:
    """``taskproc status|ls|clear ...``; `argv` starts with the subcommand."""
    command, rest = argv[0], argv[1:]
    args = _parser(command).parse_args(rest)
    store = open_cache(args.cache)
    if command == "status":
        return _status(store, args.json)
    if command == "ls":
        return _ls(store, args.name, args.json)
    return _clear(store, args.names, args.force)


def _status(store: Store, as_json: bool) -> int:
    entries = scan(store)
    if as_json:
        print(json.dumps(status_json(store.root, entries), indent=2))
    else:
        print(format_status(store.root, entries))
    return 0


def _ls(store: Store, pattern: str | None, as_json: bool) -> int:
    names = select(store, [pattern]).names if pattern else task_names(store.root)
    entries = scan(store, names if pattern else None, with_size=True)
    if pattern:
        entries = [e for e in entries if e.task_name in names]
    if as_json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
    elif pattern:
        rows = [["id", "state", "size", "time", "task"]]
        rows += [
            [e.task_id, e.state, human_size(e.size), human_time(e.duration), e.task]
            for e in entries
        ]
        print(_table(rows, {2, 3}))
    else:
        print(_ls_names(entries))
    return 0


def _ls_names(entries: list[TaskEntry]) -> str:
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
                ", ".join(f"{states[s]} {s}" for s in STATES if states.get(s)),
            ]
        )
    return _table(rows, {1, 2})


def _clear(store: Store, patterns: Sequence[str], force: bool) -> int:
    from taskproc.errors import UsageError

    everything = not patterns
    sel = select(store, patterns) if patterns else Selection(tuple(task_names(store.root)), ())
    names = list(dict.fromkeys([*sel.names, *(n for n, _ in sel.ids)]))
    entries = [
        e
        for e in scan(store, names, with_size=True)
        if e.task_name in sel.names or (e.task_name, e.task_id) in sel.ids
    ]
    running = [e for e in entries if e.state == "running"]
    if running and not force:
        e = running[0]
        who = f"host {e.claim.host} pid {e.claim.pid}" if e.claim else "another runner"
        more = f" and {len(running) - 1} more tasks are" if len(running) > 1 else " is"
        raise UsageError(
            f"{e.task} ({who}){more} running; wait for the run to finish, or pass --force"
        )
    if everything:
        store.clear_all()
    for name in sel.names:
        if not everything:
            store.clear_task_name(name)
    for name, task_id in sel.ids:
        store.clear_task(name, task_id)
    size = sum(e.size or 0 for e in entries)
    print(f"cleared {len(entries)} task{'s' if len(entries) != 1 else ''} ({human_size(size)})")
    for name, group in _group(entries):
        print(f"  {name}: {len(group)}")
    return 0


def _group(entries: list[TaskEntry]) -> list[tuple[str, list[TaskEntry]]]:
    out: dict[str, list[TaskEntry]] = {}
    for e in entries:
        out.setdefault(e.task_name, []).append(e)
    return sorted(out.items())


# -- dry run ----------------------------------------------------------------------------


def dry_run(task: Task, *, detect_source_change: bool, force_entrypoint: bool = True) -> int:
    """Print which tasks a run of `task` would run and why, without running or writing."""
    from taskproc.model._fingerprint import fingerprinter
    from taskproc.run._plan import collect, decide

    order = collect(task)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stale = decide(
            order,
            task,
            force_root=force_entrypoint,
            code=fingerprinter(),
            check_code=detect_source_change,
        )
    for w in caught:
        print(f"taskproc: warning: {w.message}", file=sys.stderr)
    print(format_dry_run(order, {t: r.value for t, r in stale.items()}))
    return 0


def format_dry_run(order: Sequence[Task], reasons: dict[Task, str], per_name: int = 20) -> str:
    """The report of `--dry-run`: per task name, the tasks that would run and why."""
    if not reasons:
        return f"dry run: nothing to run; all {len(order)} tasks are cached and fresh"
    groups: dict[str, list[Task]] = {}
    totals: dict[str, int] = {}
    for t in order:
        totals[t.task_name] = totals.get(t.task_name, 0) + 1
        if t in reasons:
            groups.setdefault(t.task_name, []).append(t)
    lines = [
        f"dry run: {len(reasons)} of {len(order)} tasks would run "
        f"({len(order) - len(reasons)} cached); nothing was run"
    ]
    for name, tasks in groups.items():
        why: dict[str, int] = {}
        for t in tasks:
            why[reasons[t]] = why.get(reasons[t], 0) + 1
        detail = ", ".join(f"{n} {r}" for r, n in why.items())
        lines.append(f"{name}: {len(tasks)} of {totals[name]} would run ({detail})")
        lines += [f"  {t!r}: {reasons[t]}" for t in tasks[:per_name]]
        if len(tasks) > per_name:
            lines.append(f"  ... and {len(tasks) - per_name} more")
    return "\n".join(lines)
