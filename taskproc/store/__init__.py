"""The store: where results, claims and a task's files live. It alone knows the cache layout.

`Store` is the contract; `LocalStore` the cache folder of every run; `MemoryStore` a store in a
dict for tests. The result file format (`Record` and the gzip members) is `_resultfile.py`.
"""

from taskproc.store._claims import Claim, hostname, new_runner, pid_alive
from taskproc.store._contract import (
    CodeEntry,
    PrefixFiles,
    RunSummary,
    Store,
    StoredTask,
    Ticket,
    check_meta_key,
)
from taskproc.store._files import (
    APPEND,
    CREATE,
    FILE_MODE,
    ensure_dir,
    folder_problem,
    make_empty,
    open_file,
    open_write,
    read_text,
    tail,
    write_atomic,
)
from taskproc.store._liveness import Heartbeat, Liveness, runner_alive
from taskproc.store._local import MARKER_DIR, LocalStore
from taskproc.store._memory import MemoryStore
from taskproc.store._resultfile import ClaimTaken, Record, StampMaker

__all__ = [
    "APPEND",
    "CREATE",
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
    "RunSummary",
    "StampMaker",
    "Store",
    "StoredTask",
    "Ticket",
    "check_meta_key",
    "ensure_dir",
    "folder_problem",
    "hostname",
    "make_empty",
    "new_runner",
    "open_file",
    "open_write",
    "pid_alive",
    "read_text",
    "runner_alive",
    "tail",
    "write_atomic",
]
