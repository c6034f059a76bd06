"""A run's live record in its store, for ``taskproc status`` and ``taskproc serve``: a run hook.

While a run goes on, its plan and its counts are a metadata document of the store (not a
file beside the results: so the same code works on a folder and on a bucket)::

    runs/<runner>.json                   while the run goes on: its plan and counts, kept
                                         current at most once a second, when they change
    history/<start ms>-<runner>.json     when it has ended: the same, with its end

Both hold one JSON object (`RECORD_FORMAT`): the runner (id, host, pid), when it started
(and ended), and per task name the tasks it planned (``to_run``, ``cached``) and what became
of them (``done``, ``failed``, ``running``, ``elsewhere``: finished by another runner
meanwhile). What is ``left`` and ``waiting`` follows from these (`views` derives them). A run
whose runner has no heartbeat any more, yet left its ``runs/`` record (killed), is over: the
views say so, and never delete it (they only read).

The hooks are called on the run's own thread and only count; a thread of the hook writes the
record: at once after a change that follows a quiet second, then at most once a second while
changes keep coming (so a task that starts a second after another is seen within a second,
not when the next task finishes). Writing is never a failure of the run: the record only serves
people.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from taskproc.run._hooks import TaskState
from taskproc.store import Holder, Store

RECORD_FORMAT = 1
LIVE_PREFIX = "runs"
HISTORY_PREFIX = "history"
INTERVAL = 1.0  # seconds between two writes of the live record, at most one a second
HISTORY_KEEP = 1000  # runs kept in the history; older ones are deleted when a run ends
COUNTS = ("to_run", "cached", "done", "failed", "running", "elsewhere")


def live_key(runner: str) -> str:
    """The metadata key of a run's live record."""
    return f"{LIVE_PREFIX}/{runner}.json"


def history_key(started: float, runner: str) -> str:
    """The metadata key of an ended run: sorted by start, as the keys are listed."""
    return f"{HISTORY_PREFIX}/{int(started * 1000):014d}-{runner}.json"


class LiveRecord:
    """Keeps the run's live record current in the store (see the module docstring)."""

    def __init__(self, store: Store, me: Holder, started: float) -> None:
        self._store = store
        self._me = me
        self._started = started
        self._counts: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._kick = threading.Event()  # something changed since the last write
        # Whether `_kick` is set, as a plain attribute: the hooks run once a task, and reading
        # it costs less than a call to `Event.is_set`; only the writer clears it.
        self._kicked = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _name(self, task_name: str) -> dict[str, int]:
        """The counts of `task_name`, made under the lock (the writer copies the names)."""
        counts = self._counts.get(task_name)
        if counts is None:
            with self._lock:
                counts = self._counts[task_name] = dict.fromkeys(COUNTS, 0)
        return counts

    # -- the hooks -----------------------------------------------------------------------

    def run_started(self, plan: Mapping[str, tuple[int, int]]) -> None:
        for name, (to_run, cached) in plan.items():
            counts = self._name(name)
            counts["to_run"] += to_run
            counts["cached"] += cached
        self._write_live()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="taskproc-live", daemon=True)
            self._thread.start()

    # The hooks run on the run's one thread, the only one that changes a count (so no count is
    # lost without a lock); the writer copies them, seeing each count before or after a change.

    def task_started(self, task_name: str) -> None:
        (self._counts.get(task_name) or self._name(task_name))["running"] += 1
        if not self._kicked:  # setting an Event takes a lock: once per write will do
            self._kicked = True
            self._kick.set()

    def task_finished(self, task_name: str, state: TaskState) -> None:
        counts = self._counts.get(task_name) or self._name(task_name)
        counts["running"] -= 1
        if state is TaskState.DONE:
            counts["done"] += 1
        elif state is TaskState.FAILED:
            counts["failed"] += 1
        else:  # cached: another runner finished it meanwhile
            counts["elsewhere"] += 1
        if not self._kicked:
            self._kicked = True
            self._kick.set()

    def run_finished(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join()
        finished = time.time()
        data = self._document(finished)
        with contextlib.suppress(OSError):
            self._store.write_meta(history_key(self._started, self._me.runner), data)
        with contextlib.suppress(OSError):
            self._store.delete_meta(live_key(self._me.runner))
        with contextlib.suppress(OSError):
            _prune(self._store)

    # -- writing ---------------------------------------------------------------------------

    def _loop(self) -> None:
        """Write at once after a change, then not again for INTERVAL: a change after a quiet
        spell is seen at once, a stream of changes once a second."""
        while True:
            self._kick.wait()
            if self._stop.is_set():
                return  # `run_finished` writes the last word
            self._kick.clear()
            self._kicked = False  # after the clear: a change from now on sets it again
            self._write_live()
            if self._stop.wait(INTERVAL):
                return

    def _write_live(self) -> None:
        with contextlib.suppress(OSError):
            self._store.write_meta(live_key(self._me.runner), self._document(None))

    def _document(self, finished: float | None) -> bytes:
        with self._lock:
            names = {name: dict(counts) for name, counts in self._counts.items()}
        me = self._me
        doc: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "runner": me.runner,
            "host": me.host,
            "pid": me.pid,
            "started": self._started,
            "updated": time.time(),
            "finished": finished,
            "task_names": names,
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def _prune(store: Store) -> None:
    """Forget the oldest runs of the history past `HISTORY_KEEP`."""
    keys = store.list_meta(HISTORY_PREFIX)
    for key in keys[: max(0, len(keys) - HISTORY_KEEP)]:
        store.delete_meta(key)
