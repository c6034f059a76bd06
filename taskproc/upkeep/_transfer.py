"""``taskproc push CACHE URL`` and ``taskproc pull URL CACHE``: results copied between a cache
folder and a bucket (either way; any two stores that can hand out and take in result files).

Each selected task that has a result at the source is copied, upstream tasks first, with its
arguments, upstream links, captured output and folder (`task_directory`), through the target's
claim (a lease, `commit_file`): a copy racing a runner is as safe as two runners. The result
file travels byte for byte, its record with it, so freshness is the same on both sides. Where
the target has a result already:

- the same stamp: nothing to do (``already there``);
- the same code identity and the same data (the data chunks' CRC32 and lengths, from the gzip
  trailers, which both sides have without unpickling): two machines computed the same thing;
  they have converged, and nothing is said;
- anything else: the target keeps its own and the report says so (the side being written wins).

Nothing here unpickles a result, so the user's code need not be importable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, Protocol, runtime_checkable

from taskproc.errors import UsageError
from taskproc.model import args_reader, describe, memoized
from taskproc.store import (
    STREAMS,
    Holder,
    LocalStore,
    OutputFiles,
    Record,
    Store,
    StoredTask,
    TaskFolders,
    new_runner,
    read_record,
    result_data_sums,
)
from taskproc.views import Selection, select

_CHUNK = 1 << 20


@runtime_checkable
class _CommitsFiles(Protocol):
    """A lease that commits a result file as it is."""

    def commit_file(self, path: str, record: Record) -> int: ...


@runtime_checkable
class _Fetches(Protocol):
    """A store far away, that hands out a local copy of a result file (a bucket's)."""

    def fetch_result(self, loc: str) -> tuple[str, Record] | None: ...


@runtime_checkable
class _Links(Protocol):
    """A store that tells a task's upstream links with their attributes."""

    def links(self, loc: str) -> list[tuple[str, str, str]] | None: ...


@dataclass(slots=True)
class Transfer:
    """What `transfer` did (or, dry, would do): tasks by what became of them, as text."""

    source: str
    target: str
    dry_run: bool
    copied: list[str] = field(default_factory=list)
    there: list[str] = field(default_factory=list)  # the same result, or one converged
    kept: list[str] = field(default_factory=list)  # the target's differs: kept
    held: list[str] = field(default_factory=list)  # a runner holds it at the target
    bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "copied": self.copied,
            "already_there": self.there,
            "kept": self.kept,
            "held": self.held,
            "bytes": self.bytes,
        }


def _check(store: Store, role: str) -> None:
    if not isinstance(store, (LocalStore, _Fetches)):
        raise UsageError(f"{role} {store.root}: push and pull copy between a folder and a bucket")


def transfer(
    source: Store, target: Store, patterns: Sequence[str] = (), *, dry_run: bool = False
) -> Transfer:
    """Copy the results of the tasks `patterns` selects (names, globs, NAME/ID; none: all)
    from `source` to `target`, upstream first (see the module's note)."""
    _check(source, "from")
    _check(target, "to")
    if not source.is_cache():
        raise UsageError(f"{source.root}: not a taskproc cache; give the -o CACHE of a run")
    sel = select(source, patterns) if patterns else Selection(tuple(source.task_names()), ())
    names = list(dict.fromkeys([*sel.names, *(n for n, _ in sel.ids)]))
    found = [
        f
        for f in source.scan(names)
        if f.record is not None
        and (f.task_name in sel.names or (f.task_name, f.task_id) in sel.ids)
    ]
    report = Transfer(source.root, target.root, dry_run)
    if not dry_run:
        target.ensure()
    me = new_runner()
    lookup = memoized(args_reader(source))
    for f in _upstream_first(found):
        args = source.read_args(f.location)
        shown = describe(f.task_name, args, lookup) if args else f"{f.task_name}/{f.task_id}"
        _one(source, target, f, args, shown, me, report)
    return report


def _upstream_first(found: list[StoredTask]) -> list[StoredTask]:
    """`found`, each task after the tasks of `found` upstream of it."""
    by_key = {f"{f.task_name}/{f.task_id}": f for f in found}
    graph = {key: [u for u in f.upstream or () if u in by_key] for key, f in by_key.items()}
    try:
        return [by_key[key] for key in TopologicalSorter(graph).static_order()]
    except CycleError:  # links of a damaged cache: copy in any order, each task whole
        return list(by_key.values())


