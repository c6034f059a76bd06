"""The store contract: what the engine asks of a cache, whatever holds it.

The task model, the planner, the run loop and the views never build a path or name a file of
the cache: they ask a `Store`. A task's place in a store is an opaque string, its *location*,
that `Store.locate(task_name, task_id)` gives; every other per-task method takes it.
`LocalStore` (a folder tree) is the store of a cache folder, `BucketStore` of a cache in a
bucket (``s3://``); `MemoryStore` keeps everything in a dict and serves the unit tests of the
run loop.

The core (`Store`, 24 methods) is what every store implements. Its guarantees are stated on the
commit point, the one step that makes a result visible:

- **Whole or none.** A reader (`load`, `read_records`) sees a whole result of the right task,
  or none: a result appears in one step, carries its task's key (`Record.task`), and is
  checked when it is read.
- **Commit is a compare-and-swap.** A result is committed through a `Lease` (the claim on its
  task): it replaces whatever result the task had only while that lease is still the task's
  claim. A lease found broken at commit (another runner took it for dead) commits nothing
  (`ClaimTaken`); a double commit of one task leaves one whole result. (Where the check and the
  write are two requests, a bucket's, a claim broken between them still commits: the
  breaker's own commit then expects the version this one replaced, and loses.)
- **Deletion removes the result first.** A task is deleted whole or not at all, and a reader
  never sees its result without the rest of it (arguments, links).
- **Every method is safe from several runners at once**, on one machine or several.

What only some stores can do are *capabilities*: separate runtime-checkable protocols
(`OutputFiles`, `DeadlineFiles`, `PrefixJobs`, `TaskFolders`, `Portable`) that callers test
with `isinstance` before a run starts, so a store without one gets a one-line `ConfigError` up
front instead of a feature that silently vanishes (`require`).

Small facts of the cache as a whole (heartbeats, code identities, the last run, runs in
progress) are *meta* entries: named byte strings (`write_meta`, `read_meta`, `list_meta`,
`delete_meta`), whose formats live in the modules that use them.

Errors: a missing result is ``FileNotFoundError``; a damaged one `CorruptResultError`; a
store that cannot be used `CacheError`; a claim that another runner broke while its result was
being written `ClaimTaken`; a result loaded with a stamp that is no longer its stamp (another
runner replaced it) `ResultReplaced`.
"""

from __future__ import annotations

import json
import os
import re
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from taskproc.errors import ConfigError

# -- records --------------------------------------------------------------------------------

# The records are NamedTuples, not frozen dataclasses: this module is on the path of every
# worker process (`python -m taskproc.run.worker`), and `dataclasses` costs a worker's start
# about 15 ms (it imports `inspect`, and compiles six methods per class). A NamedTuple is as
# immutable, pickles as its class and a tuple, and costs a twentieth of that to define; code
# that takes records never treats them as tuples.


class Record(NamedTuple):
    """What a result was computed from, and whose it is. `stamp` is new for every write of the
    result; `code_id` the code identity of the code that computed it; `inputs` the digest of
    the stamps of the upstream results it was computed from; `task` the key (``name/id``) of
    the task it belongs to ("" in results written before results were bound to their task)."""

    stamp: str
    code_id: str
    version: str | int | None
    inputs: str
    task: str = ""

    def to_text(self) -> str:
        """``2 <stamp> <code_id> <inputs> <task> <version as JSON>``: quick to parse, readable."""
        return f"2 {self.stamp} {self.code_id} {self.inputs} {self.task} {json.dumps(self.version)}"

    @staticmethod
    def parse(text: str) -> Record:
        """The record in `text`; ValueError if it is not one."""
        fmt, stamp, code_id, inputs, rest = text.split(" ", 4)
        if fmt == "2":
            task, version = rest.split(" ", 1)
        elif fmt == "1":
            task, version = "", rest
        else:
            raise ValueError(f"unknown record format {fmt!r}")
        value = None if version == "null" else json.loads(version)
        if value is not None and type(value) not in (str, int):
            raise ValueError(f"bad version {version!r}")
        return Record(stamp, code_id, value, inputs, task)

    def belongs_to(self, task: str) -> bool:
        """Whether this is a result of the task `task` (``name/id``); unbound ones may be."""
        return not self.task or self.task == task


class Unreadable(NamedTuple):
    """A stored result whose record cannot be read (`Store.read_records`): why."""

    reason: str
    path: str  # where it is, for people and for `discard_result`


