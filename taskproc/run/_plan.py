"""The graph reachable from a root task, and which of its tasks must run and why.

Both passes go over the tasks in topological order, without recursion, so their cost grows
linearly with the graph and deep chains work. The freshness rule itself is the model's
(`model.stale_reason`); the plan applies it to what the store holds, reading records in
batches (`Store.read_records`) so that a store far away answers a large graph in few round
trips. An input file (`InputFile`) is checked against its files instead (`model.check_input`),
which notes its stamp, its content's digest, at once: the tasks downstream of an input that is
recorded again are judged by the ordinary rule in the same plan, not made to rerun with it.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import cast

from taskproc.errors import CacheError, CycleError
from taskproc.model import (
    InputFile,
    Ledger,
    Reason,
    TaskBase,
    args_lookup,
    check_input,
    describe,
    initialize,
    inputs_digest,
    stale_reason,
)
from taskproc.store import Record, Store, Unreadable

# Records are read this many at a time, in topological order: a task whose upstream task in
# an earlier batch must run is not read at all (it reruns anyway).
READ_BATCH = 512


@dataclass(frozen=True, slots=True)
class Plan:
    """What `decide` found: the tasks that must run, with why, and per task name the number of
    fresh results computed by other code than the code now running (counted whether or not the
    run checks code; when it does not, they are used as they are and the driver warns)."""

    stale: dict[TaskBase, Reason]
    drifted: dict[str, int]


def collect(root: TaskBase) -> list[TaskBase]:
    """Every task `root` needs, upstream first. Raises CycleError naming the cycle.

    A depth-first post-order: one visit per task and edge. (graphlib's static order costs
    about five times more, a fifth of a fully cached rerun.)
    """
    order: list[TaskBase] = []
    placed: set[TaskBase] = set()
    on_path: set[TaskBase] = {root}
    initialize(root)
    path: list[tuple[TaskBase, Iterator[TaskBase]]] = [(root, iter(root._tp.upstream))]
    while path:
        task, ups = path[-1]
        for up in ups:
            if up in placed:
                continue
            if up in on_path:
                raise _cycle_error([t for t, _ in path], up)
            initialize(up)
            on_path.add(up)
            path.append((up, iter(up._tp.upstream)))
            break
        else:
            path.pop()
            on_path.discard(task)
            placed.add(task)
            order.append(task)
    return order


def _cycle_error(path: list[TaskBase], back_to: TaskBase) -> CycleError:
    cycle = path[path.index(back_to) :] + [back_to]
    names = tuple(repr(t) for t in cycle)
    return CycleError(
        f"upstream tasks form a cycle: {' -> '.join(names)}; a task cannot depend on itself",
        names,
    )


def warn_unreadable(problems: list[str]) -> None:
    """One warning for all the unreadable results found, naming the first ones."""
    if not problems:
        return
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    warnings.warn(
        f"{len(problems)} cached result{'s are' if len(problems) > 1 else ' is'} unreadable "
        f"and will be recomputed: {shown}{more}",
        stacklevel=3,
    )


def loosely(args_json: str) -> str:
    """Canonical arguments with the distinctions JSON does not make undone: tuples as lists,
    whole floats as ints. Two tasks equal in this form differ only by tuple/list or int/float."""

    def undo(value: object) -> object:
        if isinstance(value, dict):
            if len(value) == 1 and "__tuple__" in value:
                return [undo(v) for v in value["__tuple__"]]
            return {k: undo(v) for k, v in value.items()}
        if isinstance(value, list):
            return [undo(v) for v in value]
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    return json.dumps(undo(json.loads(args_json)), sort_keys=True)


class _NearMisses:
    """Stored tasks whose arguments equal a new task's but for tuple/list or int/float, the
    likely fruit of a list given where a tuple was meant. Each task name is looked at once,
    and only when it has few stored tasks (reading their arguments costs a file each)."""

    LIMIT = 1000

    def __init__(self) -> None:
        self._stored: dict[str, dict[str, str]] = {}
        self.found: list[str] = []

    def check(self, task: TaskBase, ids: frozenset[str] | None) -> None:
        name = task.task_name
        stored = self._stored.get(name)
        if stored is None:
            stored = self._stored[name] = {}
            store = task._tp.store
            if ids is not None and 0 < len(ids) <= self.LIMIT:
                for task_id in ids:
                    args = store.read_args(store.locate(name, task_id))
                    if args is not None:
                        with contextlib.suppress(ValueError, RecursionError):
                            stored.setdefault(loosely(args), args)
        if stored and not self.found:  # one warning a run
            twin = stored.get(loosely(task._tp.args_json))
            if twin is not None:
                stored_twin = describe(name, twin, args_lookup(task))
                self.found.append(f"{task!r} and the stored {stored_twin}")


class _StoredIds:
    """Which tasks a store holds, one listing per task name: a graph of new tasks is planned
    without probing every task's result."""

    def __init__(self) -> None:
        # By the store's id, not the store: hashing a store is a call of Python code, once a
        # task; the stores outlive the plan, so their ids stay theirs.
        self._ids: dict[tuple[int, str], frozenset[str] | None] = {}

    def may_exist(self, task: TaskBase) -> bool:
        ids = self.ids(task)
        return ids is None or task._tp.task_id in ids

    def ids(self, task: TaskBase) -> frozenset[str] | None:
        store = task._tp.store
        key = (id(store), task.task_name)
        ids = self._ids.get(key, _UNLISTED)
        if ids is _UNLISTED:
            ids = self._ids[key] = store.task_ids(task.task_name)
        return ids


