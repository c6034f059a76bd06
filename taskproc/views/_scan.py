"""Task states read from a store alone, for ``taskproc status``, ``ls`` and ``clear``.

These views never import the pipeline: they read the store only, so they work from another
shell or machine while a run is going on, and after a crash. The state of one stored task is
the first rule that applies:

    running     its claim names a live runner: the runner's heartbeat exists and, on this
                host, its pid is alive (on another host the heartbeat alone counts)
    failed      a failure is recorded, and no result written after it
    done        a result whose record is readable
    stale       done, but an upstream task, however far up (found through the links), has
                no result, failed, is running or is stale, or an upstream result changed
                since it ran (the freshness rule of the run, without the code, which needs
                the file); the reason names the upstream task where it starts
    incomplete  none of these: interrupted, killed, or claimed by a runner that died

A failure is *old* when a task of the same task name wrote a result after it: the run that
failed was followed by one that succeeded (with other arguments), so the failure is history
(``taskproc clear CACHE --failed`` removes it).

Source-code changes cannot be seen without the pipeline file: ``taskproc graph``, ``why`` and
``--dry-run`` import it and show them (`status` says so).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from taskproc.errors import ConfigError, UsageError
from taskproc.model import (
    INPUT_CODE,
    Lookup,
    args_reader,
    computed_with_failures,
    describe,
    memoized,
    stale_reason,
    stamps_digest,
)
from taskproc.run import TaskState, did_you_mean
from taskproc.store import (
    MARKER_DIR,
    Holder,
    LocalStore,
    Store,
    StoredTask,
    hostname,
    open_store,
    runner_alive,
)
from taskproc.views._state import facts_of, state_of

# The states a store can show, in the order the reports list them.
STATES = (
    TaskState.DONE,
    TaskState.STALE,
    TaskState.RUNNING,
    TaskState.FAILED,
    TaskState.INCOMPLETE,
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an error was raised: the innermost frame of its traceback."""

    file: str
    line: int
    function: str
    source: str = ""  # the source line, when the traceback shows it

    def __str__(self) -> str:
        where = f"{self.file}:{self.line} in {self.function}"
        return f"{where}: {self.source}" if self.source else where


@dataclass(frozen=True, slots=True)
class TaskEntry:
    """One stored task and its state."""

    task_name: str
    task_id: str
    folder: str
    state: TaskState
    task: str = ""  # e.g. ``pipe.Choose(n=3, k=2)`` from its arguments; "" if not read
    args: Any = None  # its canonical arguments (JSON), whole; None if not read
    duration: float | None = None
    finished: float | None = None
    size: int | None = None
    holder: Holder | None = None
    claimed_since: float | None = None
    error: str = ""  # first line of the error, or why a result is unusable
    log: str = ""
    error_file: str = ""
    raised_at: Origin | None = None  # where the error was raised
    stamp: str | None = None  # its result's stamp when read (to delete it only if unchanged)
    failed_at: float | None = None  # when its failure was recorded (the store's clock)
    old_failure: bool = False  # failed, and a task of its name succeeded after that

    @property
    def key(self) -> str:
        return f"{self.task_name}/{self.task_id}"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state.value
        out["claim"] = self.holder._asdict() if self.holder else None  # its JSON name
        del out["holder"], out["error_file"], out["stamp"]
        return out


@dataclass(frozen=True, slots=True)
class NameSummary:
    """The counts and times of one task name."""

    task_name: str
    counts: dict[TaskState, int] = field(default_factory=dict)
    time: float | None = None  # summed over the tasks that have a result; None if none has
    max_time: float | None = None
    size: int | None = None  # bytes held by its tasks; None if not measured

    def to_json(self) -> dict[str, Any]:
        return {
            **{s.value: self.counts.get(s, 0) for s in STATES},
            "time": None if self.time is None else round(self.time, 6),
            "max_time": None if self.max_time is None else round(self.max_time, 6),
            "size": self.size,
        }


