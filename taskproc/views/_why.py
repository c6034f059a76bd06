"""Why tasks would run: for each, the first reason, in words a user acts on (``taskproc why``,
``task.why()``, and the lines of ``--dry-run``).

The verdicts are the run's own (`run.decide`, with the model's one freshness rule, on a
throwaway `Ledger`: nothing a later run or `get_result` sees is changed); this module only
looks closer at each, reading the store:

    no cached result          never run | started but never finished | its last run failed
                              (the error) | its arguments differ from every stored run of its
                              task name (the closest stored arguments, the keys that differ)
    its source code changed   which function, class or constant changed, with a unified diff
                              of its source when the code it ran with is stored; or which
                              required distribution's version changed
    task_version changed      old -> new
    an upstream task reruns   which one, and the first cause upstream
    an upstream result changed   which input file changed, if one did
    its files changed (an input file)   which files: old and new size and time
    its files were touched    which files' times changed, the content being the same
    its file cannot be read   why (missing, permission)
    its cached result is unreadable, forced (entry point)

Each summary starts with the words of the plan's reason, so tools that grep `--dry-run`
output keep working.
"""

from __future__ import annotations

import difflib
import enum
import fnmatch
import json
import time
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from taskproc.errors import CorruptResultError, UsageError
from taskproc.model import (
    Fingerprints,
    InputFile,
    Ledger,
    Reason,
    Scan,
    TaskBase,
    args_lookup,
    describe,
    stored_rows,
)
from taskproc.run import Plan, collect, decide
from taskproc.store import CodeEntry, Record, read_code_identity, read_record
from taskproc.views._scan import first_error_line

ARGS_COMPARED = 200  # stored runs of a task name whose arguments are compared, at most
CLOSEST_PER_NAME = 100  # tasks of one name whose closest stored arguments are looked for
DIFF_ENTRIES = 5  # changed functions shown in a diff, at most
DIFF_LINES = 200
# What changed is named in this order: code people wrote first, versions last.
KIND_ORDER = ("function", "class", "object", "constant", "unreadable", "external", "distribution")


class WhyKind(str, enum.Enum):
    """The kind of reason a task would run (a str, for JSON)."""

    NEW = "never-run"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    ARGUMENTS = "arguments"
    CODE = "code"
    DISTRIBUTION = "distribution"
    VERSION = "version"
    UPSTREAM = "upstream"
    INPUTS = "inputs"
    RECOVERED = "recovered"
    CORRUPT = "corrupt"
    FORCED = "forced"
    FILES = "files"  # an input file's content changed
    TOUCHED = "touched"  # an input file's times changed, not its content
    NO_FILE = "no-file"  # an input file cannot be read

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Why:
    """Why one task would run. `summary` is the one line to show; the other fields are the
    facts behind it, for tools."""

    task: str  # e.g. ``pipe.Square(x=1)``
    task_name: str
    task_id: str
    kind: WhyKind
    summary: str
    changed: tuple[str, ...] = ()  # code, distribution, files: what changed, most telling first
    diff: str = ""  # code: unified diff of the changed sources, when the old ones are stored
    error: str = ""  # failed: the first line of its error
    upstream: str = ""  # upstream: the upstream task that reruns
    cause: str = ""  # upstream: the task whose own reason starts it all, and that reason
    closest: str = ""  # arguments: the closest stored arguments, as a task
    differing: tuple[str, ...] = ()  # arguments: the arguments that differ from those

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        out["changed"] = list(self.changed)
        out["differing"] = list(self.differing)
        return out


# -- what changed in the code -----------------------------------------------------------------


def _rank(entry: CodeEntry) -> tuple[int, str]:
    kind = KIND_ORDER.index(entry.kind) if entry.kind in KIND_ORDER else len(KIND_ORDER)
    return kind, entry.key