class Holder(NamedTuple):
    """Who holds (or would hold) a task: a runner id, its host and its process id, and the
    process that does the work (`worker`: a pool worker's pid; 0 when the runner itself holds
    it). A holder is dead only when both are gone: a worker that outlives its runner still owns
    its task."""

    runner: str
    host: str
    pid: int
    worker: int = 0

    def to_json(self) -> str:
        data = {"runner": self.runner, "host": self.host, "pid": self.pid}
        if self.worker:
            data["worker"] = self.worker
        return json.dumps(data)

    def same_runner(self, other: Holder) -> bool:
        """Whether `other` names the same runner (whichever of its processes works on it)."""
        return (self.runner, self.host, self.pid) == (other.runner, other.host, other.pid)

    def in_worker(self) -> Holder:
        """This runner as the holder of a task worked on by the calling process."""
        pid = os.getpid()
        return self if pid == self.pid else Holder(self.runner, self.host, self.pid, pid)

    @staticmethod
    def parse(text: str) -> Holder:
        """The holder `text` (JSON) names; an anonymous one if it names none."""
        try:
            raw = json.loads(text)
            worker = int(raw.get("worker", 0))
            return Holder(str(raw["runner"]), str(raw["host"]), int(raw["pid"]), worker)
        except (ValueError, KeyError, TypeError, AttributeError):
            return Holder("", "", 0)


class Handover(NamedTuple):
    """A claim passed from the runner that took it to a process that will work on the task
    (a prefix command's worker): enough for `Store.resume` to hold it there. `token` is the
    store's own (an inode locally, an ETag in a bucket)."""

    location: str
    holder: Holder
    token: str
    fresh: bool = False  # the task's place was made for this claim


class ClaimTaken(Exception):
    """Internal: our claim was found replaced when we committed (another runner took us for
    dead and broke it); the result was not committed."""


class ResultReplaced(Exception):
    """Internal: the result `Store.load` found is not the one the caller expected (another
    runner replaced it). `location` is the task's, `record` the record found."""

    def __init__(self, location: str, record: Record) -> None:
        super().__init__(f"{location}: the result was replaced (its stamp is {record.stamp})")
        self.location = location
        self.record = record

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.location, self.record))


class StoredTask(NamedTuple):
    """One task as found in a store by `Store.scan`: facts only, no verdict."""

    task_name: str
    task_id: str
    location: str
    record: Record | None  # None: no result, or an unreadable one (see `damage`)
    facts: dict[str, Any]  # duration, attempts, host, pid, finished of the run that wrote it
    result_time: float | None  # when the result was written (the store's clock); None: none
    error_time: float | None  # when the last failure was recorded; None: none
    holder: Holder | None  # who holds its claim, if anybody
    claimed_since: float | None
    damage: str  # why the result cannot be read; "" if it can or there is none
    upstream: tuple[str, ...] | None  # keys of the upstream tasks; None: cannot tell
    size: int | None  # bytes held for the task (with `with_size`), else None
    log: str  # where its stderr is, for people ("" if the store keeps none)
    error_file: str  # where its last failure is, for people ("" if the store keeps none)
    started: bool = False  # a run recorded its arguments (it started, at least once)


class CodeEntry(NamedTuple):
    """One thing a task's code identity covers: a function, class, constant, an external name
    or a distribution's version (`kind`), with the digest of what counts in it and its source
    for people (comments kept; "" when unknown)."""

    key: str  # e.g. ``pipe.scale``, ``pipe.FACTOR``, ``numpy (distribution)``
    kind: str  # class, function, constant, object, external, unreadable, distribution
    digest: str
    source: str


class PrefixFiles(NamedTuple):
    """Where a prefix run keeps its job, its outcome and the prefix command's own output."""

    job: str
    outcome: str
    stdout: str
    stderr: str


# The streams of a task's captured output (`Store.read_output`).
STREAMS = ("stdout", "stderr")


# -- leases ---------------------------------------------------------------------------------


