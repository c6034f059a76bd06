"""A cache of many stored tasks made quickly through the store (no run): for the dashboard's
tests and benchmark. Each task is a leaf with its own id, arguments and record, as a run
would have left it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from taskproc.model import digest
from taskproc.run._plan import stamps_digest
from taskproc.store import LocalStore, Record


def fill_cache(root: Path, n: int, name: str = "big.Clean", failed: int = 0) -> LocalStore:
    """`n` done tasks of `name` (and the first `failed` of them failed instead)."""
    store = LocalStore(root)
    store.ensure()
    deps = stamps_digest([])
    info = json.dumps({"duration": 0.25, "finished": time.time(), "host": "h", "pid": 1})
    for i in range(n):
        args = json.dumps({"i": i}, separators=(",", ":"))
        task_id = digest(args)
        loc = store.locate(name, task_id)
        store.make_folder(loc)
        store.start_attempt(loc, args, (), fresh=True, keep_output=False)
        if i < failed:
            store.write_error(loc, f"Traceback (most recent call last):\nValueError: bad {i}\n")
        else:
            record = Record(f"s{i}", "code", None, deps, f"{name}/{task_id}")
            store.commit(loc, i, record, 1, info, None)
    return store
