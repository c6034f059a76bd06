"""The lease of `BucketStore`: our claim on one task in a bucket, and its commit.

Design note. A lease holds its claim's object and version (ETag), and, when it was taken beside
a result (a rerun), the version of the result it expects to replace (`_s3claims.py` says where
claims are). Its commit is a conditional PUT of the result object on the claim's version (a
task without a result: the claim is replaced) or on the result's (a rerun: the side claim is
read back first, then given back). The check and the write of a rerun are two requests: a claim
broken between them still commits, which is harmless (the breaker's own commit expects the
same version and loses); so the contract's promise is "a lease found broken at commit commits
nothing".

A result is pickled into memory, and spills to a file of the working copy past `INLINE` bytes
(the same bytes a folder cache keeps), then sent: in one conditional PUT up to `INLINE` bytes;
a bigger one is uploaded in parts to a blob no one else writes
(``<task_name>/blobs/<task_id>/<runner>.<stamp>``) and committed by a conditional PUT of a
pointer that names it. The task's output files and its folder (`task_directory`, one tar
archive per result) are uploaded before the commit; its arguments and upstream links travel in
the result's first header (or beside it, when long), and in the free claim of a task that
failed. A task still running after `LATE` seconds gets its arguments written beside it, so that
``status`` can name what is running. Leaving the lease without a commit gives the claim back
(a free body on its version) after uploading the attempt's output.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskproc.errors import CacheError
from taskproc.store._archive import has_files, pack
from taskproc.store._contract import ClaimTaken, Handover, Holder, Record
from taskproc.store._s3heads import (
    MAX_HEAD,
    RESULT,
    STORE_FACTS,
    Head,
    blob_key,
    data_key,
    free_body,
    head_key,
    parse_facts,
    parse_head,
    pointer_bytes,
    rekeyed,
    result_start,
    side_key,
    write_result,
)
from taskproc.store._workcopy import Known

if TYPE_CHECKING:
    from taskproc.store._s3 import BucketStore

# Results up to this many bytes are committed in one request; bigger ones as blob + pointer.
INLINE = 8 << 20
# Arguments and upstream links up to this many bytes travel in the result's first header.
INLINE_META = 2048
# Seconds a task runs before its arguments are written beside it (for `status`).
LATE = 1.0


# -- the lease ----------------------------------------------------------------------------------


class BucketLease:
    """Our claim on one task in a bucket: on its result object (`seen` None: the task had no
    result) or on its side claim (`seen`: the result the lease expects to replace). Not
    thread-safe: one lease is used by one thread at a time (its late arguments aside)."""

    def __init__(
        self,
        store: BucketStore,
        loc: str,
        key: str,
        etag: str,
        nonce: str,
        holder: Holder,
        *,
        fresh: bool,
        seen: Head | None = None,
    ) -> None:
        self._store = store
        self._loc = loc
        self._name, self._id = store.split(loc)
        self._key = key  # the claim's object
        self._etag = etag  # the claim's version
        self._nonce = nonce
        self._holder = holder
        self._fresh = fresh
        self._seen = seen  # the result found when the claim was taken (side claims)
        self._over = False
        self._args: str | None = None
        self._deps: list[list[str]] | None = None
        self._outputs: tuple[str, str] | None = None
        self._work: Path | None = None
        store.hold(loc, self)

    # -- reading the lease ----------------------------------------------------------------

    @property
    def location(self) -> str:
        return self._loc

    @property
    def fresh(self) -> bool:
        return self._fresh

    @property
    def over(self) -> bool:
        return self._over

    def __repr__(self) -> str:
        return f"<lease on {self._key}>"

    def _side(self) -> bool:
        return self._seen is not None

    def _live(self) -> None:
        if self._over:
            raise ClaimTaken(f"{self._loc}: the lease is over")

    def _end(self) -> None:
        self._over = True
        self._store.unhold(self._loc, self)

    # -- the task's files -------------------------------------------------------------------

    def start(
        self, args_json: str, links: Sequence[tuple[str, str, str]], *, keep_output: bool
    ) -> None:
        self._live()
        self._args = args_json
        self._deps = [[attr, name, task_id] for attr, name, task_id in links]
        if not self._fresh:  # forget the last attempt's error and output
            side = side_key(self._name, self._id)
            names = ("error.txt", "stdout.txt", "stderr.txt")
            self._store.bucket.delete_many([f"{side}/{n}" for n in names])
        self._store.late_args(self)

    def write_args(self) -> None:
        """Write the arguments beside the task (a long run: `status` names it meanwhile)."""
        if self._over or self._args is None:
            return
        with contextlib.suppress(CacheError):
            key = side_key(self._name, self._id, "args.json")
            self._store.bucket.put_if_absent(key, self._args.encode())

    def note_outputs(self, paths: tuple[str, str]) -> None:
        self._outputs = paths

    def local_output(self, stream: str) -> str | None:
        """The local file of `stream` while the task runs here."""
        if self._outputs is None:
            return None
        return self._outputs[0] if stream == "stdout" else self._outputs[1]

    def data_folder(self) -> Path:
        """The task's folder while it runs here: what its result had, to start with."""
        if self._work is None:
            seen = self._seen
            stamp, data = "", None
            if seen is not None and seen.record is not None:
                stamp, had = seen.record.stamp, seen.facts().get("data")
                data = had if isinstance(had, str) else None
            self._work = self._store.local_folder(self._name, self._id, stamp, data)
        return self._work

    def _upload_outputs(self) -> None:
        if self._outputs is None:
            return
        outputs, self._outputs = self._outputs, None
        for name, path in zip(("stdout.txt", "stderr.txt"), outputs, strict=True):
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            if size:
                self._store.put_file(side_key(self._name, self._id, name), path, size)
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _meta_facts(self, facts: dict[str, Any]) -> None:
        """The arguments and upstream links, in the header when short, else beside it."""
        if self._args is None or self._deps is None:
            return
        deps = json.dumps(self._deps)
        if len(self._args) + len(deps) <= INLINE_META:
            facts["args"], facts["deps"] = self._args, self._deps
            return
        bucket = self._store.bucket
        bucket.put(side_key(self._name, self._id, "args.json"), self._args.encode())
        bucket.put(side_key(self._name, self._id, "deps.json"), deps.encode())

    def _free(self) -> bytes:
        """The free claim this lease leaves when it gives its claim back without a result."""
        if self._side() or self._args is None or self._deps is None:
            return free_body(None, None)
        if len(self._args) + len(json.dumps(self._deps)) <= INLINE_META:
            return free_body(self._args, [f"{n}/{i}" for _, n, i in self._deps])
        with contextlib.suppress(CacheError):
            self._meta_facts({})
        return free_body(None, None)

    # -- commit ---------------------------------------------------------------------------

    def commit(self, value: Any, record: Record, level: int, info: str) -> int:
        self._live()
        facts = json.loads(info) if info else {}
        archive = self._task_facts(facts, record.stamp)
        wc = self._store.working_copy
        try:
            size, body, tmp = write_result(
                value,
                record,
                level,
                json.dumps(facts),
                INLINE,
                lambda: wc.new_result(self._name, self._id),
            )
        except BaseException:
            self._forget_files("", archive)
            raise
        return self._commit(record, facts, size, body, tmp, archive, keep=True)

    def commit_file(self, path: str, record: Record) -> int:
        """Commit the result file at `path` (its first header carries `record`; the facts in
        it are kept), and give the claim back: ``taskproc push``. As `commit` otherwise."""
        self._live()
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            data = f.read(INLINE + 1 if size <= INLINE else MAX_HEAD)
        facts = {k: v for k, v in parse_facts(data, path).items() if k not in STORE_FACTS}
        archive = self._task_facts(facts, record.stamp)
        body = rekeyed(data, path, record, facts) if size <= INLINE else None
        start = result_start(data, path)  # past a claim member a folder's result begins with
        return self._commit(record, facts, size, body, path, archive, keep=False, start=start)

    def _task_facts(self, facts: dict[str, Any], stamp: str) -> str:
        """Add the task's arguments, links and folder to the facts of its result; the key of
        the folder's archive ("" if none)."""
        self._meta_facts(facts)
        archive = self._pack_data(stamp)
        if archive:
            facts["data"] = stamp
        return archive

    def _commit(
        self,
        record: Record,
        facts: dict[str, Any],
        size: int,
        body: bytes | None,
        path: str,
        archive: str,
        *,
        keep: bool,
        start: int = 0,
    ) -> int:
        """Commit the result: `body` (small), or the file at `path` as a blob and a pointer
        that names it; `keep`: the file is ours to keep in the working copy."""
        store, wc = self._store, self._store.working_copy
        blob = ""
        own = path if keep else ""
        info = json.dumps(facts)
        try:
            if body is None:  # big: its file goes up in parts, the commit names it
                blob = blob_key(self._name, self._id, f"{self._holder.runner}.{record.stamp}")
                etag = store.put_file(blob, path, size, start)
                facts["blob"] = {"key": blob, "size": size, "etag": etag}
                info = json.dumps(facts)
                body = pointer_bytes(record, info)
            self._upload_outputs()
            won = self._swap(body, record.stamp)
        except BaseException:
            self._forget_files(own, blob, archive)
            raise
        if not won:
            self._forget_files(own, blob, archive)
            if self._side():
                self.release()
            self._end()
            raise ClaimTaken(self._loc)
        if own:
            wc.keep_result(own, self._name, self._id, record.stamp)
        elif blob == "":
            wc.keep_bytes(self._name, self._id, record.stamp, body)
        wc.remember(self._name, [(self._id, Known(won, RESULT, record.to_text(), info))])
        self._after_replace(record.stamp)
        if self._side():
            self._give_back_side()
        self._end()
        return size

    def _forget_files(self, tmp: str, *keys: str) -> None:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._forget_uploads(*keys)

    def _swap(self, body: bytes, stamp: str) -> str:
        """Replace the task's result (or our claim on it) by `body`: the new version's ETag,
        or "" if it was not ours to replace."""
        store, bucket = self._store, self._store.bucket
        key = head_key(self._name, self._id)
        if not self._side():
            etag = bucket.put_if_match(key, body, self._etag)
        elif self._seen is not None and self._still_ours():
            etag = bucket.put_if_match(key, body, self._seen.etag)
        else:
            return ""
        if etag:
            return etag
        found = store.read_head(self._loc)  # refused: a retry of a request that won?
        ours = found is not None and found.record is not None and found.record.stamp == stamp
        return found.etag if ours and found is not None else ""

    def _still_ours(self) -> bool:
        info = self._store.bucket.head(self._key)
        return info is not None and info.etag == self._etag

    def _give_back_side(self) -> None:
        with contextlib.suppress(CacheError):
            self._store.bucket.put_if_match(self._key, free_body(None, None), self._etag)

    def _pack_data(self, stamp: str) -> str:
        """Upload the task's folder as this result's archive; its key ("" if it is empty)."""
        work = self._work
        if work is None or not has_files(work):
            return ""
        key = data_key(self._name, self._id, stamp)
        with self._store.bucket.upload(key) as up:
            pack(work, up)  # type: ignore[arg-type]  # a writer with write()
        return key

    def _forget_uploads(self, *keys: str) -> None:
        with contextlib.suppress(CacheError):
            self._store.bucket.delete_many([k for k in keys if k])

    def _after_replace(self, stamp: str) -> None:
        """A new result is in place: the old one's blob and archive go; our folder stays
        here as the new result's."""
        old = self._seen.facts() if self._seen is not None else {}
        stale = []
        blob, data = old.get("blob"), old.get("data")
        if isinstance(blob, dict) and isinstance(blob.get("key"), str):
            stale.append(blob["key"])
        if isinstance(data, str) and data != stamp:
            stale.append(data_key(self._name, self._id, data))
        self._forget_uploads(*stale)
        if self._seen is not None and self._seen.record is not None:
            self._store.working_copy.drop_result(self._name, self._id, self._seen.record.stamp)
        if self._work is not None:  # the folder here is the new result's now
            self._store.working_copy.set_folder_stamp(self._name, self._id, stamp)

    # -- rekey, delete -------------------------------------------------------------------------

    def rekey(self, expect: Record, record: Record) -> bool:
        self._live()
        seen = self._seen
        if seen is None:
            return False  # no result to re-key
        bucket = self._store.bucket
        key = head_key(self._name, self._id)
        got = bucket.get(key, etag=seen.etag)
        if got is None:
            return False
        found = parse_head(got.data, got.etag, got.size, "", key)
        if found.kind != RESULT or found.record != expect:
            return False
        note = {"accepted": {"code": expect.code_id, "time": round(time.time(), 3)}}
        body = rekeyed(got.data, key, record, {**found.facts(), **note})
        if not self._still_ours():
            self._end()
            raise ClaimTaken(self._loc)
        if bucket.put_if_match(key, body, got.etag) is None:
            now = self._store.read_head(self._loc)
            if now is None or now.record != record:
                return False
        self._give_back_side()
        self._end()
        return True

    def delete(self, stamp: str | None) -> int | None:
        self._live()
        store, bucket = self._store, self._store.bucket
        seen = store.read_head(self._loc) if self._side() else None
        if (seen.record.stamp if seen is not None and seen.record else None) != stamp:
            return None
        if self._side() and not self._still_ours():
            self._end()
            raise ClaimTaken(self._loc)
        freed = store.remove_task(self._name, self._id, keep=self._key)
        bucket.delete(self._key)  # our claim, last
        self._end()
        return freed

    # -- handing over, giving back -------------------------------------------------------------

    def hand_over(self) -> Handover:
        self._live()
        side = "c" if self._side() else "h"
        seen = self._seen.etag if self._seen is not None else ""
        token = f"{side}|{self._etag}|{self._nonce}|{seen}"
        return Handover(self._loc, self._holder, token, self._fresh)

    def release(self) -> None:
        if self._over:
            return
        self._end()
        try:
            self._upload_outputs()
            self._store.bucket.put_if_match(self._key, self._free(), self._etag)
        except CacheError:
            pass  # the claim stays until a runner takes it for dead

    def __enter__(self) -> BucketLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LateArgs:
    """Writes the arguments of tasks still running `LATE` seconds after they started, from a
    thread of its own (started on first use, in the process that uses it)."""

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[float, BucketLease]] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, lease: BucketLease) -> None:
        with self._cond:
            waiting = bool(self._queue)  # then the thread waits for an earlier one already
            self._queue.append((time.monotonic() + LATE, lease))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="taskproc-late-args", daemon=True
                )
                self._thread.start()
            elif not waiting:
                self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                due, lease = self._queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                self._queue.popleft()
            lease.write_args()
