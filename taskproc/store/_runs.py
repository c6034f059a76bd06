"""The last run to finish on a store, kept for people (``taskproc status``): its wall time and
what it did. A meta entry, ``last_run.json``; several runners on one store: the last to
finish wins."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from taskproc.store._contract import Store

LAST_RUN = "last_run.json"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run of a graph on the store: its wall time from start to end (each by the clock
    of the runner's host), and what it did."""

    started: float
    finished: float
    host: str
    pid: int
    ran: int  # tasks it ran to a result
    failed: int  # tasks that failed

    @property
    def wall_time(self) -> float:
        return max(0.0, self.finished - self.started)

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "finished": self.finished,
            "wall_time": round(self.wall_time, 6),
            "host": self.host,
            "pid": self.pid,
            "ran": self.ran,
            "failed": self.failed,
        }

    @classmethod
    def from_json(cls, data: Any) -> RunSummary | None:
        """The summary in `data`; None if it is not one (a file of another version)."""
        try:
            return cls(
                float(data["started"]),
                float(data["finished"]),
                str(data["host"]),
                int(data["pid"]),
                int(data["ran"]),
                int(data["failed"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def write_last_run(store: Store, summary: RunSummary) -> None:
    """Keep `summary` as the last run, unless the one kept finished later. Raises OSError if
    it cannot be written (callers may ignore it: it only serves people)."""
    kept = read_last_run(store)
    if kept is not None and kept.finished > summary.finished:
        return  # another runner finished later
    store.write_meta(LAST_RUN, json.dumps(summary.to_json()).encode())


def read_last_run(store: Store) -> RunSummary | None:
    """The last run kept by `write_last_run`; None if there is none (or it is unreadable)."""
    data = store.read_meta(LAST_RUN)
    if data is None:
        return None
    try:
        return RunSummary.from_json(json.loads(data))
    except ValueError:
        return None
