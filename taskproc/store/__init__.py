"""The store: where results, claims and a task's files live. It alone knows the cache layout.

`Store` is the contract (with its records, `Lease` and the capabilities); `open_store` opens a
store by its folder path or URL; `LocalStore` is the cache folder of every run, `BucketStore` a
cache in a bucket (``s3://``), `MemoryStore` a store in a dict for tests. The result file format
is `_resultfile.py`.
"""

from typing import TYPE_CHECKING, Any

from taskproc.store._claims import hostname, new_runner, pid_alive
from taskproc.store._contract import (
    CAPABILITIES,
    STREAMS,
    ClaimTaken,
    CodeEntry,
    DeadlineFiles,
    Handover,
    Holder,
    Lease,
    OutputFiles,
    Portable,
    PrefixFiles,
    PrefixJobs,
    Record,
    ResultReplaced,
    Store,
    StoredTask,
    TaskFolders,
    Unreadable,
    check_key,
    output_tail,
    read_record,
    require,
)
from taskproc.store._files import (
    APPEND,
    CREATE,
    FILE_MODE,
    ensure_dir,
    folder_problem,
    make_dirs,
    make_empty,
    open_file,
    open_write,
    read_text,
    tail,
    write_atomic,
)
from taskproc.store._liveness import (
    Heartbeat,
    Liveness,
    live_codes,
    live_runners,
    read_beat,
    runner_alive,
)
from taskproc.store._local import MARKER_DIR, LocalStore
from taskproc.store._open import SCHEMES, open_store, scheme_of
from taskproc.store._resultfile import StampMaker

if TYPE_CHECKING:
    from taskproc.store._bucket import bucket_client_used
    from taskproc.store._codes import (
        code_identities,
        delete_code_identity,
        read_code_identity,
        write_code_identity,
    )
    from taskproc.store._memory import MemoryStore
    from taskproc.store._runs import RunSummary, read_last_run, write_last_run
    from taskproc.store._s3 import BucketStore
    from taskproc.store._s3heads import result_data_sums

# Imported on first use: a worker process imports the store, and needs none of these.
_LATER = {
    **dict.fromkeys(
        ("code_identities", "delete_code_identity", "read_code_identity", "write_code_identity"),
        "_codes",
    ),
    "MemoryStore": "_memory",
    "BucketStore": "_s3",
    "bucket_client_used": "_bucket",
    "result_data_sums": "_s3heads",
    **dict.fromkeys(("RunSummary", "read_last_run", "write_last_run"), "_runs"),
}


def __getattr__(name: str) -> Any:
    module = _LATER.get(name)
    if module is None:
        raise AttributeError(f"module 'taskproc.store' has no attribute {name!r}")
    import importlib

    value = globals()[name] = getattr(importlib.import_module(f"taskproc.store.{module}"), name)
    return value


__all__ = [
    "APPEND",
    "BucketStore",
    "CAPABILITIES",
    "CREATE",
    "FILE_MODE",
    "MARKER_DIR",
    "SCHEMES",
    "STREAMS",
    "ClaimTaken",
    "CodeEntry",
    "DeadlineFiles",
    "Handover",
    "Heartbeat",
    "Holder",
    "Lease",
    "Liveness",
    "LocalStore",
    "MemoryStore",
    "OutputFiles",
    "Portable",
    "PrefixFiles",
    "PrefixJobs",
    "Record",
    "ResultReplaced",
    "RunSummary",
    "StampMaker",
    "Store",
    "StoredTask",
    "TaskFolders",
    "Unreadable",
    "bucket_client_used",
    "check_key",
    "code_identities",
    "delete_code_identity",
    "ensure_dir",
    "folder_problem",
    "hostname",
    "live_codes",
    "live_runners",
    "make_dirs",
    "make_empty",
    "new_runner",
    "open_file",
    "open_store",
    "open_write",
    "output_tail",
    "pid_alive",
    "read_beat",
    "read_code_identity",
    "read_last_run",
    "read_record",
    "read_text",
    "require",
    "result_data_sums",
    "runner_alive",
    "scheme_of",
    "tail",
    "write_atomic",
    "write_code_identity",
    "write_last_run",
]