def code_changes(
    old: Sequence[CodeEntry], new: Sequence[CodeEntry]
) -> tuple[list[tuple[str, CodeEntry | None, CodeEntry | None]], str]:
    """What differs between two code identities' entries, most telling first, as (what,
    old entry, new entry) with what = changed, new or gone; and a unified diff of the sources
    of the first few that changed or are new."""
    before = {e.key: e for e in old}
    after = {e.key: e for e in new}
    changes: list[tuple[str, CodeEntry | None, CodeEntry | None]] = []
    for key, e in after.items():
        was = before.get(key)
        if was is None:
            changes.append(("new", None, e))
        elif was.digest != e.digest:
            changes.append(("changed", was, e))
    changes += [("gone", e, None) for key, e in before.items() if key not in after]
    order = {"changed": 0, "new": 1, "gone": 2}
    changes.sort(key=lambda c: (_rank(c[2] or c[1]), order[c[0]]))  # type: ignore[arg-type]
    diffs: list[str] = []
    for _, was, now in changes[:DIFF_ENTRIES]:
        if now is None or now.kind == "distribution":
            continue
        old_lines = was.source.splitlines() if was is not None else []
        if was is not None and not was.source:
            continue
        diffs.extend(
            difflib.unified_diff(
                old_lines,
                now.source.splitlines(),
                f"{now.key} (stored)" if was is not None else "/dev/null",
                f"{now.key} (now)",
                lineterm="",
            )
        )
    if len(diffs) > DIFF_LINES:
        diffs = [*diffs[:DIFF_LINES], f"... ({len(diffs) - DIFF_LINES} more lines)"]
    return changes, "\n".join(diffs)


def _describe_change(what: str, was: CodeEntry | None, now: CodeEntry | None) -> str:
    e = now or was
    if e is None:  # pragma: no cover - one of them is always set
        return ""
    if e.kind == "distribution":
        name = e.key.removesuffix(" (distribution)")
        if was is not None and now is not None:
            return f"distribution {name} {was.source} -> {now.source}"
        return f"distribution {name} {'now required' if now else 'no longer required'}"
    label = f"{e.kind} {e.key}"
    return {"changed": f"{label} changed", "new": f"it now reaches {label}"}.get(
        what, f"it no longer reaches {label}"
    )


def _code_why(task: TaskBase, record: Record, fingerprints: Fingerprints) -> Why:
    now = fingerprints.identity(type(task))
    old = read_code_identity(task._tp.store, record.code_id)
    base = Reason.CODE.value
    if old is None:
        return _why(
            task,
            WhyKind.CODE,
            f"{base}: the code it ran with was not recorded (by an older taskproc, or the "
            "cache was copied without its .taskproc folder), so what changed cannot be shown",
        )
    changes, diff = code_changes(old, now.entries)
    if not changes:
        return _why(
            task,
            WhyKind.CODE,
            f"{base}: no function, class or constant differs; taskproc's way of hashing it "
            "changed (an upgrade): 'taskproc accept' keeps the result",
        )
    named = [_describe_change(*c) for c in changes]
    keys = tuple((c[2] or c[1]).key for c in changes)  # type: ignore[union-attr]
    more = f", and {len(named) - 1} more: {', '.join(named[1:4])}" if len(named) > 1 else ""
    more += " ..." if len(named) > 4 else ""
    if all((c[2] or c[1]).kind == "distribution" for c in changes):  # type: ignore[union-attr]
        return _why(task, WhyKind.DISTRIBUTION, f"{base}: {named[0]}{more}", changed=keys)
    return _why(task, WhyKind.CODE, f"{base}: {named[0]}{more}", changed=keys, diff=diff)


# -- arguments -----------------------------------------------------------------------------------


def _differing(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in {*mine, *theirs} if mine.get(k, ...) != theirs.get(k, ...))


