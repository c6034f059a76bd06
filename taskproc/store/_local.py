"""The cache folder: paths, claims, runner heartbeats and clearing.

Claims make several runners (threads of one program, programs on one machine, or machines
sharing the folder over a network file system) run each task once. A runner claims a task by
creating ``<task folder>/claim`` with O_EXCL (atomic, also over NFS v3 and later); the file
begins with a gzip member naming the runner. The result is written after it and the claim file
is renamed to ``result.pkl.gz``: committing the result releases the claim. Each live runner
rewrites ``.taskproc/runners/<runner>.json`` with a growing beat count every few seconds. A
claim is dead when its runner's process is gone (same host) or its beat has not changed for
`stale_after` seconds by the observer's own clock (any host; clocks are never compared). A
dead claim is broken by renaming it away, which only one of several breakers can do.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass

from taskproc._compact import Compact
from taskproc.errors import CacheError
from taskproc.store._files import (
    EXCL,
    FILE_MODE,
    folder_problem,
    make_dirs,
    read_file,
    remove_temporaries,
    write_all,
    write_atomic,
)
from taskproc.store._resultfile import claim_member, claim_text

MARKER_DIR = ".taskproc"
FORMAT = 1


def hostname() -> str:
    """This machine's name for claims (``TASKPROC_HOSTNAME`` overrides it, for tests)."""
    return os.environ.get("TASKPROC_HOSTNAME") or os.uname().nodename  # = gethostname()


@dataclass(frozen=True, slots=True)
class Claim(Compact):
    """Who holds a task: a runner id, its host and its process id."""

    runner: str
    host: str
    pid: int

    def to_json(self) -> str:
        return json.dumps({"runner": self.runner, "host": self.host, "pid": self.pid})

    @property
    def text(self) -> bytes:
        return _claim_text(self)

    @staticmethod
    def parse(text: str) -> Claim:
        try:
            raw = json.loads(text)
            return Claim(str(raw["runner"]), str(raw["host"]), int(raw["pid"]))
        except (ValueError, KeyError, TypeError):
            return Claim("", "", 0)


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


def open_claim(task_dir: str, me: Claim) -> int | Claim:
    """Claim the task in `task_dir`: the open descriptor of our claim file (the result is
    written after its claim member, and the file renamed into place), else the holder.

    The claim file is created with O_EXCL (atomic also on NFS v3 and later). A runner
    that dies between creating and writing it leaves an empty claim, which `Liveness`
    declares dead once it has stayed unchanged for `stale_after` seconds.
    """
    path = f"{task_dir}/claim"
    try:
        fd = os.open(path, EXCL, FILE_MODE)
    except FileExistsError:
        holder = read_claim(task_dir)
        return holder if holder is not None else open_claim(task_dir, me)
    try:
        write_all(fd, me.text)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def try_claim(task_dir: str, me: Claim) -> Claim | None:
    """Claim the task in `task_dir`. None if we now hold it, else the current holder."""
    got = open_claim(task_dir, me)
    if isinstance(got, Claim):
        return got
    os.close(got)
    return None