class Lease(Protocol):
    """Our claim on one task, taken by `Store.claim` (or `Store.resume`) and given back by
    leaving its ``with`` block.

    Inside the block, do at most one of `commit` (a new result), `rekey` (a new record for the
    result as it is) and `delete` (the task whole); each gives the claim back when it
    succeeds. Leaving the block without one of them releases the claim. A lease found broken
    when it commits (another runner took us for dead) changes nothing: `ClaimTaken`.
    """

    @property
    def location(self) -> str: ...

    @property
    def fresh(self) -> bool:
        """Whether the task's place was made for this claim (so it holds nothing old)."""
        ...

    def start(
        self, args_json: str, links: Sequence[tuple[str, str, str]], *, keep_output: bool
    ) -> None:
        """Get the task's place ready for a run: forget its last error (and its output unless
        `keep_output`), record its arguments, and link its upstream tasks, given as
        (attribute path, task name, task id); links of an earlier run that differ go."""
        ...

    def commit(self, value: Any, record: Record, level: int, info: str) -> int:
        """Save the result (compressed at `level`; `info` a line of JSON facts of the run)
        and give the claim back; return the result's size. ClaimTaken if our claim is found
        broken (nothing is committed); on any other failure nothing is committed and the
        claim is still ours."""
        ...

    def rekey(self, expect: Record, record: Record) -> bool:
        """Give the stored result the record `record` instead of `expect`, keeping the result
        itself (``taskproc accept``), and give the claim back. False if the stored record is
        no longer `expect` (nothing changes, the claim is still ours). ClaimTaken."""
        ...

    def delete(self, stamp: str | None) -> int | None:
        """Delete the task whole (result, files, `task_directory`) if its result still has
        the stamp `stamp` (None: it still has no result); the bytes freed, or None if it was
        left alone (changed since it was looked at). Interrupted at any moment, it leaves
        the task whole or gone, never in part."""
        ...

    def hand_over(self) -> Handover:
        """The claim, for another process to `Store.resume` (it stays in place)."""
        ...

    def release(self) -> None:
        """Give the claim back, if it is still ours (done when the block is left)."""
        ...

    def __enter__(self) -> Lease: ...

    def __exit__(self, *exc: object) -> None: ...


# -- the store ------------------------------------------------------------------------------


