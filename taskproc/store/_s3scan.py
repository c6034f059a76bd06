"""What `BucketStore.scan` finds of a task name: its tasks as stored, for the views.

Three listings per task name (result objects, side claims, the rest), whose sizes and times
(the server's clock: `status` only compares them with each other) come with them; heads from
the working copy's index where it knows their version, else read 4 KiB each; side claims read
to tell running tasks from given-back ones.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from typing import TYPE_CHECKING

from taskproc.store._bucket import ObjectInfo
from taskproc.store._contract import Holder, StoredTask
from taskproc.store._s3heads import (
    DAMAGED,
    HELD,
    RESULT,
    Head,
    from_known,
    parse_head,
    side_key,
)

if TYPE_CHECKING:
    from taskproc.store._s3 import BucketStore


def scan_name(store: BucketStore, name: str, with_size: bool) -> list[StoredTask]:
    """Every stored task of `name`, as found: three listings (results, claims beside results,
    the rest), heads from the working copy's index or read, side claims read."""
    heads = store.list_heads(name)
    side: dict[str, dict[str, ObjectInfo]] = {}
    for info in store.list_objects(f"{name}/tasks"):
        task_id, _, rest = info.key[len(name) + 7 :].partition("/")
        side.setdefault(task_id, {})[rest] = info
    claims = {i.key.rsplit("/", 1)[1]: i for i in store.list_objects(f"{name}/claims")}
    ids = sorted(set(heads) | set(side))
    found = _heads_of(store, name, {i: heads[i] for i in ids if i in heads})
    held = _claims_of(store, name, [claims[i] for i in ids if i in claims and found.get(i)])
    blobs: dict[str, int] = {}
    if with_size:
        for info in store.list_objects(f"{name}/blobs"):
            task_id = info.key[len(name) + 7 :].partition("/")[0]
            blobs[task_id] = blobs.get(task_id, 0) + info.size
    out = []
    for task_id in ids:
        files = side.get(task_id, {})
        size = None
        if with_size:
            own = [heads.get(task_id), claims.get(task_id), *files.values()]
            size = sum(i.size for i in own if i is not None) + blobs.get(task_id, 0)
        out.append(
            _stored(store, name, task_id, found.get(task_id), held.get(task_id), files, size)
        )
    return out


def _stored(
    store: BucketStore,
    name: str,
    task_id: str,
    head: Head | None,
    side_claim: tuple[Holder, float] | None,
    files: dict[str, ObjectInfo],
    size: int | None,
) -> StoredTask:
    loc = store.locate(name, task_id)
    key = f"{name}/{task_id}"
    record, facts, damage = None, {}, ""
    holder, since = side_claim or (None, None)
    if head is not None and head.kind == RESULT and head.record is not None:
        if head.record.belongs_to(key):
            record, facts = head.record, head.people_facts()
        else:
            damage = f"{loc}: it is the result of {head.record.task}, not of {key}"
    elif head is not None and head.kind == DAMAGED:
        damage = head.damage
    elif head is not None and head.kind == HELD:
        holder, since = head.holder, head.modified
    error = files.get("error.txt")
    return StoredTask(
        task_name=name,
        task_id=task_id,
        location=loc,
        record=record,
        facts=facts,
        result_time=head.modified if record is not None and head is not None else None,
        error_time=error.modified if error is not None else None,
        holder=holder,
        claimed_since=since,
        damage=damage,
        upstream=_upstream(store, name, task_id, head) if record is not None else None,
        size=size,
        log=f"{store.root}/{side_key(name, task_id, 'stderr.txt')}",
        error_file=f"{store.root}/{side_key(name, task_id, 'error.txt')}",
        started=head is not None or "args.json" in files,
    )


def _upstream(
    store: BucketStore, name: str, task_id: str, head: Head | None
) -> tuple[str, ...] | None:
    deps = head.facts().get("deps") if head is not None else None
    if deps is None:
        got = store.bucket.get(side_key(name, task_id, "deps.json"))
        if got is None:
            return None
        with contextlib.suppress(ValueError):
            deps = json.loads(got.data)
    try:
        return tuple(sorted({f"{d[1]}/{d[2]}" for d in deps}))  # type: ignore[union-attr]
    except (TypeError, IndexError, KeyError):
        return None


def _heads_of(
    store: BucketStore, name: str, listed: dict[str, ObjectInfo]
) -> dict[str, Head | None]:
    """The heads of the listed result objects of `name`: from the index where it knows
    their ETag, else read (and remembered)."""
    known = store.working_copy.known(name)
    out: dict[str, Head | None] = {}
    missing = []
    for task_id, info in listed.items():
        k = known.get(task_id)
        if k is not None and k.etag == info.etag:
            out[task_id] = from_known(k, info.size, info.modified)
        else:
            missing.append(task_id)
    locs = [store.locate(name, i) for i in missing]
    for task_id, head in zip(missing, store.read_heads(locs), strict=True):
        out[task_id] = head and replace(head, modified=listed[task_id].modified)
    return out


def _claims_of(
    store: BucketStore, name: str, listed: list[ObjectInfo]
) -> dict[str, tuple[Holder, float]]:
    """Who holds these side claims of `name`'s tasks (those that are held), and since."""
    out = {}
    keys = [info.key for info in listed]
    for info, got in zip(listed, store.bucket.get_many(keys), strict=True):
        if got is not None:
            claim = parse_head(got.data, got.etag, got.size, "", info.key)
            if claim.kind == HELD and claim.holder is not None:
                out[info.key.rsplit("/", 1)[1]] = (claim.holder, info.modified)
    return out