class _StoredArgs:
    """What is stored of each task name, read once per name: its task ids, and the arguments
    of up to ARGS_COMPARED of its runs. The closest arguments are looked for for the first
    CLOSEST_PER_NAME tasks of a name only, so that a new sweep of a million tasks is
    explained in linear time."""

    def __init__(self) -> None:
        self._ids: dict[str, frozenset[str] | None] = {}
        self._args: dict[str, list[dict[str, Any]]] = {}
        self._asked: dict[str, int] = {}

    def ids(self, task: TaskBase) -> frozenset[str] | None:
        name = task.task_name
        if name not in self._ids:
            self._ids[name] = task._tp.store.task_ids(name)
        return self._ids[name]

    def _stored(self, task: TaskBase) -> list[dict[str, Any]]:
        store = task._tp.store
        found = self._args.get(task.task_name)
        if found is None:
            found = self._args[task.task_name] = []
            for task_id in sorted(self.ids(task) or ())[:ARGS_COMPARED]:
                text = store.read_args(store.locate(task.task_name, task_id))
                try:
                    args = json.loads(text) if text else None
                except (ValueError, RecursionError):  # damaged, or nested too deep to read
                    args = None
                if isinstance(args, dict):
                    found.append(args)
        return found

    def closest(self, task: TaskBase) -> tuple[dict[str, Any] | None, list[str], int]:
        """The stored arguments closest to the task's (None when not looked for), the keys
        that differ, and how many runs of its name are stored (0: none)."""
        stored = self._stored(task)
        if not stored:
            return None, [], 0
        asked = self._asked[task.task_name] = self._asked.get(task.task_name, 0) + 1
        if asked > CLOSEST_PER_NAME:
            return None, [], len(stored)
        mine = json.loads(task._tp.args_json or "{}")
        best = min(stored, key=lambda a: (len(_differing(mine, a)), json.dumps(a, sort_keys=True)))
        return best, _differing(mine, best), len(stored)


def _missing_why(task: TaskBase, stored: _StoredArgs) -> Why:
    store = task._tp.store
    loc = task._tp_loc()
    base = Reason.MISSING.value
    error = store.read_error(loc)
    if error:
        line = first_error_line(error)
        return _why(task, WhyKind.FAILED, f"{base}: its last run failed ({line})", error=line)
    ids = stored.ids(task)
    if ids is not None and task._tp.task_id in ids:
        return _why(task, WhyKind.INCOMPLETE, f"{base}: a run of it started but never finished")
    args, keys, n = stored.closest(task)
    if n == 0:
        return _why(task, WhyKind.NEW, f"{base}: never run")
    runs = f"{n} stored run{'s' if n != 1 else ''}"
    summary = f"{base}: its arguments differ from every stored run of {task.task_name} ({runs})"
    if args is None:
        return _why(task, WhyKind.ARGUMENTS, summary)
    closest = describe(task.task_name, json.dumps(args), args_lookup(task))
    return _why(
        task,
        WhyKind.ARGUMENTS,
        f"{summary}; the closest, {closest}, differs in {', '.join(keys)}",
        closest=closest,
        differing=tuple(keys),
    )


# -- input files ---------------------------------------------------------------------------------

FILES_SHOWN = 3  # changed files named in a summary, at most


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def _times(old: int, new: int) -> str:
    """``modified <old> -> <new>``, to the second unless that hides the change (a time
    recorded negated is that of a file read just after it was written)."""
    old, new = max(old, ~old), max(new, ~new)
    if old == new:
        return "read again (it was written just before it was last read)"
    was, now = _when(old), _when(new)
    if was == now:
        was, now = f"{was}.{old % 10**9:09d}", f"{now}.{new % 10**9:09d}"
    return f"modified {was} -> {now}"


def file_changes(
    shown: str, old: Mapping[str, tuple[Any, ...]], scan: Scan
) -> list[tuple[str, str]]:
    """What differs between an input's stored rows and a scan of it, content first: (file
    name, what happened to it); `shown` names a file input's only file."""
    changed: list[tuple[str, str]] = []
    touched: list[tuple[str, str]] = []
    new = {r[0]: r for r in scan.rows}
    for name, row in new.items():
        label = name or shown
        was = old.get(name)
        if was is None:
            changed.append((label, f"new, {row[1]:,} bytes"))
        elif was[5] != row[5]:
            size = f"{was[1]:,} -> {row[1]:,} bytes"
            changed.append((label, f"{size}, {_times(was[2], row[2])}"))
        elif was[1:5] != row[1:5] or was[2] < 0:  # its facts, or a racy time read again
            again = was[2] != row[2] or was[2] < 0
            touched.append((label, _times(was[2], row[2]) if again else "replaced, same time"))
    changed += [(name or shown, "gone") for name in old if name not in new]
    return changed + touched


