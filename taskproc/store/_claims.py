"""Who runs a task: runner identities and claims.

Claims make several runners (threads of one program, programs on one machine, or machines
sharing the cache over a network file system) run each task once. A store keeps at most one
claim per task, created atomically; the first runner to create it runs the task. Whether a
claim's runner is still alive is `_liveness.py`.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from dataclasses import dataclass

from taskproc._compact import Compact
from taskproc.store._resultfile import claim_member, claim_text


def hostname() -> str:
    """This machine's name for claims (``TASKPROC_HOSTNAME`` overrides it, for tests)."""
    return os.environ.get("TASKPROC_HOSTNAME") or os.uname().nodename  # = gethostname()


@dataclass(frozen=True, slots=True)
class Claim(Compact):
    """Who holds a task: a runner id, its host and its process id, and the process that does
    the work (`worker`: a pool worker's pid; 0 when the runner itself holds the claim). A claim
    is dead only when both are gone: a worker that outlives its runner still owns its task."""

    runner: str
    host: str
    pid: int
    worker: int = 0

    def to_json(self) -> str:
        data = {"runner": self.runner, "host": self.host, "pid": self.pid}
        if self.worker:
            data["worker"] = self.worker
        return json.dumps(data)

    def held_by(self, other: Claim) -> bool:
        """Whether `other` names the same runner (whichever of its processes works on it)."""
        return (self.runner, self.host, self.pid) == (other.runner, other.host, other.pid)

    def in_worker(self) -> Claim:
        """This runner's claim as made by the process that calls it (a worker)."""
        pid = os.getpid()
        return self if pid == self.pid else Claim(self.runner, self.host, self.pid, pid)

    @property
    def text(self) -> bytes:
        """The claim as the gzip member a local claim file begins with."""
        return _claim_text(self)

    @staticmethod
    def parse(text: str) -> Claim:
        try:
            raw = json.loads(text)
            worker = int(raw.get("worker", 0))
            return Claim(str(raw["runner"]), str(raw["host"]), int(raw["pid"]), worker)
        except (ValueError, KeyError, TypeError):
            return Claim("", "", 0)

    @staticmethod
    def from_bytes(data: bytes) -> Claim:
        """The claim a claim file's bytes name (the gzip member, or older plain JSON)."""
        text = claim_text(data)  # None: a claim of an older version, plain JSON
        return Claim.parse((data if text is None else text).decode("utf-8", "replace"))


@functools.lru_cache(maxsize=16)
def _claim_text(claim: Claim) -> bytes:
    return claim_member(claim.to_json().encode())


def new_runner() -> Claim:
    """The identity of a new runner in this process."""
    return Claim(secrets.token_hex(6), hostname(), os.getpid())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