def open_cache(root: str) -> Store:
    """The cache at `root` (a folder or a URL), or UsageError if it is not a taskproc cache."""
    try:
        store = open_store(root)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if isinstance(store, LocalStore) and not os.path.isdir(root):
        raise UsageError(f"{root}: no such folder; give the cache folder of a run (-o CACHE)")
    if not store.is_cache():
        raise UsageError(
            f"{root}: not a taskproc cache (no {MARKER_DIR}/cache.json); "
            "give the folder passed as -o CACHE or Graph(cache_dir)"
        )
    return store


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


_FRAME = re.compile(r'  File "(.*)", line (\d+), in (.*)')


def raised_at(traceback_text: str) -> Origin | None:
    """The innermost frame of the last exception in a formatted traceback; None if it has
    none (a failure recorded without a traceback)."""
    lines = traceback_text.rstrip().splitlines()
    error = first_error_line(traceback_text)
    end = max((i for i, line in enumerate(lines) if line == error), default=len(lines))
    for i in range(end - 1, -1, -1):
        match = _FRAME.fullmatch(lines[i])
        if match is None:
            continue
        nxt = lines[i + 1] if i + 1 < end else ""
        source = nxt.strip() if nxt.startswith("    ") and not _FRAME.fullmatch(nxt) else ""
        if set(source) <= set("^~ "):  # the carets under a line are not a line
            source = ""
        return Origin(match[1], int(match[2]), match[3], source)
    return None


def _describe(found: StoredTask, lookup: Lookup) -> tuple[str, Any]:
    """The task's readable name, upstream tasks named by their stored arguments, and its
    canonical arguments (None if they cannot be read)."""
    text = lookup(f"{found.task_name}/{found.task_id}")
    if text is not None:
        try:
            return describe(found.task_name, text, lookup), json.loads(text)
        except (ValueError, RecursionError):  # damaged, or nested deeper than Python reads
            pass
    return f"{found.task_name}[{found.task_id[:8]}]", None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _entry(
    store: Store, found: StoredTask, here: str, describe_done: bool, lookup: Lookup
) -> TaskEntry:
    alive = found.holder is not None and runner_alive(store, found.holder, here)
    state = state_of(facts_of(found, alive))
    error = found.damage and f"unreadable result: {found.damage}"
    origin = None
    if state is TaskState.FAILED:
        text = store.read_error(found.location) or ""
        error, origin = first_error_line(text), raised_at(text)
    # Reading arguments is a good part of a scan: done tasks are described only for `ls`.
    task, args = (
        _describe(found, lookup) if describe_done or state is not TaskState.DONE else ("", None)
    )
    return TaskEntry(
        task_name=found.task_name,
        task_id=found.task_id,
        folder=found.location,
        state=state,
        task=task,
        args=args,
        duration=_float(found.facts.get("duration")),
        finished=_float(found.facts.get("finished")),
        size=found.size,
        holder=found.holder,
        claimed_since=found.claimed_since,
        error=error,
        log=found.log,
        error_file=found.error_file,
        raised_at=origin,
        stamp=found.record.stamp if found.record is not None else None,
    )


def _upstream_cause(key: str, up: TaskEntry | None) -> str | None:
    """Why a task whose upstream task `key` is in state `up` must rerun; None if `up` is done
    (its result may still have changed: the stamps tell). `up` None: not stored at all. An
    upstream task that failed or is running counts too, even with an older result: a runner
    found it had to run again, so its downstream tasks will."""
    if up is None or up.state in (TaskState.INCOMPLETE, TaskState.MISSING):
        return f"upstream {key} has no result"
    if up.state is TaskState.FAILED:
        return f"upstream {key} failed"
    if up.state is TaskState.RUNNING:
        return f"upstream {key} is running"
    if up.state is TaskState.STALE:
        # Name the task where it starts, as far up as it goes.
        return up.error if up.error.startswith("upstream ") else f"upstream {key} is stale"
    return None


