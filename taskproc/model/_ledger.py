"""`Ledger`: what one run knows of its tasks, kept apart from the task objects.

A run (or a view that plans one) owns one ledger and passes it by hand: to the plan, which
notes the stamp of every fresh result; to the round, which notes the stamps of new results,
the failures, and the results it keeps in memory for downstream tasks. The task objects keep
only their identity and how they were built, so a view (``why``, ``--dry-run``, ``status``)
planning on a throwaway ledger changes nothing a later `get_result` sees.

User code reads the ledger without naming it: ``self.up.get_result()`` inside ``run_task``
looks in the ledger of the run that is executing the task (a `ContextVar` set around each
task's execution, `Ledger.active`), so a result computed in this process is not loaded again,
and a tolerated upstream failure (`allow_failed`) is seen as a value. Outside a run there is no
ledger, and `get_result` reads the store.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskproc.errors import FailedTaskError
    from taskproc.model._inputfile import Scan
    from taskproc.model._task import TaskBase

# The ledger of the run executing the calling code. The run's hot path sets and resets it
# directly (a task's execution, `get_result`): a context manager costs calls there.
ACTIVE_LEDGER: contextvars.ContextVar[Ledger | None] = contextvars.ContextVar(
    "taskproc_ledger", default=None
)


class Ledger:
    """The facts of one run about its tasks (see the module docstring)."""

    __slots__ = ("stamps", "failures", "values", "keep", "scans")

    def __init__(self) -> None:
        # The stamp of each task's result as this run knows it: fresh ones found by the plan,
        # new ones written by the run.
        self.stamps: dict[TaskBase, str] = {}
        # Tasks that failed in this run (or were not run because an upstream task failed),
        # for the downstream tasks that tolerate it.
        self.failures: dict[TaskBase, FailedTaskError] = {}
        # Results kept in memory while tasks of this run still need them.
        self.values: dict[TaskBase, Any] = {}
        # Tasks whose results are kept in `values` once loaded (their users are still to run).
        self.keep: set[TaskBase] = set()
        # Input files (`InputFile`) whose record this run must write, as the plan found them
        # (their files' facts and digests, or why they cannot be read).
        self.scans: dict[TaskBase, Scan] = {}

    def __repr__(self) -> str:
        return (
            f"<Ledger: {len(self.stamps)} stamps, {len(self.failures)} failures, "
            f"{len(self.values)} values kept>"
        )

    def active(self) -> _Active:
        """This ledger as the one `get_result` reads, in this thread, for the block."""
        return _Active(self)

    def forget(self, task: TaskBase) -> None:
        """Drop `task`'s result from memory (its last user in this run has finished)."""
        self.keep.discard(task)
        self.values.pop(task, None)

    def forget_all(self, tasks: list[TaskBase]) -> None:
        """`forget` each of `tasks` (the end of a round: one call, not one a task)."""
        self.keep.difference_update(tasks)
        values = self.values
        for task in tasks:
            values.pop(task, None)


class _Active:
    """`Ledger.active`'s block (a class rather than a generator: it is entered once a task)."""

    __slots__ = ("_ledger", "_token")

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __enter__(self) -> Ledger:
        self._token = ACTIVE_LEDGER.set(self._ledger)
        return self._ledger

    def __exit__(self, *exc: object) -> None:
        ACTIVE_LEDGER.reset(self._token)


def active_ledger() -> Ledger | None:
    """The ledger of the run executing the calling code, if any."""
    return ACTIVE_LEDGER.get()
