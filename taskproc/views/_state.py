"""The state of a task, decided in one place for every view (``status``, ``ls``, ``graph``,
the dashboard): the first rule that applies to its facts.

    running     a live runner holds its claim
    failed      a failure is recorded, and no result was written after it
    stale       it has a result, which a run would not use (the reason is kept beside)
    done        it has a result a run would use
    incomplete  a run started it (its arguments are recorded, or a dead runner's claim is
                left) and it has no result: interrupted, killed, or its runner died
    missing     nothing of it is stored (only a view of a graph knows such tasks)

What counts as stale comes from the caller: `status` knows only the store (upstream results,
through the links, and the freshness rule without the code); `graph` knows the pipeline too
(the run's plan, code included). On a cache whose code has not changed they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskproc.run import TaskState
from taskproc.store import StoredTask


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What a view knows of one task, for `state_of`."""

    held: bool  # a live runner holds its claim
    has_result: bool  # it has a readable result
    failed: bool  # a failure is recorded, and no result was written after it
    started: bool  # a run began it (arguments recorded, or a claim left)
    stale: str = ""  # why its result would not be used; "" if it would be (or it has none)


def state_of(facts: TaskFacts) -> TaskState:
    """The state of a task with these facts (see the module docstring)."""
    if facts.held:
        return TaskState.RUNNING
    if facts.failed:
        return TaskState.FAILED
    if facts.has_result:
        return TaskState.STALE if facts.stale else TaskState.DONE
    if facts.started:
        return TaskState.INCOMPLETE
    return TaskState.MISSING


def facts_of(found: StoredTask | None, alive: bool, stale: str = "") -> TaskFacts:
    """The facts of a stored task (`alive`: its claim's runner is alive); of a task not in
    the store at all if `found` is None."""
    if found is None:
        return TaskFacts(False, False, False, False)
    has_result = found.record is not None
    failed = found.error_time is not None and (
        not has_result or (found.result_time or 0.0) <= found.error_time
    )
    started = found.started or found.holder is not None or bool(found.damage)
    return TaskFacts(
        held=found.holder is not None and alive,
        has_result=has_result,
        failed=failed,
        started=started,
        stale=stale if has_result else "",
    )
