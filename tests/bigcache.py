"""A cache of many stored tasks made quickly through the store (no run): for the dashboard's
tests and benchmark. Each task is a leaf with its own id, arguments and record, as a run
would have left it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from taskproc.model import digest, stamps_digest
from taskproc.store import Holder, LocalStore, Record, Store, new_runner


def put_task(
    store: Store, name: str, task_id: str, args: str, value: object = None, error: str = ""
) -> str:
    """A task as a run leaves it: its arguments, then its result (`value`) or its failure
    (`error`); its location."""
    loc = store.locate(name, task_id)
    lease = store.claim(loc, new_runner())
    assert not isinstance(lease, Holder), lease
    with lease:
        lease.start(args, (), keep_output=False)
        if not error:
            record = Record(
                f"s{task_id[:12]}", "code", None, stamps_digest([]), f"{name}/{task_id}"
            )
            info = json.dumps({"duration": 0.25, "finished": time.time(), "host": "h", "pid": 1})
            lease.commit(value, record, 1, info)
    if error:
        store.write_error(loc, error)
    return loc


def fill_cache(root: Path, n: int, name: str = "big.Clean", failed: int = 0) -> LocalStore:
    """`n` done tasks of `name` (and the first `failed` of them failed instead)."""
    store = LocalStore(root)
    store.ensure()
    for i in range(n):
        args = json.dumps({"i": i}, separators=(",", ":"))
        error = f"Traceback (most recent call last):\nValueError: bad {i}\n" if i < failed else ""
        put_task(store, name, digest(args), args, i, error)
    return store
