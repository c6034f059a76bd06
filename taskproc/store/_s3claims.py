"""Claims in a bucket: taking one, taking one up that was handed over, reading and breaking
one, for `BucketStore` (the lease that holds a claim is `_s3lease.py`).

Design note. S3 offers two conditions on a PUT and none across two objects: ``If-None-Match: *``
(create) and ``If-Match: ETAG`` (replace that version). So the claim and the result share one
object wherever they can:

- **A task without a result** is claimed on its result object itself: the claim is created
  with ``If-None-Match: *`` (or, over a claim given back, ``If-Match`` on it), and the commit
  replaces the claim by the result with ``If-Match`` on the claim's ETag. One request claims,
  one commits, and the check that the claim is still ours is the commit itself.
- **A task with a result** (a rerun, ``accept``, ``gc``) is claimed on a side object,
  ``<task_name>/claims/<task_id>``, so that readers keep its result meanwhile. Only the side
  claim's holder changes a result, so the result read once the side claim is ours is the one
  its commit will replace.

Claims are never deleted to give them back (obstore cannot send a conditional DELETE): they are
overwritten, ``If-Match`` on their ETag, by a *free* body, so a runner wrongly taken for dead
cannot remove the claim of the runner that broke it; a breaker writes on the version it judged
dead, so exactly one of several breakers wins. Every claim carries a nonce: a conditional write
whose answer was lost, sent again and refused although it had won, is told by reading back.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import TYPE_CHECKING

from taskproc.errors import CacheError
from taskproc.store._contract import Handover, Holder, Lease
from taskproc.store._s3heads import (
    FREE,
    HELD,
    claim_body,
    claim_key,
    free_body,
    head_key,
    parse_head,
)
from taskproc.store._s3lease import BucketLease

if TYPE_CHECKING:
    from taskproc.store._s3 import BucketStore

_TRIES = 8  # a claim that keeps changing under us (deleted, given back, taken)


def take_claim(store: BucketStore, loc: str, me: Holder) -> Lease | Holder:
    """Claim the task: on its result object while it has no result, else on its side claim
    (see the module's note). Our lease, or who holds the task."""
    name, task_id = store.split(loc)
    key = head_key(name, task_id)
    nonce = secrets.token_hex(8)
    body = claim_body(me, nonce)
    bucket = store.bucket
    for _ in range(_TRIES):
        etag = bucket.put_if_absent(key, body)
        if etag is not None:
            return BucketLease(store, loc, key, etag, nonce, me, fresh=True)
        head = store.read_head(loc)
        if head is None:
            continue  # deleted meanwhile: create it again
        if head.kind == HELD:
            if head.nonce == nonce:  # ours after all: a retried request that had won
                return BucketLease(store, loc, key, head.etag, nonce, me, fresh=True)
            return head.holder or Holder("", "", 0)
        if head.kind == FREE:
            etag = bucket.put_if_match(key, body, head.etag)
            if etag is None:
                again = store.read_head(loc)
                if again is None or again.kind != HELD or again.nonce != nonce:
                    continue
                etag = again.etag
            return BucketLease(store, loc, key, etag, nonce, me, fresh=False)
        got = _take_side_claim(store, loc, me, nonce)
        if got is not None:
            return got
    raise CacheError(
        f"{loc}: its claim kept changing while it was being taken ({_TRIES} times); is "
        "another program writing the bucket?"
    )


def _take_side_claim(store: BucketStore, loc: str, me: Holder, nonce: str) -> Lease | Holder | None:
    """Claim a task that has a result on its side claim object; None if, once the side claim
    is ours, the task turns out to have no result any more (deleted, discarded): the claim is
    given back, to be taken on the result object."""
    name, task_id = store.split(loc)
    key = claim_key(name, task_id)
    body = claim_body(me, nonce)
    bucket = store.bucket
    for _ in range(_TRIES):
        etag = bucket.put_if_absent(key, body)
        if etag is None:
            got = bucket.get(key)
            if got is None:
                continue
            side = parse_head(got.data, got.etag, got.size, "", key)
            if side.kind == HELD:
                if side.nonce != nonce:
                    return side.holder or Holder("", "", 0)
                etag = side.etag
            else:  # given back (or damaged): take it over, on its version
                etag = bucket.put_if_match(key, body, got.etag)
                if etag is None:
                    continue
        # Only the side claim's holder changes a result: read the one we will replace now.
        head = store.read_head(loc)
        if head is None or head.kind in (HELD, FREE):
            with contextlib.suppress(CacheError):
                bucket.put_if_match(key, free_body(None, None), etag)
            return None
        return BucketLease(store, loc, key, etag, nonce, me, fresh=False, seen=head)
    raise CacheError(f"{loc}: its claim kept changing while it was being taken ({_TRIES} times)")


def resume(store: BucketStore, handover: Handover) -> Lease | None:
    """The lease handed over by the runner that took it, if its claim is still in place."""
    loc = handover.location
    try:
        side, etag, nonce, seen_etag = handover.token.split("|")
    except ValueError:
        return None
    name, task_id = store.split(loc)
    key = claim_key(name, task_id) if side == "c" else head_key(name, task_id)
    got = store.bucket.get(key)
    if got is None or got.etag != etag:
        return None
    claim = parse_head(got.data, got.etag, got.size, "", key)
    if claim.kind != HELD or claim.nonce != nonce:
        return None
    seen = None
    if side == "c":
        seen = store.read_head(loc)
        if seen is None or seen.etag != seen_etag:
            return None
    return BucketLease(
        store, loc, key, etag, nonce, handover.holder, fresh=handover.fresh, seen=seen
    )


def read_claim(store: BucketStore, loc: str) -> Holder | None:
    """Who holds the task: its result object's claim, or the side claim of a task with a
    result."""
    head = store.read_head(loc)
    if head is None or head.kind == FREE:
        return None
    if head.kind == HELD:
        return head.holder
    name, task_id = store.split(loc)
    key = claim_key(name, task_id)
    got = store.bucket.get(key)
    if got is None:
        return None
    side = parse_head(got.data, got.etag, got.size, "", key)
    return side.holder if side.kind == HELD else None


def break_claim(store: BucketStore, loc: str, dead: Holder) -> bool:
    """Give back the claim of `dead` if it is still the one in place, by a write conditioned
    on its version (exactly one of several breakers wins); True if the task is free now."""
    bucket = store.bucket
    name, task_id = store.split(loc)
    for _ in range(_TRIES):
        head = store.read_head(loc)
        if head is None or head.kind == FREE:
            return True
        key, claim = head_key(name, task_id), head
        if head.kind != HELD:
            key = claim_key(name, task_id)
            got = bucket.get(key)
            if got is None:
                return True
            claim = parse_head(got.data, got.etag, got.size, "", key)
            if claim.kind != HELD:
                return True
        if claim.holder != dead:
            return False
        if bucket.put_if_match(key, free_body(None, None), claim.etag) is not None:
            return True
    return False