def _input_why(task: InputFile, reason: Reason, scan: Scan | None) -> Why:
    """Why an input file's record is written again: its files (content or times), or why it
    cannot be read."""
    shown = json.loads(task._tp.args_json or "{}").get("path", str(task.path))
    if scan is None or reason is Reason.CORRUPT:
        return _why(task, WhyKind.CORRUPT, Reason.CORRUPT.value)
    if reason is Reason.NO_FILE:
        return _why(task, WhyKind.NO_FILE, f"{reason.value}: {scan.error}")
    if reason is Reason.MISSING:
        files = f"{len(scan.rows)} file{'s' if len(scan.rows) != 1 else ''}"
        return _why(task, WhyKind.NEW, f"{reason.value}: a new input ({files} to read)")
    changes = file_changes(shown, stored_rows(task), scan)
    words = [f"{name}: {what}" for name, what in changes[:FILES_SHOWN]]
    more = f", and {len(changes) - FILES_SHOWN} more" if len(changes) > FILES_SHOWN else ""
    kind = WhyKind.FILES if reason is Reason.FILES else WhyKind.TOUCHED
    summary = f"{reason.value}: {'; '.join(words)}{more}" if words else reason.value
    return _why(task, kind, summary, changed=tuple(name for name, _ in changes))


# -- every reason -------------------------------------------------------------------------------


def _why(task: TaskBase, kind: WhyKind, summary: str, **facts: Any) -> Why:
    return Why(repr(task), task.task_name, task._tp.task_id, kind, summary, **facts)


def _read(task: TaskBase) -> tuple[Record | None, str]:
    try:
        return read_record(task._tp.store, task._tp_loc()), ""
    except CorruptResultError as exc:
        return None, str(exc)