def read_claim(task_dir: str) -> Claim | None:
    """Who holds the task in `task_dir`, if anybody."""
    try:
        data = read_file(f"{task_dir}/claim", 4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _parse_claim(data)


def _parse_claim(data: bytes) -> Claim:
    text = claim_text(data)  # None: a claim of an older version, plain JSON
    return Claim.parse((data if text is None else text).decode("utf-8", "replace"))


class Store:
    """A cache folder."""

    def __init__(self, root: str) -> None:
        self.root = root

    def task_dir(self, task_name: str, task_id: str) -> str:
        return os.path.join(self.root, task_name, "results", task_id)

    @property
    def meta_dir(self) -> str:
        return os.path.join(self.root, MARKER_DIR)

    def is_cache(self) -> bool:
        return os.path.isfile(os.path.join(self.meta_dir, "cache.json"))

    def ensure(self) -> None:
        """Make the folder a taskproc cache (done when a run starts, not when building)."""
        try:
            make_dirs(os.path.join(self.meta_dir, "runners"))
            marker = os.path.join(self.meta_dir, "cache.json")
            if not os.path.exists(marker):
                write_atomic(marker, json.dumps({"format": FORMAT}).encode())
        except OSError as exc:
            raise CacheError(
                f"cannot use {self.root!r} as a cache folder: {folder_problem(exc)}"
            ) from None

    # -- claims ----------------------------------------------------------------------

    def try_claim(self, task_dir: str, me: Claim) -> Claim | None:
        return try_claim(task_dir, me)

    def read_claim(self, task_dir: str) -> Claim | None:
        return read_claim(task_dir)

    def release(self, task_dir: str, me: Claim, verify: bool = True) -> None:
        """Remove our claim on the task in `task_dir`.

        With `verify`, first check that it is ours. Without, trust it: only a runner that took
        us for dead (no heartbeat for `stale_after`) can have replaced it.
        """
        if not verify or self.read_claim(task_dir) == me:
            try:
                os.unlink(f"{task_dir}/claim")
            except FileNotFoundError:
                pass

    def break_claim(self, task_dir: str, dead: Claim, me: Claim) -> bool:
        """Remove the claim `dead` if it is still the one in place. True if removed."""
        path = os.path.join(task_dir, "claim")
        aside = os.path.join(task_dir, f".claim.broken.{me.runner}.{secrets.token_hex(3)}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True  # somebody else removed it: the task is free again
        moved = _parse_claim(read_file(aside, 4096))
        if moved != dead:  # a new claim appeared meanwhile: put it back
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
        os.unlink(aside)
        if moved == dead:
            remove_temporaries(task_dir)
        return moved == dead

    # -- runners ---------------------------------------------------------------------

    def runner_file(self, runner: str) -> str:
        return os.path.join(self.meta_dir, "runners", f"{runner}.json")

    def read_beat(self, runner: str) -> str:
        try:
            return read_file(self.runner_file(runner)).decode("utf-8", "replace")
        except (FileNotFoundError, NotADirectoryError):
            return ""

    # -- clearing --------------------------------------------------------------------

    def _remove(self, path: str) -> None:
        """Remove a folder: rename it aside first, so it disappears at once and whole."""
        if not os.path.lexists(path):
            return
        trash = os.path.join(self.meta_dir, "trash")
        make_dirs(trash)
        aside = os.path.join(trash, secrets.token_hex(8))
        os.rename(path, aside)
        shutil.rmtree(aside, ignore_errors=True)

    def clear_task(self, task_name: str, task_id: str) -> None:
        self._remove(self.task_dir(task_name, task_id))

    def clear_task_name(self, task_name: str) -> None:
        self._remove(os.path.join(self.root, task_name))

    def clear_all(self) -> None:
        """Delete every cached task. Refuses a non-empty folder that is not a taskproc cache."""
        if not os.path.isdir(self.root):
            return
        entries = [e for e in os.listdir(self.root) if e != MARKER_DIR]
        if entries and not self.is_cache():
            raise CacheError(
                f"{self.root!r} is not a taskproc cache (no {MARKER_DIR}/cache.json); "
                "refusing to clear it - pass the folder your tasks were cached in"
            )
        for entry in entries:
            self._remove(os.path.join(self.root, entry))


class Heartbeat:
    """Rewrites this runner's heartbeat file every `interval` seconds until stopped."""

    def __init__(self, store: Store, me: Claim, interval: float) -> None:
        self._store = store
        self._me = me
        self._interval = interval
        self._stop = threading.Event()
        self._beat = 0
        self._thread = threading.Thread(target=self._loop, name="taskproc-heartbeat", daemon=True)

    def _write(self) -> None:
        self._beat += 1
        payload = {
            "runner": self._me.runner,
            "host": self._me.host,
            "pid": self._me.pid,
            "beat": self._beat,
        }
        try:
            write_atomic(self._store.runner_file(self._me.runner), json.dumps(payload).encode())
        except OSError:
            pass  # a missed beat only makes others wait longer

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._write()

    def start(self) -> None:
        self._write()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            os.unlink(self._store.runner_file(self._me.runner))
        except OSError:
            pass


class Liveness:
    """Decides whether the runner behind a claim is dead, without comparing clocks."""

    def __init__(self, store: Store, me: Claim, stale_after: float) -> None:
        self._store = store
        self._me = me
        self._stale_after = stale_after
        self._seen: dict[str, tuple[str, float]] = {}

    def is_dead(self, claim: Claim) -> bool:
        if claim.host == self._me.host and claim.pid and not pid_alive(claim.pid):
            return True
        beat = self._store.read_beat(claim.runner) if claim.runner else ""
        key = claim.to_json()
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is None or seen[0] != beat:
            self._seen[key] = (beat, now)
            return False
        return now - seen[1] > self._stale_after