class Store(Protocol):
    """A cache of task results (the guarantees are in the module docstring)."""

    @property
    def root(self) -> str:
        """Where the store is, for messages (a folder, or a URL)."""
        ...

    # -- the store as a whole -----------------------------------------------------------

    def is_cache(self) -> bool:
        """Whether this is a taskproc cache (made by `ensure`)."""
        ...

    def ensure(self) -> None:
        """Make the store ready for a run (done when a run starts, never while building), and
        finish what interrupted deletions left behind."""
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

    # -- one task: reading --------------------------------------------------------------

    def locate(self, task_name: str, task_id: str) -> str:
        """The location of a task in this store (the key every method below takes)."""
        ...

    def read_records(self, locs: Sequence[str]) -> list[Record | Unreadable | None]:
        """The record of each task's result, in order: None if it has none, `Unreadable` if
        it cannot be read. One call for many tasks, so that a store far away answers in few
        round trips. Raises CacheError if the store cannot be read at all."""
        ...

    def load(self, loc: str, who: str, stamp: str | None = None) -> Any:
        """The task's result (`who` names the task in errors). FileNotFoundError if none,
        CorruptResultError if damaged. With `stamp`, only the result with that stamp: the
        result read is checked in the same step, and `ResultReplaced` raised if it has another
        (a store that keeps a copy of the result with that stamp may return it instead)."""
        ...

    def read_args(self, loc: str) -> str | None:
        """The canonical arguments the task was stored with; None if they cannot be read."""
        ...

    def read_error(self, loc: str) -> str | None:
        """The recorded failure of the task; None if there is none."""
        ...

    def read_output(self, loc: str, stream: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        """Up to `limit` bytes of what the task printed on `stream` (``stdout`` or
        ``stderr``), from byte `offset` (from the end when negative); b"" if none."""
        ...

    def result_file(self, loc: str) -> str:
        """Where the result is, for people."""
        ...

    # -- one task: claims and writing ------------------------------------------------------

    def claim(self, loc: str, me: Holder) -> Lease | Holder:
        """Claim the task (making its place if needed): our lease, or who holds it."""
        ...

    def resume(self, handover: Handover) -> Lease | None:
        """The claim handed over by its taker, held here; None if it is no longer in place."""
        ...

    def read_claim(self, loc: str) -> Holder | None:
        """Who holds the task, if anybody."""
        ...

    def break_claim(self, loc: str, dead: Holder, me: Holder) -> bool:
        """Remove the claim of `dead` if it is still the one in place (exactly one of several
        breakers succeeds); True if the task is free now."""
        ...

    def write_error(self, loc: str, text: str) -> None:
        """Record the task's failure (its traceback); never raises."""
        ...

    def discard_result(self, loc: str) -> None:
        """Delete a result found damaged, so that it is recomputed."""
        ...

    def clear(
        self, task_name: str | None = None, task_id: str | None = None, *, keep_data: bool = False
    ) -> None:
        """Delete stored tasks: one (`task_name` and `task_id`), every task of `task_name`,
        or every task (refusing a folder that is not a cache). With `keep_data`, a task's
        `task_directory`, if it was made, stays as an empty folder."""
        ...

    # -- meta: small named facts of the cache as a whole ------------------------------------

    def write_meta(self, key: str, data: bytes, *, replace: bool = True) -> None:
        """Keep `data` under `key` (``/``-separated words, see `check_key`), atomically;
        without `replace`, only if nothing is kept under it yet. Raises OSError if it cannot
        be written."""
        ...

    def read_meta(self, key: str) -> bytes | None:
        """What is kept under `key`; None if nothing (or it cannot be read)."""
        ...

    def list_meta(self, prefix: str) -> list[str]:
        """The keys kept under the folder-like `prefix` (``runners/``), sorted."""
        ...

    def delete_meta(self, key: str) -> None:
        """Forget `key` (nothing if it is not kept)."""
        ...


# -- capabilities ---------------------------------------------------------------------------


@runtime_checkable
class OutputFiles(Protocol):
    """The store keeps a task's captured output in local files, written as the task prints."""

    def output_files(self, loc: str) -> tuple[str, str]:
        """The files the task's stdout and stderr go to."""
        ...


@runtime_checkable
class DeadlineFiles(Protocol):
    """A worker process can leave the tracebacks of a task it ends for overrunning its
    `task_timeout` (hard timeouts in worker processes)."""

    def deadline_file(self, loc: str) -> str:
        """Where that worker writes them (empty while the task keeps to its timeout)."""
        ...


@runtime_checkable
class PrefixJobs(Protocol):
    """Prefix commands can run the store's tasks: a job file the command's worker reads."""

    def prefix_files(self, loc: str) -> PrefixFiles: ...


@runtime_checkable
class TaskFolders(Protocol):
    """Each task has a local folder of its own for its files (`task_directory`)."""

    def data_folder(self, loc: str) -> Path:
        """The task's folder, made if missing."""
        ...


@runtime_checkable
class Portable(Protocol):
    """The store can be used from other processes (worker processes, dask workers, prefix
    commands): it travels to them pickled."""

    def portable(self) -> Store:
        """This store as other processes reopen it (nothing of this process in it)."""
        ...


CAPABILITIES: types.MappingProxyType[type, str] = types.MappingProxyType(
    {
        OutputFiles: "keeps no output files",
        DeadlineFiles: "cannot end a task that overruns its task_timeout in a worker process",
        PrefixJobs: "cannot run tasks through prefix commands",
        TaskFolders: "keeps no task_directory folders",
        Portable: "cannot be used from other processes",
    }
)


def require(store: Store, capability: type, need: str, fix: str) -> None:
    """ConfigError up front if `store` lacks `capability`, which `need` needs; `fix` says what
    to do instead."""
    if not isinstance(store, capability):
        raise ConfigError(f"{need}: the store {store.root} {CAPABILITIES[capability]}; {fix}")


# -- what every caller derives from the core ---------------------------------------------------

_KEY_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_key(key: str) -> str:
    """`key` if it is a meta key: ``/``-separated words of letters, digits, ``_``, ``.``,
    ``-`` (not starting with a dot: no ``..``); ValueError otherwise."""
    words = key.split("/")
    if not key or not all(_KEY_WORD.fullmatch(w) for w in words):
        raise ValueError(f"bad meta key {key!r}")
    return key


def read_record(store: Store, loc: str) -> Record | None:
    """The record of one task's result; None if it has none. CorruptResultError if it
    cannot be read."""
    from taskproc.errors import CorruptResultError

    found = store.read_records([loc])[0]
    if isinstance(found, Unreadable):
        raise CorruptResultError(found.reason, found.path)
    return found


def output_tail(store: Store, loc: str, lines: int = 10) -> str:
    """The last lines the task printed, stdout and stderr labelled."""
    parts = []
    for stream in STREAMS:
        data = store.read_output(loc, stream, -8192)
        text = "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
        if text.strip():
            parts.append(f"[{stream}]\n{text}")
    return "\n".join(parts)