class Explainer:
    """Explains the verdicts of one plan (`stale`, from `decide`, and the `ledger` it filled),
    task by task."""

    def __init__(
        self,
        stale: Mapping[TaskBase, Reason],
        fingerprints: Fingerprints,
        ledger: Ledger | None = None,
    ) -> None:
        self.stale = stale
        self.fingerprints = fingerprints
        self.ledger = ledger if ledger is not None else Ledger()
        self._stored = _StoredArgs()
        self._done: dict[TaskBase, Why] = {}
        self._causes: dict[TaskBase, TaskBase] = {}

    def why(self, task: TaskBase) -> Why:
        """Why `task` would run (it must be stale in the plan)."""
        found = self._done.get(task)
        if found is None:
            found = self._done[task] = self._explain(task)
        return found

    def _reruns(self, task: TaskBase) -> bool:
        """Whether `task` reruns with a result not known yet (an input file written again
        has its stamp already)."""
        return task in self.stale and task not in self.ledger.stamps

    def _explain(self, task: TaskBase) -> Why:
        reason = self.stale[task]
        if type(task) is InputFile:
            return _input_why(task, reason, self.ledger.scans.get(task))
        if reason is Reason.UPSTREAM:
            return self._upstream_why(task)
        if reason is Reason.MISSING:
            return _missing_why(task, self._stored)
        if reason is Reason.FORCED:
            return _why(
                task,
                WhyKind.FORCED,
                f"{reason.value}: the command line reruns its Main task; pass "
                "--dont-force-entrypoint to use its cached result",
            )
        record, damage = _read(task)
        if reason is Reason.CORRUPT or record is None:
            return _why(task, WhyKind.CORRUPT, f"{Reason.CORRUPT.value} ({damage or 'gone'})")
        if reason is Reason.VERSION:
            return _why(
                task,
                WhyKind.VERSION,
                f"{reason.value}: {record.version!r} -> {type(task).task_version!r}",
            )
        if reason is Reason.CODE:
            return _code_why(task, record, self.fingerprints)
        if reason is Reason.RECOVERED:
            return _why(
                task,
                WhyKind.RECOVERED,
                f"{reason.value}: it ran with the failure of an upstream task it tolerates "
                "(allow_failed) as a value, and reruns with that task's result",
            )
        changed = [u for u in task._tp.upstream if self.stale.get(u) is Reason.FILES]
        if changed:
            first = self.why(changed[0])
            detail = first.summary.removeprefix(f"{Reason.FILES.value}: ")
            more = f" (and {len(changed) - 1} more inputs)" if len(changed) > 1 else ""
            return _why(
                task,
                WhyKind.INPUTS,
                f"{reason.value}: the files of {first.task} changed ({detail}){more}",
                upstream=first.task,
                cause=f"{first.task}: {first.summary}",
                changed=first.changed,
            )
        return _why(
            task,
            WhyKind.INPUTS,
            f"{reason.value} (another run recomputed it); its own result would be the same "
            "only if that upstream result is",
        )

    def _cause(self, task: TaskBase) -> TaskBase:
        """The first task upstream of `task` (through first stale upstream tasks) that runs
        for a reason of its own; remembered, so a long chain is followed once."""
        path = []
        t = task
        while self.stale[t] is Reason.UPSTREAM and t not in self._causes:
            path.append(t)
            t = next(u for u in t._tp.upstream if self._reruns(u))
        root = self._causes.get(t, t)
        for p in path:
            self._causes[p] = root
        return root

    def _upstream_why(self, task: TaskBase) -> Why:
        ups = [u for u in task._tp.upstream if self._reruns(u)]
        first = ups[0]
        cause = self._cause(task)
        root = self.why(cause)
        more = f" and {len(ups) - 1} more" if len(ups) > 1 else ""
        via = f"{first!r}{more}"
        because = f"{root.task}: {root.summary}" if cause is not first else root.summary
        return _why(
            task,
            WhyKind.UPSTREAM,
            f"{Reason.UPSTREAM.value}: {via} ({because})",
            upstream=repr(first),
            cause=f"{root.task}: {root.summary}",
        )


def select_tasks(order: Sequence[TaskBase], patterns: Sequence[str]) -> list[TaskBase]:
    """The tasks of a graph that ``NAME``, a glob like ``'pipe.*'`` or ``NAME/ID`` (an id
    prefix will do) select; every task if no pattern is given. UsageError for a pattern that
    selects nothing."""
    if not patterns:
        return list(order)
    chosen: dict[TaskBase, None] = {}
    for pattern in patterns:
        name, _, id_prefix = pattern.partition("/")
        hits = [
            t
            for t in order
            if fnmatch.fnmatchcase(t.task_name, name) and t._tp.task_id.startswith(id_prefix)
        ]
        if not hits:
            names = sorted({t.task_name for t in order})
            hint = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
            raise UsageError(
                f"no task of this graph matches {pattern!r} (task names: {hint}); give a task "
                "name, a glob like 'pipe.*', or NAME/ID"
            )
        chosen.update(dict.fromkeys(hits))
    return [t for t in order if t in chosen]


def explain(
    order: Sequence[TaskBase],
    stale: Mapping[TaskBase, Reason],
    fingerprints: Fingerprints,
    tasks: Iterable[TaskBase] | None = None,
    ledger: Ledger | None = None,
) -> list[Why]:
    """Why each of `tasks` (default: every task of `order`) that is stale would run, in
    graph order (`ledger`: the plan's, for input files)."""
    chosen: Collection[TaskBase] = set(tasks) if tasks is not None else stale.keys()
    explainer = Explainer(stale, fingerprints, ledger)
    return [explainer.why(t) for t in order if t in stale and t in chosen]


