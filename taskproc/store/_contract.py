"""The store contract: what the engine asks of a cache, whatever holds it.

The task model, the planner, the run loop and the views never build a path or name a file of
the cache: they ask a `Store`. A task's place in a store is an opaque string, its *location*,
that `Store.locate(task_name, task_id)` gives; every other per-task method takes it.
`LocalStore` (a folder tree, see its module) is the store of every run; `MemoryStore` keeps
everything in a dict and serves the unit tests of the run loop.

Besides results, a store keeps the code identities results were computed with
(`write_code`, `read_code`), once per distinct identity, so that ``taskproc why`` can show what
changed.

Besides, a store keeps small documents that runs leave for people and tools, the *metadata*
(`write_meta`, `read_meta`, `list_meta`, `delete_meta`): a run's live record and its history
for ``taskproc serve``. A metadata key is ``/``-separated words (`check_meta_key`).

Errors: a missing result is ``FileNotFoundError``; a damaged one `CorruptResultError`; a
store that cannot be used `CacheError`; a claim that another runner broke while its result was
being written `ClaimTaken`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from taskproc.store._claims import Claim
from taskproc.store._resultfile import Record

# A claim held by this process: what `claim` returns and `commit`/`drop_claim` take back.
# (For a folder, the open descriptor of the claim file.)
Ticket = int

_META_WORD = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def check_meta_key(key: str) -> str:
    """`key` if it is a metadata key: ``/``-separated words of letters, digits, ``_``, ``-``
    and ``.``, none starting with ``.`` (so no ``..``, no hidden or temporary names), not
    absolute, at most 200 characters; else ValueError."""
    words = key.split("/")
    if len(key) > 200 or not all(_META_WORD.fullmatch(w) for w in words):
        raise ValueError(
            "a metadata key must be '/'-separated words of letters, digits, '_', '-' and '.' "
            f"(not starting with '.'), got {key!r}"
        )
    return key


@dataclass(frozen=True, slots=True)
class StoredTask:
    """One task as found in a store by `Store.scan`: facts only, no verdict."""

    task_name: str
    task_id: str
    location: str
    record: Record | None  # None: no result, or an unreadable one (see `damage`)
    facts: dict[str, Any]  # duration, attempts, host, pid, finished of the run that wrote it
    result_time: float | None  # when the result was written (the store's clock); None: none
    error_time: float | None  # when the last failure was recorded; None: none
    claim: Claim | None
    claimed_since: float | None
    damage: str  # why the result cannot be read; "" if it can or there is none
    upstream: tuple[str, ...] | None  # keys of the upstream tasks; None: cannot tell
    size: int | None  # bytes held for the task (with `with_size`), else None
    log: str  # where its stderr is, for people ("" if the store keeps none)
    error_file: str  # where its last failure is, for people ("" if the store keeps none)


@dataclass(frozen=True, slots=True)
class CodeEntry:
    """One thing a task's code identity covers: a function, class, constant, an external name
    or a distribution's version (`kind`), with the digest of what counts in it and its source
    for people (comments kept; "" when unknown)."""

    key: str  # e.g. ``pipe.scale``, ``pipe.FACTOR``, ``numpy (distribution)``
    kind: str  # class, function, constant, object, external, unreadable, distribution
    digest: str
    source: str


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run of a graph on the store, for people (``taskproc status``): its wall time from
    start to end (each by the clock of the runner's host), and what it did."""

    started: float
    finished: float
    host: str
    pid: int
    ran: int  # tasks it ran to a result
    failed: int

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


@dataclass(frozen=True, slots=True)
class PrefixFiles:
    """Where a prefix run keeps its job, its outcome and the prefix command's own output."""

    job: str
    outcome: str
    stdout: str
    stderr: str


