"""Freshness: the one rule that says whether a stored result may be used, and the digests it
compares. Pure functions over records and a run's `Ledger`; the plan (`run`), the views and
``taskproc accept`` all decide here.

A result is fresh for a task when its record's ``task_version`` is the task's, its `inputs`
digest is the digest of the stamps of the task's upstream results now, and (when code is
checked) its code identity is the task's. No clocks are compared: caches are shared between
machines whose clocks differ.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from taskproc.model._canonical import blake2b
from taskproc.store import Record

if TYPE_CHECKING:
    from taskproc.model._ledger import Ledger
    from taskproc.model._task import TaskBase


class Reason(enum.Enum):
    """Why a task must run."""

    MISSING = "no cached result"
    VERSION = "task_version changed"
    CODE = "its source code changed"
    UPSTREAM = "an upstream task reruns"
    INPUTS = "an upstream result changed since it ran"
    RECOVERED = "an upstream task that had failed when it ran has a result now"
    CORRUPT = "its cached result is unreadable"
    FORCED = "forced (entry point)"
    # Input files (`InputFile`): why an input's record is written again.
    FILES = "its files changed"
    TOUCHED = "its files were touched, their content is the same"
    NO_FILE = "its file cannot be read"


# The stamp of an upstream task that failed (stamps are hex), and the end of the `inputs` of a
# result computed while some of its tolerated upstream tasks (`allow_failed`) had failed: the
# digest covers which ones, and the mark tells a later run why the result is stale once they
# have results (`Reason.RECOVERED`).
FAILED_STAMP = "failed"
WITH_FAILED = "+failed"
_NO_INPUTS = blake2b(digest_size=12).hexdigest()


def stale_reason(
    record: Record, version: str | int | None, inputs: str, code_id: str | None
) -> Reason | None:
    """The freshness rule: None if `record` is a fresh result for a task of this `version`
    whose upstream results have the digest `inputs` (and, unless `code_id` is None, whose code
    has this identity); else why it is not. Every check of freshness comes here."""
    if record.version != version:
        return Reason.VERSION
    if code_id is not None and record.code_id != code_id:
        return Reason.CODE
    if record.inputs != inputs:
        return Reason.RECOVERED if record.inputs.endswith(WITH_FAILED) else Reason.INPUTS
    return None


def computed_with_failures(record: Record) -> bool:
    """Whether a result was computed while some of its tolerated upstream tasks had failed."""
    return record.inputs.endswith(WITH_FAILED)


def stamps_digest(pairs: Iterable[tuple[str, str | None]]) -> str:
    """The digest of (task key, stamp) pairs that a result's record keeps as `inputs`; a
    stamp of None is an upstream task that failed."""
    items = []
    failed = False
    for key, stamp in pairs:
        if stamp is None:
            failed = True
        items.append(f"{key}={FAILED_STAMP if stamp is None else stamp}\n")
    if not items:
        return _NO_INPUTS
    items.sort()
    digest = blake2b("".join(items).encode(), digest_size=12).hexdigest()
    return digest + WITH_FAILED if failed else digest


def inputs_digest(upstream: Sequence[TaskBase], ledger: Ledger) -> str:
    """The digest of the stamps that `ledger` holds for the given tasks' results (or their
    failure in that run: only a task that tolerates it runs with a failed upstream task)."""
    if not upstream:
        return _NO_INPUTS
    failures, stamps = ledger.failures, ledger.stamps
    return stamps_digest(
        (f"{u.task_name}/{u._tp.task_id}", None if u in failures else str(stamps.get(u)))
        for u in upstream
    )


def new_record(task: TaskBase, stamp: str, code_id: str, ledger: Ledger) -> Record:
    """The record of a new result of `task`, computed by code `code_id` from the upstream
    results `ledger` knows. Its code counts whether or not the run checks it, so that a later
    run that does can tell."""
    cls = type(task)
    key = f"{task.task_name}/{task._tp.task_id}"
    return Record(stamp, code_id, cls.task_version, inputs_digest(task._tp.upstream, ledger), key)


def why_stale(task: TaskBase, record: Record, code_id: str | None, ledger: Ledger) -> Reason | None:
    """`stale_reason` for `task` as `ledger` sees its upstream results (`code_id` None: code is
    not checked)."""
    return stale_reason(
        record, type(task).task_version, inputs_digest(task._tp.upstream, ledger), code_id
    )
