"""``taskproc accept``: take the current code as matching stored results, without running.

A selected task is accepted when the only thing between its stored result and the code now is
its code identity: the record's code is stale, while its arguments (the task id), its
``task_version`` and its upstream results are what the result was computed from. An upstream
task that is accepted too counts as unchanged: acceptance keeps a result's stamp, so the tasks
downstream of it stay fresh.

The new record is written into the result file itself, through the task's claim as a commit
is (`Lease.rekey`): every later run, and every other runner sharing the cache, sees it, and a
runner never sees half of it. The code identity's entries are stored as a run stores them,
so ``taskproc why`` can later say what changed since.

Everything else is refused, with the reason ``taskproc why`` gives: a task never run with
these arguments (the closest stored arguments shown), a changed upstream result, a changed
``task_version``, an unreadable result, an upstream task that would rerun and is not accepted.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from taskproc.errors import CorruptResultError
from taskproc.model import Fingerprints, Ledger, Reason, TaskBase, inputs_digest, stale_reason
from taskproc.store import (
    ClaimTaken,
    Holder,
    Record,
    Store,
    new_runner,
    read_code_identity,
    read_record,
    write_code_identity,
)
from taskproc.views import Explainer, code_changes, plan_of, select_tasks


class Verdict(str, enum.Enum):
    """What `accept_code` did with a selected task."""

    ACCEPTED = "accepted"  # its record now has the current code identity
    FRESH = "fresh"  # nothing to do: its result is fresh (or is once its upstream is accepted)
    REFUSED = "refused"  # it must run; `why` says why

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Accepted:
    """One selected task and what became of it."""

    task: str
    task_name: str
    task_id: str
    verdict: Verdict
    why: str  # refused: the reason; accepted: what changed in the code

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.value}


@dataclass(frozen=True, slots=True)
class AcceptReport:
    """What `accept_code` did (or, with `dry_run`, would do) with each selected task."""

    tasks: tuple[Accepted, ...]
    dry_run: bool

    def of(self, verdict: Verdict) -> list[Accepted]:
        return [t for t in self.tasks if t.verdict is verdict]

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            **{v.value: len(self.of(v)) for v in Verdict},
            "tasks": [t.to_json() for t in self.tasks],
        }


def _verdict(task: TaskBase, verdict: Verdict, why: str) -> Accepted:
    return Accepted(repr(task), task.task_name, task._tp.task_id, verdict, why)


def accept_code(
    root: TaskBase, patterns: Sequence[str] = (), *, dry_run: bool = False
) -> AcceptReport:
    """Accept the current code for the stored results of the tasks of `root`'s graph that
    `patterns` select (task names, globs, NAME/ID; default: every task), as the module
    docstring says. Runs nothing; with `dry_run`, writes nothing either."""
    planned = plan_of(root, detect_source_change=True, force_entrypoint=False)
    order, stale, ledger = planned.order, planned.plan.stale, planned.ledger
    chosen = set(select_tasks(order, patterns))
    explainer = Explainer(stale, planned.fingerprints, ledger)
    me = new_runner()
    settled: set[TaskBase] = set()  # fresh, or accepted: their stamps are as planned
    out: list[Accepted] = []
    for task in order:
        reason = stale.get(task)
        if reason is None or reason is Reason.TOUCHED:  # an input file's bytes are the same
            settled.add(task)
            if task in chosen:
                why = "its result is fresh" if reason is None else "its files' content is the same"
                out.append(_verdict(task, Verdict.FRESH, why))
            continue
        if task not in chosen:
            continue
        blocking = [
            u
            for u in task._tp.upstream
            if u in stale and u not in settled and u not in ledger.stamps  # an input's is known
        ]
        if blocking:
            cause = explainer.why(blocking[0])
            out.append(
                _verdict(
                    task,
                    Verdict.REFUSED,
                    f"upstream {cause.task} would rerun ({cause.summary}); accept it too, "
                    "or run the graph",
                )
            )
            continue
        if reason not in (Reason.CODE, Reason.UPSTREAM):
            out.append(_verdict(task, Verdict.REFUSED, explainer.why(task).summary))
            continue
        result = _accept_one(task, planned.fingerprints, ledger, me, dry_run)
        if result.verdict is not Verdict.REFUSED:
            settled.add(task)
        out.append(result)
    return AcceptReport(tuple(out), dry_run)


def _accept_one(
    task: TaskBase, fingerprints: Fingerprints, ledger: Ledger, me: Holder, dry_run: bool
) -> Accepted:
    """Accept one task whose upstream tasks are all settled (their stamps in `ledger`)."""
    store = task._tp.store
    cls = type(task)
    try:
        record = read_record(store, task._tp_loc())
    except CorruptResultError as exc:
        return _verdict(task, Verdict.REFUSED, f"its cached result is unreadable ({exc})")
    if record is None:
        return _verdict(task, Verdict.REFUSED, "its result is gone (deleted meanwhile)")
    identity = fingerprints.identity(cls)
    # Only the code may differ: the arguments are the task id, the rest is checked here.
    inputs = inputs_digest(task._tp.upstream, ledger)
    other = stale_reason(record, cls.task_version, inputs, None)
    if other is not None:
        return _verdict(task, Verdict.REFUSED, f"{other.value}; run it to bring it up to date")
    if record.code_id == identity.digest:  # stale only because its upstream was: settled now
        ledger.stamps[task] = record.stamp
        return _verdict(task, Verdict.FRESH, "fresh once its upstream tasks are accepted")
    changed = _what_changed(store, record, identity.entries)
    if not dry_run:
        try:
            write_code_identity(store, identity.digest, identity.entries)
        except OSError:
            pass  # only `why` would miss it
        new = record._replace(code_id=identity.digest)
        problem = _rekey(store, task._tp_loc(), record, new, me)
        if problem:
            return _verdict(task, Verdict.REFUSED, problem)
    ledger.stamps[task] = record.stamp  # unchanged: downstream tasks stay fresh
    return _verdict(task, Verdict.ACCEPTED, changed)


def _what_changed(store: Store, record: Record, entries: Any) -> str:
    old = read_code_identity(store, record.code_id)
    if old is None:
        return "its code identity changed (the code it ran with was not recorded)"
    changes, _ = code_changes(old, entries)
    keys = [(c[2] or c[1]).key for c in changes]  # type: ignore[union-attr]
    if not keys:
        return "taskproc's way of hashing code changed"
    return (
        "changed: " + ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    )


def _rekey(store: Store, loc: str, record: Record, new: Record, me: Holder) -> str:
    """Rewrite the record through the task's claim; "" if done, else why not."""
    got = store.claim(loc, me)
    if isinstance(got, Holder):
        return (
            f"a runner holds it (host {got.host}, pid {got.pid}); accept it when that run "
            "has finished"
        )
    with got as lease:
        try:
            done = lease.rekey(record, new)
        except ClaimTaken:
            return "another runner took it over meanwhile; see 'taskproc why'"
    return "" if done else "its result changed meanwhile (another runner); see 'taskproc why'"


def format_accept(report: AcceptReport) -> str:
    """The text of ``taskproc accept``: what was accepted, then what was refused and why."""
    acc, fresh, refused = (report.of(v) for v in Verdict)
    verb = "would accept" if report.dry_run else "accepted"
    lines = [
        f"{verb} {len(acc)} task{'s' if len(acc) != 1 else ''}, "
        f"{len(fresh)} already fresh, {len(refused)} refused"
        + (" (dry run: nothing was written)" if report.dry_run else "")
    ]
    lines += [f"  {verb}: {t.task}: {t.why}" for t in acc[:50]]
    if len(acc) > 50:
        lines.append(f"  ... and {len(acc) - 50} more")
    lines += [f"  refused: {t.task}: {t.why}" for t in refused[:50]]
    if len(refused) > 50:
        lines.append(f"  ... and {len(refused) - 50} more refused (--json lists all)")
    return "\n".join(lines)
