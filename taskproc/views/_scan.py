"""Task states read from a store alone, for ``taskproc status``, ``ls`` and ``clear``.

These views never import the pipeline: they read the store only, so they work from another
shell or machine while a run is going on, and after a crash. The state of one stored task is
the first rule that applies:

    running     its claim names a live runner: the runner's heartbeat exists and, on this
                host, its pid is alive (on another host the heartbeat alone counts)
    failed      a failure is recorded, and no result written after it
    done        a result whose record is readable
    stale       done, but an upstream result (found through its links) changed since, or is
                gone (the freshness rule of the run, without the code, which needs the file)
    incomplete  none of these: interrupted, killed, or claimed by a runner that died

Source-code changes cannot be seen without the pipeline file: ``taskproc graph`` and
``--dry-run`` import it and show them.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from taskproc.errors import UsageError
from taskproc.model import describe
from taskproc.run import TaskState
from taskproc.run._plan import stale_reason, stamps_digest
from taskproc.store import MARKER_DIR, Claim, LocalStore, Store, StoredTask, hostname, runner_alive

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
    duration: float | None = None
    finished: float | None = None
    size: int | None = None
    claim: Claim | None = None
    claimed_since: float | None = None
    error: str = ""  # first line of the error, or why a result is unusable
    log: str = ""
    error_file: str = ""
    raised_at: Origin | None = None  # where the error was raised

    @property
    def key(self) -> str:
        return f"{self.task_name}/{self.task_id}"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state.value
        out["claim"] = asdict(self.claim) if self.claim else None
        del out["error_file"]
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


def open_cache(root: str) -> LocalStore:
    """The cache folder at `root`, or UsageError if it is not a taskproc cache."""
    store = LocalStore(os.path.abspath(root))
    if not os.path.isdir(root):
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


def _describe(store: Store, found: StoredTask) -> str:
    args = store.read_args(found.location)
    if args is not None:
        try:
            return describe(found.task_name, args)
        except (ValueError, AttributeError):
            pass
    return f"{found.task_name}[{found.task_id[:8]}]"


def state_of(found: StoredTask, alive: bool) -> TaskState:
    """The state of a stored task before staleness (see the module docstring); `alive`: its
    claim's runner is alive."""
    if found.claim is not None and alive:
        return TaskState.RUNNING
    error_time = found.error_time
    if error_time is not None and (
        found.record is None or (found.result_time or 0.0) <= error_time
    ):
        return TaskState.FAILED
    if found.record is not None:
        return TaskState.DONE
    return TaskState.INCOMPLETE


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _entry(store: Store, found: StoredTask, here: str, describe_done: bool) -> TaskEntry:
    alive = found.claim is not None and runner_alive(store, found.claim, here)
    state = state_of(found, alive)
    error = found.damage and f"unreadable result: {found.damage}"
    origin = None
    if state is TaskState.FAILED:
        text = store.read_error(found.location) or ""
        error, origin = first_error_line(text), raised_at(text)
    return TaskEntry(
        task_name=found.task_name,
        task_id=found.task_id,
        folder=found.location,
        state=state,
        # Reading arguments is a good part of a scan: done tasks are described only for `ls`.
        task=_describe(store, found) if describe_done or state is not TaskState.DONE else "",
        duration=_float(found.facts.get("duration")),
        finished=_float(found.facts.get("finished")),
        size=found.size,
        claim=found.claim,
        claimed_since=found.claimed_since,
        error=error,
        log=found.log,
        error_file=found.error_file,
        raised_at=origin,
    )


def _with_staleness(
    store: Store, found: list[StoredTask], entries: list[TaskEntry], scanned: set[str]
) -> Iterator[TaskEntry]:
    stamps: dict[str, str | None] = {
        e.key: f.record.stamp if f.record else None for f, e in zip(found, entries, strict=True)
    }

    def stamp_of(key: str) -> str | None:
        if key not in stamps:  # an upstream task of a name that was not scanned
            name, _, task_id = key.partition("/")
            stamps[key] = None if name in scanned else store.read_stamp(name, task_id)
        return stamps[key]

    for f, entry in zip(found, entries, strict=True):
        if entry.state is TaskState.DONE and f.upstream is not None and f.record is not None:
            ups = [(k, stamp_of(k)) for k in f.upstream]
            # An upstream task without a result counts as failed: a result computed while
            # tolerated upstream tasks had failed stays fresh while the same ones have none.
            reason = stale_reason(f.record, f.record.version, stamps_digest(ups), None)
            missing = [k for k, stamp in ups if stamp is None]
            if reason is not None and missing:
                entry = _stale(store, entry, f, f"upstream {missing[0]} has no result")
            elif reason is not None:
                entry = _stale(store, entry, f, reason.value)
        yield entry


def _stale(store: Store, entry: TaskEntry, found: StoredTask, why: str) -> TaskEntry:
    task = entry.task or _describe(store, found)
    return replace(entry, state=TaskState.STALE, error=why, task=task)


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
    scanned = list(names) if names is not None else store.task_names()
    found = store.scan(scanned, with_size=with_size)
    describe = with_size if describe_done is None else describe_done
    entries = [_entry(store, f, here, describe) for f in found]
    return list(_with_staleness(store, found, entries, set(scanned)))


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
    found = [i for i in store.task_ids(name) or () if i.startswith(prefix)]
    if len(found) != 1:
        what = "no task" if not found else f"{len(found)} tasks"
        raise UsageError(
            f"{name}/{prefix}: {what} with this id; give a unique id prefix "
            f"(see 'taskproc ls CACHE {name}')"
        )
    return found[0]