_UNLISTED: frozenset[str] = frozenset({"<unlisted>"})


def decide(
    order: list[TaskBase],
    root: TaskBase,
    *,
    force_root: bool,
    code_id_of: Callable[[type], str],
    check_code: bool,
    ledger: Ledger,
) -> Plan:
    """The tasks that must run, with why. Notes the stamp of every fresh task in `ledger`
    (and forgets any failure it held: a failure of an earlier run is not this run's).

    The code identity of each task class is taken once (`code_id_of` is asked once per class) and
    compared with every record read, checked or not: a cheap string comparison per task.
    """
    stale: dict[TaskBase, Reason] = {}
    drifted: dict[str, int] = {}
    codes: dict[type, str] = {}
    problems: list[str] = []
    existing = _StoredIds()
    near = _NearMisses()
    stamps = ledger.stamps
    for start in range(0, len(order), READ_BATCH):
        batch = order[start : start + READ_BATCH]
        records = _read_batch(batch, stale, existing, stamps)
        for task in batch:
            ledger.failures.pop(task, None)
            cls = type(task)
            if cls is InputFile:
                reason = check_input(cast(InputFile, task), records.get(task), ledger)
                if reason is not None:
                    stale[task] = reason
                continue
            # An upstream task that reruns makes a result nobody knows yet; an input whose
            # record is written again has its stamp already (same content: same stamp).
            if any(u in stale and u not in stamps for u in task._tp.upstream):
                stale[task] = Reason.UPSTREAM
                if ledger.scans:
                    _note_reader(task, ledger)
                continue
            if task not in records:
                stale[task] = Reason.MISSING
                near.check(task, existing.ids(task))
                continue
            record = records[task]
            if isinstance(record, Unreadable):
                problems.append(f"{task!r}: {record.reason}")
                stale[task] = Reason.CORRUPT
                continue
            if record is None:
                stale[task] = Reason.MISSING
                continue
            now = codes.get(cls)
            if now is None:
                now = codes[cls] = code_id_of(cls)
            inputs = inputs_digest(task._tp.upstream, ledger)
            reason = stale_reason(record, cls.task_version, inputs, now if check_code else None)
            if reason is None and force_root and task is root:
                reason = Reason.FORCED
            if reason is not None:
                stale[task] = reason
                continue
            ledger.stamps[task] = record.stamp
            if record.code_id != now:
                drifted[task.task_name] = drifted.get(task.task_name, 0) + 1
    warn_unreadable(problems)
    if near.found:
        warnings.warn(
            f"{near.found[0]} differ only by tuple/list or int/float, so they are different "
            "tasks and this one will run; pass the same types to reuse the stored result "
            "(--kwargs values take the types of Main's annotations)",
            stacklevel=3,
        )
    return Plan(stale, drifted)


def _note_reader(task: TaskBase, ledger: Ledger) -> None:
    """Name `task` as the reader of the unreadable inputs it needs, for their error."""
    for up in task._tp.upstream:
        scan = ledger.scans.get(up)
        if scan is not None and scan.error and not scan.reader:
            ledger.scans[up] = replace(scan, reader=repr(task))


def _read_batch(
    batch: list[TaskBase],
    stale: dict[TaskBase, Reason],
    existing: _StoredIds,
    stamps: Mapping[TaskBase, str],
) -> dict[TaskBase, Record | Unreadable | None]:
    """The records of the tasks of `batch` that may have one and whose upstream tasks in
    earlier batches do not rerun, read in one call per store."""
    wanted: dict[Store, list[TaskBase]] = {}
    for task in batch:
        if existing.may_exist(task) and not any(
            u in stale and u not in stamps for u in task._tp.upstream
        ):
            wanted.setdefault(task._tp.store, []).append(task)
    out: dict[TaskBase, Record | Unreadable | None] = {}
    for store, tasks in wanted.items():
        try:
            found = store.read_records([t._tp_loc() for t in tasks])
        except CacheError as exc:
            raise CacheError(f"{tasks[0]!r}: {exc}") from None
        out.update(zip(tasks, found, strict=True))
    return out


def code_changed_message(drifted: Mapping[str, int], *, during_run: bool = False) -> str:
    """The one line that says which cached results were computed by other code; with
    `during_run`, results another runner wrote while this run went on."""
    n = sum(drifted.values())
    names = sorted(drifted)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    one = n == 1
    it = "it" if one else "them"
    written = " (written by another runner while this run went on)" if during_run else ""
    return (
        f"{n} cached result{'' if one else 's'} of {shown}{written} {'was' if one else 'were'} "
        f"computed by code other than the code now, and {'is' if one else 'are'} used as "
        f"{'it is' if one else 'they are'} because detect_source_change is off: rerun {it} "
        "with detect_source_change=True (on the command line, without -D), see what changed "
        f"with 'taskproc why FILE.py -o CACHE', or keep {it} with 'taskproc accept FILE.py -o "
        "CACHE' (to silence this: warnings.simplefilter('ignore', taskproc.CodeChangedWarning))"
    )


def replaced_message(upstream: TaskBase, *, own: bool = False) -> str:
    """Why a task that needs `upstream` (`own`: the task itself) stops: another runner
    replaced its result, while this run used it, with one computed by other code (detection
    on)."""
    whose = "its result" if own else f"its upstream result {upstream!r}"
    return (
        f"{whose} was replaced while this run used it, by another "
        f"runner's result computed by other code (two runners of different code share the cache "
        f"{upstream._tp.store.root}); a runner never uses a result of other code, and two codes "
        "cannot keep one result: run them on separate caches (-o), or run this again once the "
        "other has finished"
    )
