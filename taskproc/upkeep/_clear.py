"""``taskproc clear CACHE --failed``: remove the failed tasks, as gc removes tasks.

A failed task is removed whole (its error record, its captured output and whatever partial
files it left) through its claim (`remove_task` of gc), so that a runner that took it up
again since the cache was scanned keeps it: a task running now is held, and one that succeeded
meanwhile has another result. A task that failed again meanwhile is still a failure and goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from taskproc.run import TaskState
from taskproc.store import Store, new_runner
from taskproc.upkeep._gc import remove_task
from taskproc.views import TaskEntry


@dataclass(frozen=True, slots=True)
class ClearedFailures:
    """The outcome of `clear_failed`."""

    removed: tuple[TaskEntry, ...]  # each with the bytes it freed as its size
    kept: tuple[TaskEntry, ...]  # taken up by a runner since they were scanned: left alone


def clear_failed(store: Store, entries: Sequence[TaskEntry]) -> ClearedFailures:
    """Remove the failed tasks among `entries` (from `views.scan` of `store`)."""
    me = new_runner()
    removed, kept = [], []
    for e in entries:
        if e.state is not TaskState.FAILED:
            continue
        freed = remove_task(store, e.folder, e.holder, e.stamp, me)
        if freed is None:
            kept.append(e)
        else:
            removed.append(replace(e, size=freed))
    return ClearedFailures(tuple(removed), tuple(kept))