def _one(
    source: Store,
    target: Store,
    found: StoredTask,
    args: str | None,
    shown: str,
    me: Holder,
    report: Transfer,
) -> None:
    record = found.record
    if record is None:
        return
    there = target.locate(found.task_name, found.task_id)
    theirs = _record_at(target, there)
    if theirs is not None:
        _compare(source, target, found, theirs, shown, report)
        return
    if report.dry_run:
        report.copied.append(shown)
        report.bytes += found.size or 0
        return
    got = target.claim(there, me)
    if isinstance(got, Holder):
        report.held.append(shown)
        return
    with got as lease:
        if not lease.fresh and _record_at(target, there) is not None:
            lease.release()  # committed meanwhile: compare with that one
            _compare(source, target, found, _record_at(target, there), shown, report)
            return
        local = _result_file(source, found.location)
        if local is None or not isinstance(lease, _CommitsFiles):
            return  # deleted at the source meanwhile
        lease.start(args or "null", _links(source, found), keep_output=True)
        _copy_files(source, target, found.location, there)
        report.bytes += lease.commit_file(local[0], local[1])
        report.copied.append(shown)


def _record_at(store: Store, loc: str) -> Record | None:
    try:
        return read_record(store, loc)
    except ValueError:  # damaged: a copy replaces it
        return None


def _compare(
    source: Store,
    target: Store,
    found: StoredTask,
    theirs: Record | None,
    shown: str,
    report: Transfer,
) -> None:
    record = found.record
    if theirs is None or record is None:
        return
    if theirs.stamp == record.stamp:
        report.there.append(shown)
        return
    if theirs.code_id == record.code_id:
        mine = _result_file(source, found.location)
        other = _result_file(target, target.locate(found.task_name, found.task_id))
        if mine and other and result_data_sums(mine[0]) == result_data_sums(other[0]):
            report.there.append(shown)  # the same data, computed twice: converged
            return
    report.kept.append(shown)


def _result_file(store: Store, loc: str) -> tuple[str, Record] | None:
    """A local file holding the task's result as it is now, and its record."""
    if isinstance(store, _Fetches):
        return store.fetch_result(loc)
    record = _record_at(store, loc)
    path = store.result_file(loc)
    return (path, record) if record is not None and os.path.isfile(path) else None


def _links(store: Store, found: StoredTask) -> list[tuple[str, str, str]]:
    """The upstream links of the task's result: attribute, task name, task id."""
    if isinstance(store, _Links):
        links = store.links(found.location)
        if links is not None:
            return links
    links = []
    for i, key in enumerate(found.upstream or ()):
        name, _, task_id = key.partition("/")
        links.append((f"{name}.{i}", name, task_id))  # the attribute is not kept: a name
    return links


def _copy_files(source: Store, target: Store, loc: str, there: str) -> None:
    """The task's captured output and its folder, copied while the target's claim is held."""
    if isinstance(target, OutputFiles):
        for stream, path in zip(STREAMS, target.output_files(there), strict=True):
            with open(path, "wb") as out:
                offset = 0
                while chunk := source.read_output(loc, stream, offset, _CHUNK):
                    out.write(chunk)
                    offset += len(chunk)
    if isinstance(source, TaskFolders) and isinstance(target, TaskFolders):
        folder = source.data_folder(loc)
        if any(folder.iterdir()):
            dest = target.data_folder(there)
            shutil.copytree(folder, dest, symlinks=True, dirs_exist_ok=True)


def format_transfer(report: Transfer, verb: str) -> str:
    """The text of ``taskproc push`` / ``pull``: what was copied, and what was kept."""
    n = len(report.copied)
    what = f"{n} task{'s' if n != 1 else ''}"
    if report.dry_run:
        lines = [f"would {verb} {what} to {report.target}; dry run: nothing was copied"]
        lines += [f"  would {verb}: {t}" for t in report.copied[:50]]
    else:
        lines = [f"{verb}ed {what} to {report.target}"]
    if report.there:
        lines.append(f"  {len(report.there)} already there")
    side = "bucket's" if report.target.startswith("s3://") else "folder's"
    lines += [f"  kept the {side} result of {t}: it differs from yours" for t in report.kept]
    lines += [f"  skipped {t}: a runner holds it there; {verb} again later" for t in report.held]
    return "\n".join(lines)
