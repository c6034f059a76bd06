"""What a machine keeps of a bucket's results: loading them through the working copy, the
copy `taskproc pull` takes, a task's folder unpacked here, files sent up.

A result is named by its stamp in the working copy: loaded by the stamp a run expects, it
costs no request; otherwise its head is read (a small result is all in it) and a bigger one
downloaded once per machine, read in ranged requests of one version (replaced meanwhile: read
again). A task's folder is at one path per machine (`WorkingCopy.work_folder`), filled from the
archive of the result it stands for, swapped in whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskproc.errors import CacheError, CorruptResultError
from taskproc.store._archive import unpack
from taskproc.store._bucket import Bucket
from taskproc.store._contract import Record, ResultReplaced
from taskproc.store._resultfile import read_record as read_record_file
from taskproc.store._resultload import load_result
from taskproc.store._s3heads import (
    DAMAGED,
    FREE,
    HELD,
    RESULT,
    Head,
    data_key,
    head_key,
    load_bytes,
    rekey_file,
)

if TYPE_CHECKING:
    from taskproc.store._s3 import BucketStore

_LOAD_TRIES = 3  # a result replaced while it is being read: read the new one


def load(store: BucketStore, loc: str, who: str, stamp: str | None = None) -> Any:
    """The task's result (see `Store.load`): from the working copy by its stamp when given and
    kept (the very result the caller planned for), else from the head (a small result is all
    in it), else downloaded once; `ResultReplaced` if the head's result has another stamp."""
    name, task_id = store.split(loc)
    owner = f"{name}/{task_id}"
    wc = store.working_copy
    if stamp is not None:
        path = wc.has_result(name, task_id, stamp)
        if path is not None:
            return _load_file(store, path, who, owner, loc, name, task_id, stamp, True)
    for _ in range(_LOAD_TRIES):
        head = store.read_head(loc)
        if head is None or head.kind in (HELD, FREE):
            raise FileNotFoundError(loc)
        record = head.record
        if head.kind == DAMAGED or record is None:
            store.note_damaged(loc, head.etag)
            raise CorruptResultError(f"{who}: {head.damage}", loc)
        if stamp is not None and record.stamp != stamp:  # another runner's, not the planned
            raise ResultReplaced(loc, record)
        path = wc.has_result(name, task_id, record.stamp)
        if path is None and head.whole and not isinstance(head.facts().get("blob"), dict):
            try:  # small: the head was all of it
                return load_bytes(head.data, who, owner, loc)
            except CorruptResultError as exc:
                store.note_damaged(loc, head.etag)
                raise CorruptResultError(f"{who}: {exc}", loc) from None
        if path is None:
            path = download(store, head, name, task_id)
            if path is None:
                continue  # replaced while it was being read: read the new one
        return _load_file(store, path, who, owner, loc, name, task_id, record.stamp, False)
    raise CacheError(f"{loc}: its result kept changing while it was being read")


def _load_file(
    store: BucketStore,
    path: str,
    who: str,
    owner: str,
    loc: str,
    name: str,
    task_id: str,
    stamp: str,
    kept: bool,
) -> Any:
    try:
        return load_result(path, task=who, owner=owner)
    except CorruptResultError as exc:
        store.working_copy.drop_result(name, task_id, stamp)
        if kept:  # damaged here, maybe not in the bucket: read it again
            return load(store, loc, who)
        raise CorruptResultError(str(exc), loc) from exc.__cause__


def download(store: BucketStore, head: Head, name: str, task_id: str) -> str | None:
    """The result `head` heads, in a file of the working copy; None if it changed while
    it was being read."""
    record = head.record
    if record is None:
        return None
    key, etag = head_key(name, task_id), head.etag
    blob = head.facts().get("blob")
    if isinstance(blob, dict):
        key, etag = str(blob.get("key", "")), str(blob.get("etag", ""))
    wc = store.working_copy
    tmp, fd = wc.new_result(name, task_id)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in store.bucket.read_stream(key, etag=etag):
                f.write(chunk)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return wc.keep_result(tmp, name, task_id, record.stamp)


def fetch_result(store: BucketStore, loc: str) -> tuple[str, Record] | None:
    """A file of the working copy holding the task's result as it is now (downloaded if
    need be), and its record; None if the task has no result (``taskproc pull``)."""
    name, task_id = store.split(loc)
    wc = store.working_copy
    for _ in range(_LOAD_TRIES):
        head = store.read_head(loc)
        if head is None or head.kind != RESULT or head.record is None:
            return None
        record = head.record
        path = wc.has_result(name, task_id, record.stamp)
        blob = head.facts().get("blob")
        if path is None and head.whole and not isinstance(blob, dict):
            wc.keep_bytes(name, task_id, record.stamp, head.data)
            path = wc.has_result(name, task_id, record.stamp)
        if path is None:
            path = download(store, head, name, task_id)
        if path is None:
            continue  # replaced while it was being read
        if isinstance(blob, dict) and read_record_file(path) != record:
            tmp, fd = wc.new_result(name, task_id)  # a blob kept since a re-key
            try:
                rekey_file(path, fd, record)
            finally:
                os.close(fd)
            path = wc.keep_result(tmp, name, task_id, record.stamp)
        return path, record
    raise CacheError(f"{loc}: its result kept changing while it was being read")


def local_folder(store: BucketStore, name: str, task_id: str, stamp: str, data: str | None) -> Path:
    """The task's folder on this machine, holding what the result `stamp` had (its
    archive `data`, None: it had none). Unpacked when the folder holds another one's."""
    wc = store.working_copy
    folder = wc.work_folder(name, task_id)
    if wc.folder_stamp(name, task_id) == stamp and folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    new = folder.with_name(f".{task_id}.{os.getpid()}.{threading.get_ident():x}.new")
    shutil.rmtree(new, ignore_errors=True)
    if data is not None:
        _unpack(store, data_key(name, task_id, data), new)
    new.mkdir(exist_ok=True)
    old = folder.with_name(f".{task_id}.{os.getpid()}.{threading.get_ident():x}.old")
    with contextlib.suppress(FileNotFoundError):
        os.rename(folder, old)
    os.rename(new, folder)
    shutil.rmtree(old, ignore_errors=True)
    wc.set_folder_stamp(name, task_id, stamp)
    return folder


def _unpack(store: BucketStore, key: str, dest: Path) -> None:
    """Download the archive `key` and unpack it at `dest` (nothing if it is gone)."""
    tmp = f"{dest}.tar"
    try:
        with open(tmp, "wb") as f:
            try:
                for chunk in store.bucket.read_stream(key):
                    f.write(chunk)
            except FileNotFoundError:
                return  # deleted meanwhile: an empty folder
        unpack(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def put_file(bucket: Bucket, key: str, path: str, size: int, start: int = 0) -> str:
    """Upload the file at `path` (`size` bytes, from byte `start` on) to `key`, whatever
    is there; its ETag."""
    if size - start <= 8 << 20:
        with open(path, "rb") as f:
            f.seek(start)
            return bucket.put(key, f.read())
    with open(path, "rb") as f, bucket.upload(key) as up:
        f.seek(start)
        while chunk := f.read(8 << 20):
            up.write(chunk)
    return up.etag
