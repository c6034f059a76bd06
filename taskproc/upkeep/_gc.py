"""``taskproc gc``: delete the stored tasks that the graphs of given pipelines do not reach.

    keep     every task the given root tasks reach (their whole graphs), every task a live
             runner holds, and with `keep_recent` every task finished (or failed) in the last
             that many days
    delete   every other stored task: its result, its files and its task_directory, whole

How it stays safe while other runners use the cache (docs/guarantees.md):

- A task is deleted through its claim (`remove_task`, `Lease.delete`): gc claims it as a
  runner would, so no runner is running it meanwhile; then checks that its result is still the
  one it looked at (a result a runner committed after gc looked is kept); then deletes it
  whole (a folder: moved out of the way in one rename, and removed there). A runner that wants
  the task meanwhile waits for the claim, then finds no result and computes it.
- Runners of the given pipelines never lose anything: gc deletes nothing their graphs reach.
- A runner of another pipeline that planned to load a result gc deleted does not fail: a
  result that vanished is computed again by that run (`run/_driver.py`, `run/_job.py`).
- Interrupted at any moment, gc leaves each task either whole in its place or gone from it
  (a leftover in ``.taskproc/trash`` is never read by a run, and the next gc removes it).

Code identities (kept for ``taskproc why``) that no remaining result, no class of the given
pipelines and no live runner uses are deleted too. A runner names each identity in its
heartbeat before it stores it, so gc lists the identities first, then reads the heartbeats,
then the results: an identity listed is either named by a runner still alive when gc reads the
heartbeats, or used only by results committed before that runner stopped, which gc reads after.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from taskproc.errors import UsageError
from taskproc.model import Fingerprints, TaskBase
from taskproc.run import collect
from taskproc.store import (
    Holder,
    Store,
    StoredTask,
    code_identities,
    delete_code_identity,
    hostname,
    live_codes,
    new_runner,
    runner_alive,
)
from taskproc.views import human_size

DAY = 86400.0


@dataclass(slots=True)
class GcName:
    """What gc did with the stored tasks of one task name."""

    task_name: str
    deleted: int = 0  # (with dry_run: would delete)
    bytes: int = 0  # freed (would be freed)
    kept: int = 0  # reached by the given pipelines
    running: int = 0  # held by a live runner
    recent: int = 0  # finished within keep_recent days
    changed: int = 0  # written or claimed since gc looked: left alone
    keys: list[str] = field(default_factory=list)  # task_name/task_id of those deleted


@dataclass(frozen=True, slots=True)
class GcReport:
    """The outcome of `gc_cache`, per task name."""

    names: tuple[GcName, ...]
    dry_run: bool
    codes_deleted: int

    @property
    def deleted(self) -> int:
        return sum(n.deleted for n in self.names)

    @property
    def bytes(self) -> int:
        return sum(n.bytes for n in self.names)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "deleted": self.deleted,
            "bytes": self.bytes,
            "codes_deleted": self.codes_deleted,
            "task_names": {n.task_name: asdict(n) for n in self.names},
        }


def gc_cache(
    roots: Sequence[TaskBase],
    *,
    keep_recent: float | None = None,
    dry_run: bool = False,
) -> GcReport:
    """Delete every stored task of the roots' cache that no root's graph reaches (see the
    module docstring). `roots` are root tasks built in `Graph` blocks on one cache, e.g. the
    `Main` of each pipeline with its arguments; `keep_recent` is in days. With `dry_run`,
    report what would be deleted and delete nothing."""
    if not roots:
        raise UsageError("gc needs the root task of at least one pipeline to keep")
    store = roots[0]._tp.store
    for root in roots[1:]:
        if root._tp.store != store:
            raise UsageError(
                f"{root!r} is in {root._tp.store.root}, {roots[0]!r} in {store.root}: give "
                "gc the root tasks of one cache"
            )
    if keep_recent is not None and not keep_recent >= 0:
        raise UsageError(f"keep_recent must be a number of days >= 0, got {keep_recent!r}")
    reached: set[tuple[str, str]] = set()
    classes: set[type] = set()
    for root in roots:
        for task in collect(root):
            reached.add((task.task_name, task._tp.task_id))
            classes.add(type(task))
    if not store.is_cache():
        return GcReport((), dry_run, 0)
    here, me, now = hostname(), new_runner(), time.time()
    listed = code_identities(store)  # first: see the module docstring
    codes_left: set[str] = set(live_codes(store, here))
    found = store.scan(store.task_names(), with_size=True)
    names: dict[str, GcName] = {}
    for f in found:
        row = names.setdefault(f.task_name, GcName(f.task_name))
        verdict = _keep(f, reached, here, store, keep_recent, now)
        if verdict:
            setattr(row, verdict, getattr(row, verdict) + 1)
            if f.record is not None:
                codes_left.add(f.record.code_id)
            continue
        if dry_run:
            freed: int | None = f.size or 0
        else:
            stamp = f.record.stamp if f.record else None
            freed = remove_task(store, f.location, f.holder, stamp, me)
        if freed is None:
            row.changed += 1
            codes_left.update(c.code_id for c in [f.record] if c is not None)
            continue
        row.deleted += 1
        row.bytes += freed
        row.keys.append(f"{f.task_name}/{f.task_id}")
    codes_deleted = 0
    if not dry_run:
        fingerprints = Fingerprints()
        codes_left.update(fingerprints(cls) for cls in classes)
        for old in listed - codes_left:
            delete_code_identity(store, old)
            codes_deleted += 1
        store.ensure()  # which finishes what interrupted deletions left behind
    return GcReport(tuple(names[n] for n in sorted(names)), dry_run, codes_deleted)


def remove_task(
    store: Store, loc: str, dead: Holder | None, stamp: str | None, me: Holder
) -> int | None:
    """Delete a stored task whole through its claim (`Lease.delete`: only if nobody holds it
    and its result still has the stamp `stamp`), first breaking `dead`, a dead runner's claim
    found on it; the bytes freed, or None if the task was left alone (or is gone)."""
    if dead is not None:
        store.break_claim(loc, dead, me)
    got = store.claim(loc, me)
    if isinstance(got, Holder):
        return None
    with got as lease:
        if lease.fresh:  # it was gone already: the claim made its place anew
            lease.delete(None)
            return None
        return lease.delete(stamp)


def _keep(
    f: StoredTask,
    reached: set[tuple[str, str]],
    here: str,
    store: Any,
    keep_recent: float | None,
    now: float,
) -> str:
    """Why a stored task is kept (the GcName field to count it in); "" to delete it."""
    if (f.task_name, f.task_id) in reached:
        return "kept"
    if f.holder is not None and runner_alive(store, f.holder, here):
        return "running"
    if keep_recent is not None:
        finished = f.facts.get("finished")
        times = [t for t in (f.result_time, f.error_time, finished) if isinstance(t, float)]
        if times and now - max(times) < keep_recent * DAY:
            return "recent"
    return ""


def format_gc(report: GcReport) -> str:
    """The text of ``taskproc gc``: per task name, what was (or would be) deleted."""
    verb = "would delete" if report.dry_run else "deleted"
    head = (
        f"{verb} {report.deleted} task{'s' if report.deleted != 1 else ''} "
        f"({human_size(report.bytes)})"
    )
    if report.dry_run:
        head += "; dry run: nothing was deleted"
    lines = [head]
    for n in report.names:
        parts = [f"{verb} {n.deleted} ({human_size(n.bytes)})"] if n.deleted else []
        parts += [
            f"{count} {what}"
            for what, count in (
                ("kept", n.kept),
                ("running, kept", n.running),
                ("recent, kept", n.recent),
                ("changed meanwhile, kept", n.changed),
            )
            if count
        ]
        lines.append(f"  {n.task_name}: {', '.join(parts)}")
    return "\n".join(lines)