class Store(Protocol):
    """A cache of task results. Every method is safe to call from several runners at once."""

    @property
    def root(self) -> str:
        """Where the store is, for messages (a folder, or a description)."""
        ...

    # -- the store as a whole -----------------------------------------------------------

    def is_cache(self) -> bool:
        """Whether this is a taskproc cache (made by `ensure`)."""
        ...

    def ensure(self) -> None:
        """Make the store ready for a run (done when a run starts, never while building)."""
        ...

    def task_names(self) -> list[str]:
        """The task names that have tasks in the store, sorted."""
        ...

    def task_ids(self, task_name: str) -> frozenset[str] | None:
        """The ids of the stored tasks of `task_name`; None if the store cannot tell cheaply."""
        ...

    def scan(self, names: Iterable[str], *, with_size: bool = False) -> list[StoredTask]:
        """Every stored task of the given task names, as found."""
        ...

    def read_args(self, loc: str) -> str | None:
        """The canonical arguments the task was stored with; None if they cannot be read."""
        ...

    def read_stamp(self, task_name: str, task_id: str) -> str | None:
        """The stamp of a task's result; None if it has none (or an unreadable one)."""
        ...

    def write_last_run(self, summary: RunSummary) -> None:
        """Keep `summary` as the last run, unless the one kept finished later (several
        runners on one store: the last to finish wins). Raises OSError if it cannot be
        written (callers may ignore it: it only serves people)."""
        ...

    def read_last_run(self) -> RunSummary | None:
        """The last run kept by `write_last_run`; None if there is none (or it is unreadable)."""
        ...

    # -- code identities -------------------------------------------------------------------

    def write_code(self, code: str, entries: Sequence[CodeEntry]) -> None:
        """Keep what the code identity `code` covers, once: a second write of the same `code`
        does nothing. Raises OSError if it cannot be written (callers may ignore it: it only
        serves explanations)."""
        ...

    def read_code(self, code: str) -> tuple[CodeEntry, ...] | None:
        """What the code identity `code` covers; None if it was never written (or is lost)."""
        ...

    def code_ids(self) -> frozenset[str]:
        """The code identities kept."""
        ...

    def delete_code(self, code: str) -> None:
        """Forget the code identity `code` (nothing if it is not kept)."""
        ...

    # -- one task: results ---------------------------------------------------------------

    def locate(self, task_name: str, task_id: str) -> str:
        """The location of a task in this store (the key every method below takes)."""
        ...

    def read_record(self, loc: str) -> Record | None:
        """The record of the task's result; None if there is none. CorruptResultError."""
        ...

    def load(self, loc: str, who: str) -> Any:
        """The task's result. FileNotFoundError if none, CorruptResultError if damaged."""
        ...

    def discard_result(self, loc: str) -> None:
        """Delete a result found damaged, so that it is recomputed."""
        ...

    def result_file(self, loc: str) -> str:
        """Where the result is (for people)."""
        ...

    def data_folder(self, loc: str) -> Path:
        """The task's own folder for its files (`task_directory`), made if missing."""
        ...

    # -- one task: running it ---------------------------------------------------------------

    def make_folder(self, loc: str) -> bool:
        """Make room for the task; True if it is new (so it holds nothing old)."""
        ...

    def claim(self, loc: str, me: Claim) -> Ticket | Claim:
        """Claim the task: our ticket, or the claim of the runner that holds it."""
        ...

    def close_claim(self, loc: str, ticket: Ticket, *, remove: bool) -> None:
        """Done with our ticket: after a commit (`remove` False: the commit released the
        claim, or another runner holds it now), or giving the claim up (`remove` True)."""
        ...

    def read_claim(self, loc: str) -> Claim | None:
        """Who holds the task, if anybody."""
        ...

    def release(self, loc: str, me: Claim, verify: bool = True) -> None:
        """Remove our claim on the task (with `verify`, only if it is still ours)."""
        ...

    def break_claim(self, loc: str, dead: Claim, me: Claim) -> bool:
        """Remove the claim `dead` if it is still the one in place; True if removed."""
        ...

    def commit(
        self,
        loc: str,
        value: Any,
        record: Record,
        level: int,
        info: str,
        ticket: Ticket | None,
    ) -> int:
        """Save the result atomically (through our claim, releasing it); return its size.

        ClaimTaken if another runner broke our claim meanwhile (nothing is committed). On
        any failure nothing is committed and the claim is still ours.
        """
        ...

    def rekey(self, loc: str, expect: Record, record: Record, ticket: Ticket) -> bool:
        """Give the task's result the record `record` instead of `expect`, keeping the result
        itself as it is (``taskproc accept``); through our claim `ticket`, which it releases
        when it returns True. False if the stored record is no longer `expect` (nothing is
        changed and the claim is still ours). ClaimTaken if another runner broke our claim."""
        ...

    def delete_unchanged(self, loc: str, me: Claim, stamp: str | None) -> int | None:
        """Delete the task's place whole (result, files, `task_directory`) if nobody holds it
        and its result still has the stamp `stamp` (None: still has no result); return the
        bytes freed, or None if it was left alone (held, or changed since it was looked at).
        Interrupted at any moment, it leaves the task's place whole or gone, never in part."""
        ...

    def start_attempt(
        self,
        loc: str,
        args_json: str,
        links: Sequence[tuple[str, str, str]],
        *,
        fresh: bool,
        keep_output: bool,
    ) -> None:
        """Get the task's place ready for a run: forget its last error (and its output unless
        `keep_output`), record its arguments, and link its upstream tasks, given as
        (attribute path, task name, task id). `fresh`: the place was just made."""
        ...

    def output_files(self, loc: str) -> tuple[str, str] | None:
        """The files the task's stdout and stderr go to; None if the store keeps none."""
        ...

    def deadline_file(self, loc: str) -> str | None:
        """Where a worker process writes the tracebacks of a task it ends for overrunning its
        `task_timeout` (empty while the task keeps to it); None if the store keeps none."""
        ...

    def output_tail(self, loc: str, lines: int = 10) -> str:
        """The last lines the task printed, stdout and stderr labelled."""
        ...

    def read_output(self, loc: str) -> tuple[str, str]:
        """Everything the task printed, (stdout, stderr)."""
        ...

    def write_error(self, loc: str, text: str) -> None:
        """Record the task's failure (its traceback)."""
        ...

    def read_error(self, loc: str) -> str | None:
        """The recorded failure of the task; None if there is none."""
        ...

    def prefix_files(self, loc: str) -> PrefixFiles:
        """The files of a prefix run of the task."""
        ...

    # -- clearing ---------------------------------------------------------------------------

    def clear_task(self, task_name: str, task_id: str, *, keep_data: bool = False) -> None:
        """Delete the stored task: its result, record, output and files. With `keep_data`,
        its data folder (`task_directory`), if it was made, stays as an empty folder."""
        ...

    def clear_task_name(self, task_name: str) -> None: ...

    def clear_all(self) -> None:
        """Delete every stored task. Refuses a folder that is not a cache."""
        ...

    def empty_trash(self) -> None:
        """Remove what interrupted deletions left behind (never part of any task)."""
        ...

    # -- runners -----------------------------------------------------------------------------

    def write_beat(self, runner: str, payload: str) -> None: ...

    def read_beat(self, runner: str) -> str:
        """The runner's last heartbeat; "" if it has none (it stopped, or never ran)."""
        ...

    def end_beat(self, runner: str) -> None: ...

    # -- metadata: small documents for people and tools ------------------------------------

    def write_meta(self, key: str, data: bytes) -> None:
        """Keep `data` under `key` (see `check_meta_key`), replacing what was there at once:
        a reader sees the old document or the new one, whole. OSError if it cannot."""
        ...

    def read_meta(self, key: str) -> bytes | None:
        """The document kept under `key`; None if there is none."""
        ...

    def list_meta(self, prefix: str) -> list[str]:
        """The keys under the folder `prefix` (``"runs"`` gives ``runs/a.json``,
        ``runs/b/c.json``; a trailing ``/`` is allowed), sorted; [] if none."""
        ...

    def delete_meta(self, key: str) -> None:
        """Forget the document under `key` (nothing if there is none)."""
        ...
