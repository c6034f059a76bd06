"""`MemoryStore`: a store in a dict, for the unit tests of the run loop.

It shows that the engine needs nothing of a store but its contract: no cache folder. Results
are kept pickled (so a loaded result is a copy, as from a file), claims are entries guarded by
a lock, and nothing outlives the process. Captured output and `task_directory` folders live in
a temporary folder of its own, removed with the store. It cannot be used from other processes
(it is not `Portable`) nor run prefix commands: a run that would need that is refused up front.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskproc.errors import CorruptResultError
from taskproc.store._contract import (
    STREAMS,
    ClaimTaken,
    Handover,
    Holder,
    Lease,
    Record,
    ResultReplaced,
    StoredTask,
    Unreadable,
    check_key,
)


@dataclass(slots=True)
class _Entry:
    """One task in a `MemoryStore` (mutable: the store is its only user)."""

    record: Record | None = None
    blob: bytes | None = None
    facts: str = ""
    holder: Holder | None = None
    ticket: int = 0
    error: str | None = None
    args_json: str | None = None
    upstream: tuple[str, ...] = ()
    damaged: str = ""
    result_time: float | None = None  # when `record` was written (time.time())
    error_time: float | None = None  # when `error` was written


@dataclass(eq=False)  # a store is itself: hashed and compared by identity
class MemoryStore:
    """A store that lives in this process only."""

    name: str = "memory"
    entries: dict[str, _Entry] = field(default_factory=dict)
    meta: dict[str, bytes] = field(default_factory=dict)
    ensured: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _tickets: int = 0
    _folder: str = ""

    @property
    def root(self) -> str:
        return f"<{self.name}>"

    def _entry(self, loc: str) -> _Entry:
        entry = self.entries.get(loc)
        if entry is None:
            entry = self.entries[loc] = _Entry()
        return entry

    def _files(self, loc: str) -> str:
        """The task's folder in this store's temporary folder (made on first use)."""
        with self._lock:
            if not self._folder:
                self._folder = tempfile.mkdtemp(prefix="taskproc-memory-")
                weakref.finalize(self, shutil.rmtree, self._folder, True)
        path = os.path.join(self._folder, loc.replace("/", os.sep))
        os.makedirs(path, exist_ok=True)
        return path

    # -- the store as a whole -----------------------------------------------------------

    def is_cache(self) -> bool:
        return self.ensured

    def ensure(self) -> None:
        self.ensured = True

    def task_names(self) -> list[str]:
        return sorted({loc.partition("/")[0] for loc in self.entries})

    def task_ids(self, task_name: str) -> frozenset[str] | None:
        prefix = f"{task_name}/"
        return frozenset(loc[len(prefix) :] for loc in self.entries if loc.startswith(prefix))

    def scan(self, names: Iterable[str], *, with_size: bool = False) -> list[StoredTask]:
        wanted = set(names)
        out = []
        for loc, e in sorted(self.entries.items()):
            name, _, task_id = loc.partition("/")
            if name not in wanted:
                continue
            out.append(
                StoredTask(
                    task_name=name,
                    task_id=task_id,
                    location=loc,
                    record=e.record,
                    facts=_facts(e.facts) if e.record is not None else {},
                    result_time=e.result_time if e.record is not None else None,
                    error_time=e.error_time if e.error is not None else None,
                    holder=e.holder,
                    claimed_since=None,
                    damage=e.damaged,
                    upstream=e.upstream if e.record is not None else None,
                    size=len(e.blob or b"") if with_size else None,
                    log="",
                    error_file="",
                    started=e.args_json is not None,
                )
            )
        return out

    # -- one task: reading --------------------------------------------------------------

    def locate(self, task_name: str, task_id: str) -> str:
        return f"{task_name}/{task_id}"

    def _record(self, loc: str) -> Record | Unreadable | None:
        entry = self.entries.get(loc)
        record = entry.record if entry is not None else None
        if record is not None and not record.belongs_to(loc):  # a location is the task's key
            return Unreadable(f"{loc}: it is the result of {record.task}", loc)
        return record

    def read_records(self, locs: Sequence[str]) -> list[Record | Unreadable | None]:
        return [self._record(loc) for loc in locs]

    def load(self, loc: str, who: str, stamp: str | None = None) -> Any:
        with self._lock:  # the record and the value of one commit
            entry = self.entries.get(loc)
            if entry is None or entry.blob is None:
                raise FileNotFoundError(loc)
            found = self._record(loc)
            blob = entry.blob
        if isinstance(found, Unreadable):
            raise CorruptResultError(found.reason, loc)
        if stamp is not None and found is not None and found.stamp != stamp:
            raise ResultReplaced(loc, found)
        return pickle.loads(blob)

    def read_args(self, loc: str) -> str | None:
        entry = self.entries.get(loc)
        return entry.args_json if entry is not None else None

    def read_error(self, loc: str) -> str | None:
        entry = self.entries.get(loc)
        return entry.error if entry is not None else None

    def read_output(self, loc: str, stream: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        if not self._folder or loc not in self.entries or stream not in STREAMS:
            return b""
        try:
            with open(os.path.join(self._files(loc), f"{stream}.txt"), "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) + offset) if offset < 0 else offset)
                return f.read(limit)
        except OSError:
            return b""

    def result_file(self, loc: str) -> str:
        return f"{self.root}/{loc}"

    # -- capabilities --------------------------------------------------------------------

    def output_files(self, loc: str) -> tuple[str, str]:
        folder = self._files(loc)
        return os.path.join(folder, "stdout.txt"), os.path.join(folder, "stderr.txt")

    def data_folder(self, loc: str) -> Path:
        path = Path(self._files(loc)) / "data"
        path.mkdir(exist_ok=True)
        return path

    # -- one task: claims and writing ------------------------------------------------------

    def claim(self, loc: str, me: Holder) -> Lease | Holder:
        with self._lock:
            fresh = loc not in self.entries
            entry = self._entry(loc)
            if entry.holder is not None:
                return entry.holder
            self._tickets += 1
            entry.holder, entry.ticket = me, self._tickets
            return _MemoryLease(self, loc, entry.ticket, me, fresh)

    def resume(self, handover: Handover) -> Lease | None:
        with self._lock:
            entry = self.entries.get(handover.location)
            if entry is None or str(entry.ticket) != handover.token:
                return None
            return _MemoryLease(
                self, handover.location, entry.ticket, handover.holder, handover.fresh
            )

    def read_claim(self, loc: str) -> Holder | None:
        entry = self.entries.get(loc)
        return entry.holder if entry is not None else None

    def break_claim(self, loc: str, dead: Holder, me: Holder) -> bool:
        with self._lock:
            entry = self._entry(loc)
            if entry.holder is None:
                return True
            if entry.holder != dead:
                return False
            entry.holder, entry.ticket = None, 0
            return True

    def write_error(self, loc: str, text: str) -> None:
        with self._lock:
            entry = self._entry(loc)
            entry.error, entry.error_time = text, time.time()

    def discard_result(self, loc: str) -> None:
        entry = self.entries.get(loc)
        if entry is not None:
            entry.record = entry.blob = None

    def clear(
        self, task_name: str | None = None, task_id: str | None = None, *, keep_data: bool = False
    ) -> None:
        with self._lock:
            if task_name is None:
                self.entries.clear()
            elif task_id is None:
                for loc in [k for k in self.entries if k.startswith(f"{task_name}/")]:
                    del self.entries[loc]
            else:
                self.entries.pop(self.locate(task_name, task_id), None)

    # -- meta --------------------------------------------------------------------------------

    def write_meta(self, key: str, data: bytes, *, replace: bool = True) -> None:
        with self._lock:
            if replace or check_key(key) not in self.meta:
                self.meta[check_key(key)] = bytes(data)

    def read_meta(self, key: str) -> bytes | None:
        return self.meta.get(check_key(key))

    def list_meta(self, prefix: str) -> list[str]:
        folder = prefix.rstrip("/")
        start = f"{folder}/" if folder else ""
        return sorted(k for k in self.meta if k.startswith(start) and "/" not in k[len(start) :])

    def delete_meta(self, key: str) -> None:
        with self._lock:
            self.meta.pop(check_key(key), None)


class _MemoryLease:
    """A claim in a `MemoryStore`: its ticket number."""

    __slots__ = ("_store", "_loc", "_ticket", "_holder", "_fresh", "_over")

    def __init__(
        self, store: MemoryStore, loc: str, ticket: int, holder: Holder, fresh: bool
    ) -> None:
        self._store = store
        self._loc = loc
        self._ticket = ticket
        self._holder = holder
        self._fresh = fresh
        self._over = False

    @property
    def location(self) -> str:
        return self._loc

    @property
    def fresh(self) -> bool:
        return self._fresh

    def _ours(self) -> _Entry:
        """Our entry, if our claim is still in place (call it under the store's lock)."""
        entry = self._store.entries.get(self._loc)
        if self._over or entry is None or entry.ticket != self._ticket:
            self._over = True
            raise ClaimTaken(self._loc)
        return entry

    def start(
        self, args_json: str, links: Sequence[tuple[str, str, str]], *, keep_output: bool
    ) -> None:
        with self._store._lock:
            entry = self._ours()
            entry.error = None
            entry.args_json = args_json
            entry.upstream = tuple(sorted({f"{n}/{i}" for _, n, i in links}))

    def commit(self, value: Any, record: Record, level: int, info: str) -> int:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        with self._store._lock:
            entry = self._ours()
            entry.holder, entry.ticket = None, 0
            entry.record, entry.blob, entry.facts, entry.damaged = record, blob, info, ""
            entry.result_time = time.time()
            self._over = True
        return len(blob)

    def rekey(self, expect: Record, record: Record) -> bool:
        with self._store._lock:
            entry = self._ours()
            if entry.record != expect:
                return False
            entry.record = record
            entry.holder, entry.ticket = None, 0
            self._over = True
            return True

    def delete(self, stamp: str | None) -> int | None:
        with self._store._lock:
            entry = self._ours()
            if (entry.record.stamp if entry.record is not None else None) != stamp:
                return None
            del self._store.entries[self._loc]
            self._over = True
            return len(entry.blob or b"")

    def hand_over(self) -> Handover:
        return Handover(self._loc, self._holder, str(self._ticket), self._fresh)

    def release(self) -> None:
        with self._store._lock:
            if self._over:
                return
            self._over = True
            entry = self._store.entries.get(self._loc)
            if entry is not None and entry.ticket == self._ticket:
                entry.holder, entry.ticket = None, 0

    def __enter__(self) -> _MemoryLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _facts(info: str) -> dict[str, Any]:
    """The run facts a commit was given (JSON text), as `LocalStore.scan` reads them."""
    try:
        facts = json.loads(info) if info else {}
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}
