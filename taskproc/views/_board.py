"""What ``taskproc serve`` shows, read from the store by one thread and shared by every page.

Two sources, of very different cost::

    live records (runs/, history/) ... a listing and a small document per run: read at most
                                       4 times a second, whoever asks (`Board.live`)
    the scan of every stored task .... states, sizes, times, failures, upstream links: about
                                       50 µs of CPU a task (5 s for 100,000), so made by one
                                       background thread (`Board`), never by a request, and
                                       at most 1/SCAN_DUTY of that thread's time: after a
                                       scan that took S seconds of CPU, the next waits 25 S
                                       (50 S, and 3 s at least, while a run is in progress:
                                       its counts are live anyway, and the run comes first);
                                       at the lowest scheduling priority

A scan starts when a page is looking (a request in the last `IDLE_AFTER` seconds) and either
the live records changed (a run started, progressed or ended) or `REFRESH` seconds passed
(changes made without a run: ``clear``, ``gc``). Before the first scan ends, a listing of the
task names and their ids (one directory listing per name) already gives the counts per name,
so a page on a large cache shows something at once.

Everything a request reads is an immutable `Snapshot` swapped in whole: requests never wait
for a scan, and never see half of one.

The views' `scan` reads each task's upstream links to decide staleness, but keeps only the
states; the board needs the links too (a task page's upstream and downstream tasks, the graph
by task name), so it hands `scan` a `_Tee`, the store with a `scan` that keeps what it read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from taskproc.model import args_reader, describe, memoized
from taskproc.run import TaskState
from taskproc.store import Store, StoredTask, read_last_run
from taskproc.views._live import LiveRun, mean_times, read_history, read_runs, with_eta
from taskproc.views._report import status_json
from taskproc.views._scan import STATES, TaskEntry, scan, summarize

SCAN_DUTY = 25  # a scan of S seconds of CPU is followed by at least 25 S without one (4%)
MIN_GAP = 1.0  # seconds between two scans, however cheap
# While a run is in progress its counts come from its live record; the tables can wait more,
# and the run keeps the CPU and the disk (a scan reads the folders the run writes).
LIVE_DUTY = 50
LIVE_MIN_GAP = 3.0
REFRESH = 60.0  # rescan this often without any run, for changes made without one
IDLE_AFTER = 60.0  # no request for this long: no scans (nobody is looking)
LIVE_TTL = 0.25  # live records are read at most this often, for every page together
PAGE = 50  # tasks per page of a task name
FAILURES_SHOWN = 100
# Failed first, then what needs looking at, then the rest: a task name's tasks in this order.
ORDER = {
    TaskState.FAILED: 0,
    TaskState.RUNNING: 1,
    TaskState.INCOMPLETE: 2,
    TaskState.STALE: 3,
    TaskState.DONE: 4,
}


class _Tee:
    """The store, whose `scan` keeps what it found (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.found: list[StoredTask] = []

    def scan(self, names: Iterable[str], *, with_size: bool = False) -> list[StoredTask]:
        found = self._store.scan(names, with_size=with_size)
        self.found += found
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One scan of the store, with what requests need of it precomputed."""

    generation: int
    made: float  # when the scan started (this machine's clock)
    seconds: float  # the scan's CPU time
    complete: bool  # False: only the listing of names and ids (no states yet)
    entries: tuple[TaskEntry, ...] = ()
    index: dict[str, int] = field(default_factory=dict)  # key -> position in entries
    by_name: dict[str, tuple[int, ...]] = field(default_factory=dict)  # failures first
    upstream: dict[str, tuple[str, ...]] = field(default_factory=dict)
    downstream: dict[str, tuple[str, ...]] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    overview: bytes = b"{}"  # the JSON of `overview` (names, graph, failures)


def _downstream(upstream: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    down: dict[str, list[str]] = {}
    for key, ups in upstream.items():
        for up in ups:
            down.setdefault(up, []).append(key)
    return {k: tuple(sorted(v)) for k, v in down.items()}


def _layers(names: Sequence[str], edges: set[tuple[str, str]]) -> dict[str, int]:
    """Each task name's column in the graph: the longest path of names upstream of it."""
    ups: dict[str, set[str]] = {n: set() for n in names}
    for up, down in edges:
        if up != down and down in ups and up in ups:
            ups[down].add(up)
    layer: dict[str, int] = {}
    for start in names:  # iterative: a chain of many task names is fine
        stack = [start]
        while stack:
            name = stack[-1]
            if name in layer:
                stack.pop()
                continue
            todo = [u for u in ups[name] if u not in layer and u not in stack]
            if todo:
                stack.extend(todo)
                continue
            layer[name] = 1 + max((layer.get(u, 0) for u in ups[name]), default=-1)
            stack.pop()
    return layer


def failure_json(e: TaskEntry) -> dict[str, Any]:
    return {
        "key": e.key,
        "task": e.task,
        "error": e.error,
        "raised_at": str(e.raised_at) if e.raised_at else "",
        "folder": e.folder,
        "failed_at": e.failed_at,
        "old": e.old_failure,
    }


def overview(
    entries: Sequence[TaskEntry], upstream: dict[str, tuple[str, ...]], complete: bool
) -> dict[str, Any]:
    """The part of the page's document that changes only with a scan."""
    summary = summarize(entries)
    edges = {
        (up.partition("/")[0], key.partition("/")[0]) for key, ups in upstream.items() for up in ups
    }
    names = sorted(summary)
    layers = _layers(names, edges)
    failed = sorted(
        (e for e in entries if e.state is TaskState.FAILED),
        key=lambda e: (e.old_failure, -(e.failed_at or 0.0), e.key),
    )
    return {
        "complete": complete,
        "tasks": len(entries),
        "totals": {s.value: sum(n.counts.get(s, 0) for n in summary.values()) for s in STATES},
        "size": sum(e.size or 0 for e in entries),
        "names": [
            {"name": n, "layer": layers.get(n, 0), "tasks": sum(summary[n].counts.values())}
            | summary[n].to_json()
            for n in names
        ],
        "edges": sorted([up, down] for up, down in edges if up != down),
        "failures": [failure_json(e) for e in failed[:FAILURES_SHOWN]],
        "failure_count": len(failed),
    }


def listing(store: Store) -> list[TaskEntry]:
    """Every stored task as a name and an id, state unknown (shown as incomplete until the
    scan): one directory listing per task name."""
    out = []
    for name in store.task_names():
        for task_id in sorted(store.task_ids(name) or ()):
            if not task_id.startswith("."):
                loc = store.locate(name, task_id)
                out.append(TaskEntry(name, task_id, loc, TaskState.INCOMPLETE))
    return out


def make_snapshot(store: Store, generation: int, *, complete: bool = True) -> Snapshot:
    """A scan of `store` (or only its listing, without `complete`)."""
    made, cpu = time.time(), time.thread_time()
    upstream: dict[str, tuple[str, ...]] = {}
    if complete:
        tee = _Tee(store)
        entries = scan(cast(Store, tee), with_size=True, describe_done=False)
        # Known for tasks with a result only: the store reads the links of those.
        upstream = {
            f"{f.task_name}/{f.task_id}": f.upstream for f in tee.found if f.upstream is not None
        }
    else:
        entries = listing(store)
    index = {e.key: i for i, e in enumerate(entries)}
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        groups.setdefault(e.task_name, []).append(i)
    by_name = {
        name: tuple(sorted(ids, key=lambda i: (ORDER.get(entries[i].state, 5), entries[i].task_id)))
        for name, ids in groups.items()
    }
    doc = overview(entries, upstream, complete)
    return Snapshot(
        generation=generation,
        made=made,
        seconds=time.thread_time() - cpu,
        complete=complete,
        entries=tuple(entries),
        index=index,
        by_name=by_name,
        upstream=upstream,
        downstream=_downstream(upstream),
        means=mean_times(entries),
        overview=json.dumps(doc, separators=(",", ":")).encode(),
    )


class Board:
    """The shared view of one store: a snapshot made by one scanning thread, and the live
    records read at most every `LIVE_TTL` seconds (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._snapshot = Snapshot(0, 0.0, 0.0, False)
        self._lock = threading.Lock()
        self._live: tuple[float, list[LiveRun], bytes] = (0.0, [], b"")
        self._seen = time.monotonic()  # the last request
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._scanned = threading.Event()  # the first complete scan is in
        self._thread = threading.Thread(target=self._loop, name="taskproc-scan", daemon=True)
        self.scans = 0

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def looked_at(self) -> None:
        """A page asked for something: scans go on (and start again after an idle spell)."""
        idle = time.monotonic() - self._seen > IDLE_AFTER
        self._seen = time.monotonic()
        if idle:
            self._wake.set()

    # -- live records ----------------------------------------------------------------------

    def live(self) -> tuple[list[LiveRun], bytes]:
        """The runs that left a live record, with their ETA, and their JSON (with the history);
        read at most every LIVE_TTL seconds, whoever asks."""
        with self._lock:
            at, runs, data = self._live
            if time.monotonic() - at < LIVE_TTL and data:
                return runs, data
            means = self._snapshot.means
            runs = [with_eta(run, means) for run in read_runs(self.store)]
            history = read_history(self.store)
            doc = {
                "runs": [r.to_json() for r in runs],
                "history": [r.to_json() for r in history],
            }
            data = json.dumps(doc, separators=(",", ":")).encode()
            if data != self._live[2]:
                self._wake.set()  # a run started, moved or ended: time to look again
            self._live = (time.monotonic(), runs, data)
            return runs, data

    def document(self) -> tuple[bytes, str]:
        """The page's document (overview, runs, history, scan facts) and its ETag."""
        snap = self._snapshot
        _, live = self.live()
        scan_facts = json.dumps(
            {
                "cache": self.store.root,
                "generation": snap.generation,
                "made": snap.made,
                "seconds": round(snap.seconds, 3),
            }
        ).encode()
        body = b'{"scan":%s,"overview":%s,"live":%s}' % (scan_facts, snap.overview, live)
        etag = f'"{snap.generation}-{zlib.crc32(live):08x}"'
        return body, etag

    def status(self) -> dict[str, Any]:
        """What ``taskproc status CACHE --json`` prints, from the last scan and the live
        records now (waiting for the first scan, if it is not in yet)."""
        self._scanned.wait(300)
        snap = self._snapshot
        runs, _ = self.live()
        return status_json(self.store.root, list(snap.entries), read_last_run(self.store), runs)

    # -- scanning --------------------------------------------------------------------------

    def _loop(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # the lowest priority, on Linux
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        generation = 0
        last, cost = -REFRESH, 0.0  # when the last scan ended (monotonic), its CPU seconds
        while not self._stop.is_set():
            now = time.monotonic()
            if now - self._seen > IDLE_AFTER:
                self._wake.wait()  # nobody is looking: until somebody is
                self._wake.clear()
                continue
            # The gap as it stands now: a run may have started since the last scan.
            wait = last + self._gap(cost) - now
            if wait <= 0 and not self._wake.is_set():
                wait = last + REFRESH - now  # nothing changed: a scan after REFRESH anyway
            if wait > 0:
                # Looked at again at least twice a second (a run that starts lengthens it).
                (self._stop if self._wake.is_set() else self._wake).wait(min(wait, 0.5))
                continue
            self._wake.clear()
            generation += 1
            if generation == 1:  # the counts per name at once, the states after the scan
                self._snapshot = make_snapshot(self.store, generation, complete=False)
                generation += 1
            snap = make_snapshot(self.store, generation)
            self._snapshot = snap
            self._scanned.set()
            self.scans += 1
            last, cost = time.monotonic(), snap.seconds

    def _gap(self, seconds: float) -> float:
        """How long to wait after a scan that took `seconds` of CPU."""
        if any(run.in_progress for run in self._live[1]):
            return max(LIVE_MIN_GAP, LIVE_DUTY * seconds)
        return max(MIN_GAP, SCAN_DUTY * seconds)

    # -- one task name, one task -------------------------------------------------------------

    def tasks(self, name: str, page: int, state: str | None) -> dict[str, Any]:
        """A page of `name`'s tasks, failures first; only those in `state` if given."""
        snap = self._snapshot
        ids = snap.by_name.get(name, ())
        if state:
            ids = tuple(i for i in ids if snap.entries[i].state.value == state)
        shown = ids[page * PAGE : (page + 1) * PAGE]
        lookup = memoized(args_reader(self.store))
        rows = []
        for i in shown:
            e = snap.entries[i]
            rows.append(
                {
                    "key": e.key,
                    "id": e.task_id,
                    "state": e.state.value,
                    "old": e.old_failure,
                    "task": e.task or _describe(e.key, lookup),
                    "duration": e.duration,
                    "size": e.size,
                    "error": e.error,
                }
            )
        return {
            "name": name,
            "page": page,
            "pages": max(1, -(-len(ids) // PAGE)),
            "count": len(ids),
            "rows": rows,
        }

    def task(self, key: str) -> dict[str, Any] | None:
        """Everything the page shows of one task; None if the last scan did not find it."""
        snap = self._snapshot
        i = snap.index.get(key)
        if i is None:
            return None
        e = snap.entries[i]
        lookup = memoized(args_reader(self.store))
        args_text = lookup(key)
        ups = snap.upstream.get(key, ())
        downs = snap.downstream.get(key, ())
        return {
            "key": key,
            "task_name": e.task_name,
            "task_id": e.task_id,
            "task": _describe(key, lookup, width=None),
            "args": _pretty(args_text),
            "state": e.state.value,
            "old": e.old_failure,
            "why": why_rerun(e, snap.complete),
            "duration": e.duration,
            "finished": e.finished,
            "failed_at": e.failed_at,
            "claimed_since": e.claimed_since,
            "claim": None if e.holder is None else {"host": e.holder.host, "pid": e.holder.pid},
            "size": e.size,
            "folder": e.folder,
            "error": e.error,
            "raised_at": str(e.raised_at) if e.raised_at else "",
            "traceback": self.store.read_error(e.folder) if e.state is TaskState.FAILED else None,
            "upstream": [self._link(k, lookup) for k in ups[:200]],
            "upstream_count": len(ups),
            "upstream_known": key in snap.upstream,
            "downstream": [self._link(k, lookup) for k in downs[:200]],
            "downstream_count": len(downs),
        }

    def _link(self, key: str, lookup: Any) -> dict[str, Any]:
        snap = self._snapshot
        i = snap.index.get(key)
        state = snap.entries[i].state.value if i is not None else "missing"
        return {"key": key, "state": state, "task": _describe(key, lookup)}


def _describe(key: str, lookup: Any, width: int | None = 100) -> str:
    name, _, task_id = key.partition("/")
    text = lookup(key)
    if text is not None:
        try:
            return describe(name, text, lookup, width)
        except ValueError:
            pass
    return f"{name}[{task_id[:8]}]"


def _pretty(args_text: str | None) -> str:
    if args_text is None:
        return ""
    try:
        return json.dumps(json.loads(args_text), indent=2, ensure_ascii=False)
    except ValueError:
        return args_text


def why_rerun(e: TaskEntry, complete: bool) -> str:
    """Why a run would run the task, as far as the store alone can tell."""
    if not complete:
        return "not scanned yet"
    if e.state is TaskState.FAILED:
        return f"it failed: {e.error}"
    if e.state is TaskState.RUNNING:
        return "a runner is running it now"
    if e.state is TaskState.INCOMPLETE:
        return "it has no result (never finished: interrupted, or its runner died)"
    if e.state is TaskState.STALE:
        return e.error
    return (
        "it would not: its result is fresh as far as the cache tells (a change of its code "
        "shows only with the pipeline file: taskproc why FILE.py -o CACHE)"
    )


def etag_of(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=8).hexdigest() + '"'