def _has_no_result(up: TaskEntry | None) -> bool:
    return up is None or up.state in (TaskState.INCOMPLETE, TaskState.FAILED, TaskState.MISSING)


def _upstream_first(found: Sequence[StoredTask], index: dict[str, int]) -> list[int]:
    """The positions of `found`, each after its stored upstream tasks (iterative depth-first
    post-order: a chain of 100,000 tasks is fine; a cycle, which no run makes, is cut)."""
    order: list[int] = []
    seen = [False] * len(found)
    for start in range(len(found)):
        if seen[start]:
            continue
        seen[start] = True
        path = [(start, iter(found[start].upstream or ()))]
        while path:
            i, ups = path[-1]
            for key in ups:
                j = index.get(key)
                if j is not None and not seen[j]:
                    seen[j] = True
                    path.append((j, iter(found[j].upstream or ())))
                    break
            else:
                path.pop()
                order.append(i)
    return order


def _with_staleness(
    found: list[StoredTask], entries: list[TaskEntry], lookup: Lookup
) -> list[TaskEntry]:
    """`entries` with the done ones that must rerun marked stale, following the whole upstream
    graph: an upstream task, however far up, that has no result, failed, is running or is
    stale (the first cause named); or upstream results that changed since it ran (the
    model's freshness rule, `stale_reason`)."""
    index = {e.key: i for i, e in enumerate(entries)}
    out = list(entries)
    for i in _upstream_first(found, index):
        f, entry = found[i], out[i]
        if entry.state is not TaskState.DONE or f.upstream is None or f.record is None:
            continue
        if f.record.code_id == INPUT_CODE:  # an input file: its record counts its files, which
            continue  # only a plan looks at (the store alone cannot tell whether they changed)
        # A result computed while tolerated upstream tasks (`allow_failed`) had failed stays
        # fresh while the same ones have no result: the run retries them, and if they fail
        # again it keeps this result (their missing stamps are part of its record's digest).
        tolerant = computed_with_failures(f.record)
        stamps: list[tuple[str, str | None]] = []
        cause = None
        for key in f.upstream:
            j = index.get(key)
            up = None if j is None else out[j]
            cause = _upstream_cause(key, up)
            if cause is not None and tolerant and _has_no_result(up):
                cause = None
                stamps.append((key, None))
                continue
            if cause is not None:
                break
            record = found[j].record if j is not None else None
            stamps.append((key, record.stamp if record else ""))
        if cause is None:
            reason = stale_reason(f.record, f.record.version, stamps_digest(stamps), None)
            cause = None if reason is None else reason.value
        if cause is not None:
            out[i] = _stale(entry, f, cause, lookup)
    return out


def _stale(entry: TaskEntry, found: StoredTask, why: str, lookup: Lookup) -> TaskEntry:
    task, args = (entry.task, entry.args) if entry.task else _describe(found, lookup)
    return replace(entry, state=TaskState.STALE, error=why, task=task, args=args)


def scan(
    store: Store,
    names: Sequence[str] | None = None,
    *,
    with_size: bool = False,
    describe_done: bool | None = None,
) -> list[TaskEntry]:
    """Every stored task of the given task names (default: all), with its state; with
    `with_size`, the bytes each holds. Tasks that are not done are described by their
    arguments; done ones too with `describe_done` (default: `with_size`, as `ls` wants)."""
    here = hostname()
    wanted = list(names) if names is not None else store.task_names()
    found = store.scan(wanted, with_size=with_size)
    describe = with_size if describe_done is None else describe_done
    lookup = memoized(args_reader(store))  # upstream tasks shared by many are read once
    entries = [_entry(store, f, here, describe, lookup) for f in found]
    # Staleness follows the whole upstream graph: the task names upstream are read too.
    scanned, new = set(wanted), found
    while more := sorted(_upstream_names(new) - scanned):
        scanned.update(more)
        new = store.scan(more)
        found = [*found, *new]
        entries += [_entry(store, f, here, False, lookup) for f in new]
    judged = list(_with_failure_times(found, _with_staleness(found, entries, lookup)))
    if names is None:
        return judged
    keep = set(wanted)
    return [e for e in judged if e.task_name in keep]