# Kinds whose summary names something of each task (its error, its closest arguments, its
# files): the text shows one line per task name and kind, the first task's words; --json has
# every task.
BY_KIND = frozenset(
    {
        WhyKind.FAILED,
        WhyKind.ARGUMENTS,
        WhyKind.CORRUPT,
        WhyKind.INPUTS,  # which input file changed
        WhyKind.FILES,  # which of its files changed
        WhyKind.TOUCHED,
        WhyKind.NO_FILE,
    }
)


def format_why(whys: Sequence[Why], total: int, selected: int) -> str:
    """The text of ``taskproc why``: causes first (a task's own reason, with a diff of the
    changed code), then the tasks that rerun because of them; tasks with the same reason are
    one line. The first line names the first cause."""
    if not whys:
        scope = "all" if selected == total else f"the {selected} selected of the"
        return f"nothing would run: {scope} {total} tasks are cached and fresh"
    groups: dict[tuple[str, str], list[Why]] = {}
    for w in whys:
        if w.kind in BY_KIND:  # the words differ from task to task: one line per kind
            summary = w.kind.value
        else:
            summary = w.summary if w.kind is not WhyKind.UPSTREAM else w.cause
        groups.setdefault((w.task_name, f"{w.kind is WhyKind.UPSTREAM}{summary}"), []).append(w)
    ordered = sorted(groups.values(), key=lambda g: g[0].kind is WhyKind.UPSTREAM)
    lines = []
    for group in ordered:
        first = group[0]
        who = first.task if len(group) == 1 else f"{first.task} and {len(group) - 1} more"
        lines.append(f"{who}: {first.summary}")
        if first.diff:
            lines += [f"    {line}" for line in first.diff.splitlines()]
    scope = "" if selected == total else f" (of {selected} selected)"
    lines.append(f"{len(whys)} of {total} tasks would run{scope}")
    return "\n".join(lines)


def why_json(whys: Sequence[Why], total: int) -> dict[str, Any]:
    """The machine-readable form of ``taskproc why --json``."""
    return {"would_run": len(whys), "tasks_in_graph": total, "tasks": [w.to_json() for w in whys]}


@dataclass(frozen=True, slots=True)
class WhyReport:
    """`why` for a graph: the reasons, how many tasks the graph has and how many were
    selected, and the warnings met while reading the cache."""

    whys: tuple[Why, ...]
    total: int
    selected: int
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Planned:
    """A run's plan for a graph, made by a view: the tasks upstream first, the plan, the
    fingerprints and the throwaway ledger it used, and the warnings it gave."""

    order: list[TaskBase]
    plan: Plan
    fingerprints: Fingerprints
    ledger: Ledger
    warnings: tuple[str, ...]


def plan_of(root: TaskBase, *, detect_source_change: bool, force_entrypoint: bool) -> Planned:
    """The run's plan for the graph of `root` (see `Planned`). Reads the cache, never writes,
    and changes nothing of the tasks: the plan's facts go to a ledger of its own."""
    order = collect(root)
    fingerprints = Fingerprints()
    ledger = Ledger()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = decide(
            order,
            root,
            force_root=force_entrypoint,
            code_id_of=fingerprints,
            check_code=detect_source_change,
            ledger=ledger,
        )
    return Planned(order, plan, fingerprints, ledger, tuple(str(w.message) for w in caught))


def why_report(
    root: TaskBase,
    patterns: Sequence[str] = (),
    *,
    detect_source_change: bool = True,
    force_entrypoint: bool = False,
) -> WhyReport:
    """Why the tasks of `root`'s graph that `patterns` select (default: all) would run."""
    planned = plan_of(
        root, detect_source_change=detect_source_change, force_entrypoint=force_entrypoint
    )
    chosen = select_tasks(planned.order, patterns)
    whys = explain(planned.order, planned.plan.stale, planned.fingerprints, chosen, planned.ledger)
    return WhyReport(tuple(whys), len(planned.order), len(chosen), planned.warnings)
