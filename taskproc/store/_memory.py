"""`MemoryStore`: a store in a dict, for the unit tests of the run loop.

It shows that the engine needs nothing of a store but its contract: no folder, no file. Results
are kept pickled (so a loaded result is a copy, as from a file), claims are entries guarded by
a lock, and nothing outlives the process. Tasks run on it only in this process (thread pool or
inline executor), without output capture or prefix commands.
"""

from __future__ import annotations

import json
import pickle
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskproc.errors import CacheError, CorruptResultError
from taskproc.store._claims import Claim
from taskproc.store._contract import (
    CodeEntry,
    PrefixFiles,
    RunSummary,
    StoredTask,
    Ticket,
    check_meta_key,
)
from taskproc.store._resultfile import ClaimTaken, Record


@dataclass(slots=True)
class _Entry:
    """One task in a `MemoryStore` (mutable: the store is its only user)."""

    record: Record | None = None
    blob: bytes | None = None
    facts: str = ""
    claim: Claim | None = None
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
    beats: dict[str, str] = field(default_factory=dict)
    codes: dict[str, tuple[CodeEntry, ...]] = field(default_factory=dict)
    ensured: bool = False
    last_run: RunSummary | None = None
    meta: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tickets: int = 0

    @property
    def root(self) -> str:
        return f"<{self.name}>"

    def _entry(self, loc: str) -> _Entry:
        entry = self.entries.get(loc)
        if entry is None:
            entry = self.entries[loc] = _Entry()
        return entry

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

    def read_stamp(self, task_name: str, task_id: str) -> str | None:
        entry = self.entries.get(self.locate(task_name, task_id))
        return entry.record.stamp if entry is not None and entry.record is not None else None

    def write_last_run(self, summary: RunSummary) -> None:
        with self._lock:
            if self.last_run is None or self.last_run.finished <= summary.finished:
                self.last_run = summary

    def read_last_run(self) -> RunSummary | None:
        return self.last_run

    def read_args(self, loc: str) -> str | None:
        entry = self.entries.get(loc)
        return entry.args_json if entry is not None else None

    # -- code identities -----------------------------------------------------------------

    def write_code(self, code: str, entries: Sequence[CodeEntry]) -> None:
        with self._lock:
            self.codes.setdefault(code, tuple(entries))

    def read_code(self, code: str) -> tuple[CodeEntry, ...] | None:
        return self.codes.get(code)

    def code_ids(self) -> frozenset[str]:
        return frozenset(self.codes)

    def delete_code(self, code: str) -> None:
        with self._lock:
            self.codes.pop(code, None)

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
                    claim=e.claim,
                    claimed_since=None,
                    damage=e.damaged,
                    upstream=e.upstream if e.record is not None else None,
                    size=len(e.blob or b"") if with_size else None,
                    log="",
                    error_file="",
                )
            )
        return out

    # -- one task: results ---------------------------------------------------------------

    def locate(self, task_name: str, task_id: str) -> str:
        return f"{task_name}/{task_id}"

    def read_record(self, loc: str) -> Record | None:
        entry = self.entries.get(loc)
        record = entry.record if entry is not None else None
        if record is not None and not record.belongs_to(loc):  # a location is the task's key
            raise CorruptResultError(f"{loc}: it is the result of {record.task}", loc)
        return record

    def load(self, loc: str, who: str) -> Any:
        entry = self.entries.get(loc)
        if entry is None or entry.blob is None:
            raise FileNotFoundError(loc)
        self.read_record(loc)
        return pickle.loads(entry.blob)

    def discard_result(self, loc: str) -> None:
        entry = self.entries.get(loc)
        if entry is not None:
            entry.record = entry.blob = None

    def result_file(self, loc: str) -> str:
        return f"{self.root}/{loc}"

    def data_folder(self, loc: str) -> Path:
        raise CacheError(f"{self.root}: a memory store keeps no task_directory")

    # -- one task: running it ---------------------------------------------------------------

    def make_folder(self, loc: str) -> bool:
        with self._lock:
            new = loc not in self.entries
            self._entry(loc)
        return new

    def claim(self, loc: str, me: Claim) -> Ticket | Claim:
        with self._lock:
            entry = self._entry(loc)
            if entry.claim is not None:
                return entry.claim
            self._tickets += 1
            entry.claim, entry.ticket = me, self._tickets
            return entry.ticket

    def close_claim(self, loc: str, ticket: Ticket, *, remove: bool) -> None:
        with self._lock:
            entry = self._entry(loc)
            if remove and entry.ticket == ticket:
                entry.claim, entry.ticket = None, 0

    def read_claim(self, loc: str) -> Claim | None:
        entry = self.entries.get(loc)
        return entry.claim if entry is not None else None

    def release(self, loc: str, me: Claim, verify: bool = True) -> None:
        with self._lock:
            entry = self.entries.get(loc)
            held = entry.claim if entry is not None else None
            if entry is not None and (not verify or (held is not None and held.held_by(me))):
                entry.claim, entry.ticket = None, 0

    def break_claim(self, loc: str, dead: Claim, me: Claim) -> bool:
        with self._lock:
            entry = self._entry(loc)
            if entry.claim is None:
                return True
            if entry.claim != dead:
                return False
            entry.claim, entry.ticket = None, 0
            return True

    def commit(
        self, loc: str, value: Any, record: Record, level: int, info: str, ticket: Ticket | None
    ) -> int:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            entry = self._entry(loc)
            if ticket is not None:
                if entry.ticket != ticket:
                    raise ClaimTaken(loc)
                entry.claim, entry.ticket = None, 0
            entry.record, entry.blob, entry.facts, entry.damaged = record, blob, info, ""
            entry.result_time = time.time()
        return len(blob)

    def rekey(self, loc: str, expect: Record, record: Record, ticket: Ticket) -> bool:
        with self._lock:
            entry = self._entry(loc)
            if entry.ticket != ticket:
                raise ClaimTaken(loc)
            if entry.record != expect:
                return False
            entry.record = record
            entry.claim, entry.ticket = None, 0
            return True

    def delete_unchanged(self, loc: str, me: Claim, stamp: str | None) -> int | None:
        with self._lock:
            entry = self.entries.get(loc)
            if entry is None or entry.claim is not None:
                return None
            if (entry.record.stamp if entry.record is not None else None) != stamp:
                return None
            del self.entries[loc]
            return len(entry.blob or b"")

    def start_attempt(
        self,
        loc: str,
        args_json: str,
        links: Sequence[tuple[str, str, str]],
        *,
        fresh: bool,
        keep_output: bool,
    ) -> None:
        with self._lock:
            entry = self._entry(loc)
            entry.error = None
            entry.args_json = args_json
            entry.upstream = tuple(sorted({f"{n}/{i}" for _, n, i in links}))

    def output_files(self, loc: str) -> None:
        return None

    def deadline_file(self, loc: str) -> None:
        return None

    def output_tail(self, loc: str, lines: int = 10) -> str:
        return ""

    def read_output(self, loc: str) -> tuple[str, str]:
        return "", ""

    def write_error(self, loc: str, text: str) -> None:
        with self._lock:
            entry = self._entry(loc)
            entry.error, entry.error_time = text, time.time()

    def read_error(self, loc: str) -> str | None:
        entry = self.entries.get(loc)
        return entry.error if entry is not None else None

    def prefix_files(self, loc: str) -> PrefixFiles:
        raise CacheError(f"{self.root}: prefix commands need a cache folder, not a memory store")

    # -- clearing ---------------------------------------------------------------------------

    def clear_task(self, task_name: str, task_id: str, *, keep_data: bool = False) -> None:
        with self._lock:
            self.entries.pop(self.locate(task_name, task_id), None)

    def clear_task_name(self, task_name: str) -> None:
        with self._lock:
            for loc in [k for k in self.entries if k.startswith(f"{task_name}/")]:
                del self.entries[loc]

    def clear_all(self) -> None:
        with self._lock:
            self.entries.clear()

    def empty_trash(self) -> None:
        pass  # deletions here are one step under the lock: nothing is ever left half done

    # -- runners -----------------------------------------------------------------------------

    def write_beat(self, runner: str, payload: str) -> None:
        self.beats[runner] = payload

    def read_beat(self, runner: str) -> str:
        return self.beats.get(runner, "")

    def end_beat(self, runner: str) -> None:
        self.beats.pop(runner, None)

    # -- metadata ----------------------------------------------------------------------------

    def write_meta(self, key: str, data: bytes) -> None:
        self.meta[check_meta_key(key)] = bytes(data)

    def read_meta(self, key: str) -> bytes | None:
        return self.meta.get(check_meta_key(key))

    def list_meta(self, prefix: str) -> list[str]:
        folder = check_meta_key(prefix.rstrip("/")) + "/"
        return sorted(k for k in list(self.meta) if k.startswith(folder))

    def delete_meta(self, key: str) -> None:
        self.meta.pop(check_meta_key(key), None)


def _facts(info: str) -> dict[str, Any]:
    """The run facts a commit was given (JSON text), as `LocalStore.scan` reads them."""
    try:
        facts = json.loads(info) if info else {}
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}
