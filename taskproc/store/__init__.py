"""The store: where results, claims and a task's files live. It alone knows the cache layout.

`Store` is the contract; `LocalStore` the cache folder of every run; `MemoryStore` a store in a
dict for tests. The result file format (`Record` and the gzip members) is `_resultfile.py`.
"""

from taskproc.store._claims import Claim, hostname, new_runner
from taskproc.store._contract import CodeEntry, PrefixFiles, Store, StoredTask, Ticket
from taskproc.store._files import (
    FILE_MODE,
    ensure_dir,
    folder_problem,
    open_write,
    tail,
    write_atomic,
)
from taskproc.store._liveness import Heartbeat, Liveness, runner_alive
from taskproc.store._local import MARKER_DIR, LocalStore
from taskproc.store._memory import MemoryStore
from taskproc.store._resultfile import ClaimTaken, Record, StampMaker

__all__ = [
    "FILE_MODE",
    "MARKER_DIR",
    "Claim",
    "ClaimTaken",
    "CodeEntry",
    "Heartbeat",
    "Liveness",
    "LocalStore",
    "MemoryStore",
    "PrefixFiles",
    "Record",
    "StampMaker",
    "Store",
    "StoredTask",
    "Ticket",
    "ensure_dir",
    "folder_problem",
    "hostname",
    "new_runner",
    "open_write",
    "runner_alive",
    "tail",
    "write_atomic",
]
