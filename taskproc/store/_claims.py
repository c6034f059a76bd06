"""Who runs a task: runner identities, and the bytes of a claim file.

Claims make several runners (threads of one program, programs on one machine, or machines
sharing the cache) run each task once. A store keeps at most one claim per task, created
atomically; the first runner to create it runs the task. A claim names its `Holder`; whether
the holder is still alive is `_liveness.py`. A folder's claim file begins with an empty gzip
member whose header comment names the holder (see `_resultfile.py`), so that the result can
be written after it and the file renamed into place.
"""

from __future__ import annotations

import functools
import os

from taskproc.store._contract import Holder
from taskproc.store._resultfile import claim_member, claim_text


def hostname() -> str:
    """This machine's name for claims (``TASKPROC_HOSTNAME`` overrides it, for tests)."""
    return os.environ.get("TASKPROC_HOSTNAME") or os.uname().nodename  # = gethostname()


def new_runner() -> Holder:
    """The identity of a new runner in this process."""
    return Holder(os.urandom(6).hex(), hostname(), os.getpid())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.lru_cache(maxsize=16)
def claim_bytes(holder: Holder) -> bytes:
    """The claim of `holder` as the gzip member a claim file begins with."""
    return claim_member(holder.to_json().encode())


def holder_of(data: bytes) -> Holder:
    """The holder a claim file's bytes name (the gzip member, or older plain JSON)."""
    text = claim_text(data)  # None: a claim of an older version, plain JSON
    return Holder.parse((data if text is None else text).decode("utf-8", "replace"))