def _upstream_names(found: Iterable[StoredTask]) -> set[str]:
    return {key.partition("/")[0] for f in found for key in f.upstream or ()}


def _with_failure_times(
    found: list[StoredTask], entries: Iterable[TaskEntry]
) -> Iterator[TaskEntry]:
    """Failed entries with when they failed, and whether that is old: a task of the same name
    wrote a result in a run that started after the failure (the typo in one task's arguments
    that the next run fixed). A sibling that finished later in the same run does not make a
    failure old. The run's start is its runner's clock, the failure's time the store's (a file
    time); results without a recorded run start (older caches) count from when they were
    written."""
    last_success: dict[str, float] = {}
    for f in found:
        if f.record is not None and f.result_time is not None:
            since = _run_started(f)
            last_success[f.task_name] = max(since, last_success.get(f.task_name, 0.0))
    for f, entry in zip(found, entries, strict=True):
        if entry.state is TaskState.FAILED and f.error_time is not None:
            old = f.error_time < last_success.get(f.task_name, f.error_time)
            entry = replace(entry, failed_at=f.error_time, old_failure=old)
        yield entry


def _run_started(found: StoredTask) -> float:
    """When the run that wrote `found`'s result started (see `_with_failure_times`)."""
    started = found.facts.get("run_started")
    if isinstance(started, (int, float)) and started > 0:
        return float(started)
    return found.result_time or 0.0


def summarize(entries: Iterable[TaskEntry]) -> dict[str, NameSummary]:
    """Counts and times per task name."""
    counts: dict[str, dict[TaskState, int]] = {}
    times: dict[str, list[float]] = {}
    sizes: dict[str, int | None] = {}
    for e in entries:
        c = counts.setdefault(e.task_name, {})
        c[e.state] = c.get(e.state, 0) + 1
        if e.duration is not None and e.state in (TaskState.DONE, TaskState.STALE):
            times.setdefault(e.task_name, []).append(e.duration)
        if e.size is not None:
            sizes[e.task_name] = (sizes.get(e.task_name) or 0) + e.size
    out = {}
    for name, c in counts.items():
        t = times.get(name)
        size = sizes.get(name)
        out[name] = NameSummary(name, c, sum(t) if t else None, max(t) if t else None, size)
    return out


def total_size(entries: Iterable[TaskEntry]) -> int | None:
    """Bytes held by the given tasks; None if they were not measured."""
    sizes = [e.size for e in entries if e.size is not None]
    return sum(sizes) if sizes else None


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
    known = store.task_names()
    names: dict[str, None] = {}
    ids: dict[tuple[str, str], None] = {}
    for pattern in patterns:
        name, _, id_prefix = pattern.partition("/")
        matched = [n for n in known if fnmatch.fnmatchcase(n, name)]
        if not matched:
            hint = ", ".join(known[:8]) + (" ..." if len(known) > 8 else "")
            raise UsageError(
                f"no task named {name!r} in {store.root}{did_you_mean(name, known)} "
                f"(task names: {hint or 'none'}); see 'taskproc ls CACHE'"
            )
        if not id_prefix:
            names.update(dict.fromkeys(matched))
            continue
        for n in matched:
            ids[(n, _resolve_id(store, n, id_prefix))] = None
    return Selection(tuple(names), tuple(ids))


def _resolve_id(store: Store, name: str, prefix: str) -> str:
    found = [i for i in store.task_ids(name) or () if i.startswith(prefix)]
    if len(found) != 1:
        what = "no task" if not found else f"{len(found)} tasks"
        raise UsageError(
            f"{name}/{prefix}: {what} with this id; give a unique id prefix "
            f"(see 'taskproc ls CACHE {name}')"
        )
    return found[0]
