"""Whether the runner behind a claim is alive: heartbeats, and watching them.

Each live runner rewrites its heartbeat (a growing beat count), the meta entry
``runners/<runner>.json``, every few seconds. A claim is dead when its runner's process is gone
(same host) or its beat has not changed for `stale_after` seconds by the observer's own clock
(any host: clocks are never compared).

A heartbeat also names the code identities its runner uses (``codes``), written before the
runner stores the identity itself (`Heartbeat.uses_code`): ``gc`` keeps the identities of live
runners (`live_codes`), whose results may not be committed yet.
"""

from __future__ import annotations

import json
import threading
import time

from taskproc.store._claims import pid_alive
from taskproc.store._contract import Holder, Store

BEATS = "runners/"


def _beat_key(runner: str) -> str:
    return f"{BEATS}{runner}.json"


def read_beat(store: Store, runner: str) -> str:
    """The runner's last heartbeat; "" if it has none (it stopped, or never ran)."""
    data = store.read_meta(_beat_key(runner)) if runner else None
    return data.decode("utf-8", "replace") if data is not None else ""


def live_runners(store: Store) -> list[str]:
    """The runners that have a heartbeat (alive, or died without removing it)."""
    return [k[len(BEATS) : -len(".json")] for k in store.list_meta(BEATS) if k.endswith(".json")]


def live_codes(store: Store, here: str) -> frozenset[str]:
    """The code identities that the heartbeats of runners alive at a glance name (a runner
    on this host whose process is gone is not)."""
    codes: set[str] = set()
    for runner in live_runners(store):
        try:
            beat = json.loads(read_beat(store, runner) or "{}")
            if beat.get("host") == here and not pid_alive(int(beat.get("pid", 0))):
                continue
            codes.update(c for c in beat.get("codes", ()) if isinstance(c, str))
        except (ValueError, TypeError, AttributeError):
            continue  # a damaged heartbeat names nothing
    return frozenset(codes)


def runner_alive(store: Store, claim: Holder, here: str) -> bool:
    """Whether the runner behind `claim` looks alive at a glance (for views, which do not wait
    and watch): its heartbeat exists and, on this host, its process too."""
    if claim.host == here and claim.worker and pid_alive(claim.worker):
        return True  # a worker still at it, whatever became of its runner
    if not claim.runner or not read_beat(store, claim.runner):
        return False
    return claim.host != here or pid_alive(claim.pid)


class Heartbeat:
    """Rewrites this runner's heartbeat every `interval` seconds until stopped."""

    def __init__(self, store: Store, me: Holder, interval: float) -> None:
        self._store = store
        self._me = me
        self._interval = interval
        self._stop = threading.Event()
        self._beat = 0
        self._codes: list[str] = []
        self._lock = threading.Lock()  # one writer at a time: the thread, or `uses_code`
        self._thread = threading.Thread(target=self._loop, name="taskproc-heartbeat", daemon=True)

    def _write(self) -> None:
        with self._lock:
            self._beat += 1
            me = self._me
            payload = {
                "runner": me.runner,
                "host": me.host,
                "pid": me.pid,
                "beat": self._beat,
                "codes": self._codes,
            }
            try:
                self._store.write_meta(_beat_key(me.runner), json.dumps(payload).encode())
            except OSError:
                pass  # a missed beat only makes others wait longer

    def uses_code(self, digest: str) -> None:
        """Name the code identity `digest` in this runner's heartbeat from now on, writing it at
        once the first time (before the caller stores the identity)."""
        with self._lock:
            if digest in self._codes:
                return
            self._codes.append(digest)
        self._write()

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
            self._store.delete_meta(_beat_key(self._me.runner))
        except OSError:
            pass


class Liveness:
    """Decides whether the runner behind a claim is dead, without comparing clocks."""

    def __init__(self, store: Store, me: Holder, stale_after: float) -> None:
        self._store = store
        self._me = me
        self._stale_after = stale_after
        self._seen: dict[str, tuple[str, float]] = {}

    def is_dead(self, claim: Holder) -> bool:
        if claim.host == self._me.host and claim.pid and not pid_alive(claim.pid):
            # The runner is gone; a worker of it may still be finishing the task.
            return not (claim.worker and pid_alive(claim.worker))
        beat = read_beat(self._store, claim.runner)
        key = claim.to_json()
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is None or seen[0] != beat:
            self._seen[key] = (beat, now)
            return False
        return now - seen[1] > self._stale_after
