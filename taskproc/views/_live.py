"""Runs as their live records tell them (`run.LiveRecord`): in progress, and the history.

Reading them costs a listing and one small document per run, whatever the size of the cache:
the dashboard polls them every second, `status` reads them once. A run is in progress while
its record is under ``runs/`` and its runner is alive (its heartbeat exists and, on this host,
its process); a record whose runner is gone is a run that was killed (``alive`` false).

The ETA of a run comes from the task times the cache records (the mean duration of each task
name's stored results, from a scan): the work left (waiting tasks a mean each, running ones
half a mean) over how many tasks the run keeps busy side by side (the task time it finished
per second of wall time so far; at most the tasks it started). A task name with no recorded
time yet falls back to the run's own pace (its elapsed time per finished task).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from taskproc.run import HISTORY_PREFIX, LIVE_PREFIX, TaskState
from taskproc.store import Holder, Store, hostname, runner_alive
from taskproc.views._scan import TaskEntry

HISTORY_SHOWN = 50  # ended runs the dashboard lists, the newest


@dataclass(frozen=True, slots=True)
class NameProgress:
    """What a run planned for one task name and what became of it."""

    task_name: str
    to_run: int = 0
    cached: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    elsewhere: int = 0  # finished by another runner meanwhile

    @property
    def left(self) -> int:
        """Tasks planned that have not finished (running or waiting)."""
        return max(0, self.to_run - self.done - self.failed - self.elsewhere)

    @property
    def waiting(self) -> int:
        """Tasks planned and not started yet: for upstream tasks, a limit, a worker, or
        another runner that holds them."""
        return max(0, self.left - self.running)

    def to_json(self) -> dict[str, int]:
        return {
            "to_run": self.to_run,
            "cached": self.cached,
            "done": self.done,
            "failed": self.failed,
            "running": self.running,
            "waiting": self.waiting,
            "elsewhere": self.elsewhere,
            "left": self.left,
        }


@dataclass(frozen=True, slots=True)
class LiveRun:
    """One run from its record: in progress (``finished`` None), killed, or ended."""

    key: str
    runner: str
    host: str
    pid: int
    started: float
    updated: float
    finished: float | None
    alive: bool  # its runner is alive (always False once finished)
    names: tuple[NameProgress, ...]
    eta: float | None = None  # seconds left, from `with_eta`

    def total(self, field: str) -> int:
        return sum(getattr(n, field) for n in self.names)

    @property
    def in_progress(self) -> bool:
        return self.finished is None and self.alive

    def to_json(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else self.updated
        return {
            "runner": self.runner,
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "updated": self.updated,
            "finished": self.finished,
            "in_progress": self.in_progress,
            "wall_time": round(max(0.0, end - self.started), 3),
            "total": self.total("to_run"),
            **{
                f: self.total(f)
                for f in ("cached", "done", "failed", "running", "waiting", "elsewhere", "left")
            },
            "eta": None if self.eta is None else round(self.eta, 1),
            "task_names": {n.task_name: n.to_json() for n in self.names},
        }


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def parse_run(key: str, data: bytes, alive: bool | None = None) -> LiveRun | None:
    """The run in the document `data` kept under `key`; None if it is not one. `alive`
    None: judged later (`read_runs`)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("task_names"), dict):
        return None
    started, updated = _num(doc.get("started")), _num(doc.get("updated"))
    if started is None or updated is None:
        return None
    names = tuple(
        NameProgress(
            str(name),
            **{f: _int(c.get(f)) for f in ("to_run", "cached", "done", "failed", "elsewhere")},
            running=max(0, _int(c.get("running"))),
        )
        for name, c in sorted(doc["task_names"].items())
        if isinstance(c, dict)
    )
    return LiveRun(
        key=key,
        runner=str(doc.get("runner", "")),
        host=str(doc.get("host", "")),
        pid=_int(doc.get("pid")),
        started=started,
        updated=updated,
        finished=_num(doc.get("finished")),
        alive=bool(alive),
        names=names,
    )


def read_runs(store: Store) -> list[LiveRun]:
    """The runs that left a live record: in progress, or killed (their runner is gone),
    oldest first."""
    here = hostname()
    out = []
    for key in store.list_meta(LIVE_PREFIX):
        data = store.read_meta(key)
        run = parse_run(key, data) if data is not None else None
        if run is None:
            continue
        alive = runner_alive(store, Holder(run.runner, run.host, run.pid), here)
        out.append(replace(run, alive=alive))
    return sorted(out, key=lambda r: r.started)


def read_history(store: Store, limit: int = HISTORY_SHOWN) -> list[LiveRun]:
    """The last `limit` runs that ended, newest first."""
    out = []
    for key in reversed(store.list_meta(HISTORY_PREFIX)[-limit:]):
        data = store.read_meta(key)
        run = parse_run(key, data, alive=False) if data is not None else None
        if run is not None:
            out.append(run)
    return out


def mean_times(entries: Iterable[TaskEntry]) -> dict[str, float]:
    """Per task name, the mean time of its tasks that have a result (as the cache records)."""
    sums: dict[str, list[float]] = {}
    for e in entries:
        if e.duration is not None and e.state in (TaskState.DONE, TaskState.STALE):
            s = sums.setdefault(e.task_name, [0.0, 0.0])
            s[0] += e.duration
            s[1] += 1
    return {name: total / n for name, (total, n) in sums.items()}


def with_eta(run: LiveRun, means: Mapping[str, float]) -> LiveRun:
    """`run` with its ETA (see the module docstring); None when it cannot be told yet."""
    if not run.in_progress:
        return run
    work, done, unknown = 0.0, 0.0, False
    for n in run.names:
        mean = means.get(n.task_name)
        if mean is not None:
            done += (n.done + n.failed) * mean
        if not n.left:
            continue
        if mean is None:
            unknown = True
        else:
            work += n.waiting * mean + n.running * mean / 2
    elapsed = max(0.0, run.updated - run.started)
    eta: float | None
    if not unknown:
        # Tasks started are submitted, some queued in the executor: how many run side by side
        # is what the run has done so far, in task time, per second of its wall time.
        started = max(1, run.total("running"))
        side_by_side = done / elapsed if done and elapsed else started
        eta = work / min(max(1.0, side_by_side), started)
    else:
        finished = run.total("done") + run.total("failed") + run.total("elsewhere")
        eta = elapsed * run.total("left") / finished if finished else None
    return replace(run, eta=eta)
