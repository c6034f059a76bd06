"""`BucketStore`: a cache in a bucket of an S3-compatible server, ``s3://BUCKET/PREFIX``.

Design note. The layout, under the URL's prefix::

    .taskproc/cache.json                  marks the prefix as a taskproc cache (format)
    .taskproc/<key>                       meta entries (heartbeats, code identities, last run)
    <task_name>/results/<task_id>         the task's result object: its result (the commit
                                          point: the bytes of a folder cache's result.pkl.gz),
                                          or its claim while it has none (`_s3heads.py`)
    <task_name>/claims/<task_id>          the claim of a task that has a result (a rerun)
    <task_name>/blobs/<task_id>/<runner>.<stamp>   a result too big for one request
    <task_name>/tasks/<task_id>/          error.txt, stdout.txt, stderr.txt of the last attempt;
                                          args.json, deps.json when too long for the header;
                                          data/<stamp>.tar, the task's folder of each result

Results, claims and the rest sit under separate prefixes so that one LIST of
``<task_name>/results/`` returns one entry per task (a thousand a request) with its ETag: the
plan of a cached rerun looks each ETag up in the local working copy's index of records
(`_workcopy.py`) and reads only what it has not seen, 4 KiB each, 32 at a time. A location is
the URL of the task's result object. Claims and commits are `_s3lease.py`.

Liveness is the folder cache's (heartbeats are meta entries; clocks are never compared), and
every method is safe from several runners on several machines: the result object only ever
changes by a conditional PUT. Errors are one line (`_bucket.py`): a missing bucket, refused
credentials, an endpoint that does not answer, a server that ignores conditional writes (checked
when a run first opens the store).

The store makes no request when it is made or pickled; a worker process reopens the bucket with
its own credentials and its own working copy. obstore cannot be used in a process forked after
it was (`fork_safe` is False): a run starts a fork pool's workers before the store's first
request.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from taskproc.errors import CacheError
from taskproc.store._bucket import (
    SCHEME,
    Bucket,
    ObjectInfo,
    Settings,
    check_bucket,
    check_conditional_writes,
    open_bucket,
    parse_url,
    reopen_bucket,
)
from taskproc.store._contract import (
    STREAMS,
    Handover,
    Holder,
    Lease,
    PrefixFiles,
    Record,
    Store,
    StoredTask,
    Unreadable,
    check_key,
)
from taskproc.store._s3claims import break_claim, read_claim, resume, take_claim
from taskproc.store._s3files import fetch_result, load, local_folder, put_file
from taskproc.store._s3heads import (
    DAMAGED,
    FREE,
    HEAD_READ,
    HELD,
    MAX_HEAD,
    RESULT,
    Head,
    blob_key,
    claim_key,
    free_body,
    from_known,
    head_key,
    needs_more,
    parse_head,
    side_key,
)
from taskproc.store._s3lease import BucketLease, LateArgs
from taskproc.store._s3scan import scan_name
from taskproc.store._workcopy import WorkingCopy, default_root, folder_for

MARKER = ".taskproc/cache.json"
META = ".taskproc"
FORMAT = 1
# read_records batches this large use the listing of their task name (`task_ids`).
SNAPSHOT_MIN = 16


class BucketStore:
    """A cache in a bucket (see the module's note)."""

    fork_safe = False  # obstore: start fork pools' workers before the first request

    def __init__(self, url: str, working_copy: str | os.PathLike[str] | None = None) -> None:
        """The bucket at `url`, with its working copy under `working_copy` (default:
        ``$TASKPROC_WORKING_COPY``, else the user's cache folder). Sends nothing."""
        self._url = str(parse_url(url))
        self._bucket: Bucket | None = None
        self._wc_root = os.fspath(working_copy) if working_copy is not None else None
        self._init()

    def _init(self) -> None:
        self._wc: WorkingCopy | None = None
        self._lock = threading.Lock()
        self._leases: dict[str, BucketLease] = {}
        self._listed: dict[str, dict[str, ObjectInfo]] = {}
        self._args: dict[str, str] = {}
        self._damaged: dict[str, str] = {}
        self._ensured = False
        self._late: LateArgs | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # The bucket as this process reaches it (its endpoint, region, profile; never the
        # credentials), and not the working copy: each process finds its own.
        return (_reopen, (self._url, self.bucket.settings))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BucketStore) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)

    def __repr__(self) -> str:
        return f"BucketStore({self._url!r})"

    @property
    def root(self) -> str:
        return self._url

    @property
    def bucket(self) -> Bucket:
        if self._bucket is None:
            self._bucket = open_bucket(self._url)
        return self._bucket

    @property
    def working_copy(self) -> WorkingCopy:
        if self._wc is None:
            root = Path(self._wc_root) if self._wc_root else default_root()
            bucket = self.bucket
            where = f"{bucket.settings.shown_endpoint()}|{self._url}"
            self._wc = WorkingCopy(folder_for(root, bucket.url.bucket, where))
        return self._wc

    def portable(self) -> Store:
        return self

    # -- locations --------------------------------------------------------------------------

    def locate(self, task_name: str, task_id: str) -> str:
        return f"{self._url}/{task_name}/results/{task_id}"

    def split(self, loc: str) -> tuple[str, str]:
        """The task name and id of a location of this store."""
        rest = loc[len(self._url) + 1 :] if loc.startswith(f"{self._url}/") else ""
        name, middle, task_id = rest.rsplit("/", 2) if rest.count("/") >= 2 else ("", "", "")
        if middle != "results" or not name or not task_id:
            raise ValueError(f"{loc!r} is not a task's location in {self._url}")
        return name, task_id

    # -- leases held in this process ----------------------------------------------------------

    def hold(self, loc: str, lease: BucketLease) -> None:
        with self._lock:
            self._leases[loc] = lease

    def unhold(self, loc: str, lease: BucketLease) -> None:
        with self._lock:
            if self._leases.get(loc) is lease:
                del self._leases[loc]

    def _held(self, loc: str) -> BucketLease | None:
        with self._lock:
            return self._leases.get(loc)

    def late_args(self, lease: BucketLease) -> None:
        with self._lock:
            if self._late is None:
                self._late = LateArgs()
        self._late.add(lease)

    # -- the store as a whole -----------------------------------------------------------------

    def is_cache(self) -> bool:
        return self.bucket.get(MARKER) is not None

    def ensure(self) -> None:
        if self._ensured:
            return
        bucket = self.bucket
        check_bucket(bucket)
        check_conditional_writes(bucket)
        bucket.put_if_absent(MARKER, json.dumps({"format": FORMAT}).encode())
        self._ensured = True

    def task_names(self) -> list[str]:
        names = (f.rstrip("/") for f in self.bucket.list_folders())
        # Some servers (SeaweedFS) keep listing a folder whose objects are all deleted.
        return sorted(n for n in names if n and not n.startswith(".") and self._has_any(n))

    def _has_any(self, prefix: str) -> bool:
        return any(page for page in self.bucket.list_pages(prefix))

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        return [info for page in self.bucket.list_pages(prefix) for info in page]

    def list_heads(self, task_name: str) -> dict[str, ObjectInfo]:
        cut = len(task_name) + len("/results/")
        return {info.key[cut:]: info for info in self.list_objects(f"{task_name}/results")}

    def task_ids(self, task_name: str) -> frozenset[str] | None:
        listed = self.list_heads(task_name)
        with self._lock:
            self._listed[task_name] = dict(listed)  # for the plan's next read (read_records)
        return frozenset(listed)

    def scan(self, names: Iterable[str], *, with_size: bool = False) -> list[StoredTask]:
        out: list[StoredTask] = []
        for name in names:
            out.extend(scan_name(self, name, with_size))
        return out

    # -- one task: reading ---------------------------------------------------------------------

    def read_heads(self, locs: Sequence[str]) -> list[Head | None]:
        """The heads of the tasks' result objects (None where there is none), 32 requests at
        a time; what was read is remembered in the working copy's index."""
        if not locs:
            return []
        split = [self.split(loc) for loc in locs]
        keys = [head_key(n, i) for n, i in split]
        out: list[Head | None] = []
        learnt: dict[str, list[Any]] = {}
        for (name, task_id), key, got in zip(
            split, keys, self.bucket.get_many(keys, first=HEAD_READ), strict=True
        ):
            if got is not None and needs_more(got.data, got.size):
                got = self.bucket.get_range(key, 0, MAX_HEAD, etag=got.etag)
            if got is None:
                out.append(None)
                continue
            head = parse_head(got.data, got.etag, got.size, "", f"{self._url}/{key}")
            out.append(head)
            if head.kind != DAMAGED:
                learnt.setdefault(name, []).append((task_id, head.known()))
                self._note_args(self.locate(name, task_id), head)
        for name, entries in learnt.items():
            self.working_copy.remember(name, entries)
        return out

    def read_head(self, loc: str) -> Head | None:
        """The head of one task's result object, read now (None if there is none)."""
        return self.read_heads([loc])[0]

    def _note_args(self, loc: str, head: Head) -> None:
        if head.kind in (RESULT, FREE):
            args = head.facts().get("args")
            if isinstance(args, str):
                with self._lock:
                    self._args[loc] = args

    def read_records(self, locs: Sequence[str]) -> list[Record | Unreadable | None]:
        out: list[Record | Unreadable | None] = [None] * len(locs)
        by_name: dict[str, list[int]] = {}
        split = [self.split(loc) for loc in locs]
        for i, (name, _) in enumerate(split):
            by_name.setdefault(name, []).append(i)
        to_read: list[int] = []
        for name, idxs in by_name.items():
            if len(idxs) < SNAPSHOT_MIN:
                to_read += idxs
                continue
            listed = self._listing(name)
            known = self.working_copy.known(name)
            for i in idxs:
                info = listed.pop(split[i][1], None)
                if info is None:
                    continue  # no result object when the name was listed
                k = known.get(split[i][1])
                if k is not None and k.etag == info.etag:
                    out[i] = self._record_of(from_known(k), locs[i])
                else:
                    to_read.append(i)
        heads = self.read_heads([locs[i] for i in to_read])
        for i, head in zip(to_read, heads, strict=True):
            out[i] = self._record_of(head, locs[i])
        return out

    def _listing(self, name: str) -> dict[str, ObjectInfo]:
        """The listing of `name`'s result objects the plan took (`task_ids`), or a new one.
        Each entry answers once: a later read of the same task asks the bucket again."""
        with self._lock:
            listed = self._listed.get(name)
        if listed is None:
            listed = self.list_heads(name)
            with self._lock:
                self._listed[name] = listed
        return listed

    def _record_of(self, head: Head | None, loc: str) -> Record | Unreadable | None:
        if head is None or head.kind in (HELD, FREE):
            return None
        if head.kind == DAMAGED:
            self.note_damaged(loc, head.etag)
            return Unreadable(head.damage, loc)
        name, task_id = self.split(loc)
        record = head.record
        if record is None or not record.belongs_to(f"{name}/{task_id}"):
            self.note_damaged(loc, head.etag)
            return Unreadable(f"{loc}: it is the result of {record and record.task}", loc)
        return record

    def note_damaged(self, loc: str, etag: str) -> None:
        with self._lock:
            self._damaged[loc] = etag

    def load(self, loc: str, who: str, stamp: str | None = None) -> Any:
        return load(self, loc, who, stamp)

    def fetch_result(self, loc: str) -> tuple[str, Record] | None:
        """A file of the working copy holding the task's result as it is now (downloaded if
        need be), and its record; None if the task has no result (``taskproc pull``)."""
        return fetch_result(self, loc)

    def links(self, loc: str) -> list[tuple[str, str, str]] | None:
        """The upstream links (attribute, task name, task id) the task's result was computed
        with; None if it has no result or they are not known."""
        head = self.read_head(loc)
        if head is None or head.kind != RESULT:
            return None
        deps = head.facts().get("deps")
        if deps is None:
            got = self.bucket.get(side_key(*self.split(loc), "deps.json"))
            with contextlib.suppress(ValueError):
                deps = json.loads(got.data) if got is not None else None
        try:
            return [(str(a), str(n), str(i)) for a, n, i in deps]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            return None

    def read_args(self, loc: str) -> str | None:
        with self._lock:
            known = self._args.get(loc)
        if known is not None:
            return known  # a task's arguments never change: its id is their digest
        try:
            self.read_head(loc)  # which notes the arguments its head carries
            with self._lock:
                known = self._args.get(loc)
            if known is None:
                name, task_id = self.split(loc)
                got = self.bucket.get(side_key(name, task_id, "args.json"))
                if got is None:
                    return None
                known = got.data.decode("utf-8", "replace").strip()
                with self._lock:
                    self._args[loc] = known
        except (CacheError, ValueError):
            return None
        return known

    def read_error(self, loc: str) -> str | None:
        name, task_id = self.split(loc)
        try:
            got = self.bucket.get_range(side_key(name, task_id, "error.txt"), 0, 1 << 20)
        except CacheError:
            return None
        return got.data.decode("utf-8", "replace") if got is not None else None

    def read_output(self, loc: str, stream: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        if stream not in STREAMS:
            return b""
        lease = self._held(loc)
        local = lease.local_output(stream) if lease is not None else None
        if local is not None:
            try:
                with open(local, "rb") as f:
                    f.seek(max(0, f.seek(0, os.SEEK_END) + offset) if offset < 0 else offset)
                    return f.read(limit)
            except OSError:
                return b""
        name, task_id = self.split(loc)
        key = side_key(name, task_id, f"{stream}.txt")
        try:
            if offset < 0:
                info = self.bucket.head(key)
                if info is None or info.size == 0:
                    return b""
                offset = max(0, info.size + offset)
            got = self.bucket.get_range(key, offset, offset + limit) if limit > 0 else None
        except CacheError:
            return b""
        return got.data if got is not None else b""

    def result_file(self, loc: str) -> str:
        return loc

    # -- capabilities: local files of a task running here ------------------------------------

    def output_files(self, loc: str) -> tuple[str, str]:
        name, task_id = self.split(loc)
        out, err, _ = self.working_copy.output_paths(name, task_id)
        lease = self._held(loc)
        if lease is not None:
            lease.note_outputs((out, err))
        return out, err

    def deadline_file(self, loc: str) -> str:
        name, task_id = self.split(loc)
        return self.working_copy.output_paths(name, task_id)[2]

    def prefix_files(self, loc: str) -> PrefixFiles:
        folder = self.working_copy.job_folder(*self.split(loc))
        return PrefixFiles(
            f"{folder}/job.pkl",
            f"{folder}/outcome.pkl",
            f"{folder}/prefix_stdout.txt",
            f"{folder}/prefix_stderr.txt",
        )

    def data_folder(self, loc: str) -> Path:
        lease = self._held(loc)
        if lease is not None:
            return lease.data_folder()
        name, task_id = self.split(loc)
        head = self.read_head(loc)
        if head is None or head.kind != RESULT or head.record is None:
            return self.local_folder(name, task_id, "", None)
        data = head.facts().get("data")
        return self.local_folder(
            name, task_id, head.record.stamp, data if isinstance(data, str) else None
        )

    def local_folder(self, name: str, task_id: str, stamp: str, data: str | None) -> Path:
        """The task's folder on this machine, holding what the result `stamp` had (its
        archive `data`, None: it had none)."""
        return local_folder(self, name, task_id, stamp, data)

    def put_file(self, key: str, path: str, size: int, start: int = 0) -> str:
        """Upload the file at `path` (`size` bytes, from byte `start` on) to `key`, whatever
        is there; its ETag."""
        return put_file(self.bucket, key, path, size, start)

    # -- one task: claims and writing ------------------------------------------------------------

    def claim(self, loc: str, me: Holder) -> Lease | Holder:
        return take_claim(self, loc, me)

    def resume(self, handover: Handover) -> Lease | None:
        return resume(self, handover)

    def read_claim(self, loc: str) -> Holder | None:
        return read_claim(self, loc)

    def break_claim(self, loc: str, dead: Holder, me: Holder) -> bool:
        return break_claim(self, loc, dead)

    def write_error(self, loc: str, text: str) -> None:
        name, task_id = self.split(loc)
        with contextlib.suppress(CacheError):
            self.bucket.put(side_key(name, task_id, "error.txt"), text.encode())

    def discard_result(self, loc: str) -> None:
        with self._lock:
            etag = self._damaged.pop(loc, None)
        head = self.read_head(loc)
        if head is None or head.kind not in (RESULT, DAMAGED):
            return
        if etag is not None and head.etag != etag:
            return  # replaced since it was found damaged: the new one stays
        name, task_id = self.split(loc)
        with contextlib.suppress(CacheError):
            if self.bucket.put_if_match(head_key(name, task_id), free_body(None, None), head.etag):
                blob = head.facts().get("blob")
                if isinstance(blob, dict) and isinstance(blob.get("key"), str):
                    self.bucket.delete(blob["key"])

    def remove_task(self, name: str, task_id: str, keep: str = "") -> int:
        """Delete a task's objects, its result object first (and not `keep`); bytes freed."""
        bucket = self.bucket
        head = bucket.head(head_key(name, task_id))
        freed = 0
        if head is not None and head.key != keep:
            bucket.delete(head.key)
            freed += head.size
        rest = [
            info
            for prefix in (blob_key(name, task_id), side_key(name, task_id))
            for info in self.list_objects(prefix)
        ]
        side = bucket.head(claim_key(name, task_id))
        rest += [side] if side is not None and side.key != keep else []
        bucket.delete_many([info.key for info in rest])
        self.working_copy.forget_task(name, task_id)
        with self._lock:
            self._args.pop(self.locate(name, task_id), None)
        return freed + sum(info.size for info in rest)

    def clear(
        self, task_name: str | None = None, task_id: str | None = None, *, keep_data: bool = False
    ) -> None:
        if task_name is not None and task_id is not None:
            self.remove_task(task_name, task_id)
            if keep_data:
                work = self.working_copy.work_folder(task_name, task_id)
                if work.is_dir():
                    shutil.rmtree(work, ignore_errors=True)
                    work.mkdir(parents=True, exist_ok=True)
            return
        if task_name is None:
            everything = [i for i in self.list_objects("") if not i.key.startswith(f"{META}/")]
            if everything and not self.is_cache():
                raise CacheError(
                    f"{self._url} is not a taskproc cache (no {MARKER}); refusing to clear it "
                    "- pass the URL your tasks were cached in"
                )
        else:
            everything = self.list_objects(task_name)
        # Result objects first: a reader never sees a result without the rest of its task.
        heads = [i.key for i in everything if "/results/" in i.key]
        self.bucket.delete_many(heads)
        self.bucket.delete_many([i.key for i in everything if "/results/" not in i.key])
        with self._lock:
            self._args.clear()
            self._listed.clear()

    # -- meta ---------------------------------------------------------------------------------

    def write_meta(self, key: str, data: bytes, *, replace: bool = True) -> None:
        full = f"{META}/{check_key(key)}"
        if replace:
            self.bucket.put(full, bytes(data))
        else:
            self.bucket.put_if_absent(full, bytes(data))

    def read_meta(self, key: str) -> bytes | None:
        full = f"{META}/{check_key(key)}"
        try:
            got = self.bucket.get(full)
        except CacheError:
            return None
        return got.data if got is not None else None

    def list_meta(self, prefix: str) -> list[str]:
        folder = prefix.rstrip("/")
        want = f"{check_key(folder)}/" if folder else ""
        keys = [i.key[len(META) + 1 :] for i in self.list_objects(f"{META}/{folder}".rstrip("/"))]
        return sorted(k for k in keys if k.startswith(want) and "/" not in k[len(want) :])

    def delete_meta(self, key: str) -> None:
        self.bucket.delete(f"{META}/{check_key(key)}")


@functools.lru_cache(maxsize=16)
def _reopen(url: str, settings: Settings) -> BucketStore:
    """Unpickling a `BucketStore` in another process: the bucket as its runner reached it,
    with the credentials and the working copy of this process. Once per process: every job
    a worker runs unpickles its store, and shares this one (its client, its connections)."""
    store = BucketStore(url)
    store._bucket = reopen_bucket(url, settings)
    return store


def open_bucket_store(url: str) -> Store:
    """The store at ``s3://BUCKET/PREFIX`` (`open_store`'s opener; sends nothing)."""
    if not url.startswith(SCHEME):
        raise CacheError(f"{url}: a bucket is named s3://BUCKET/PREFIX")
    return BucketStore(url)
