"""What a run holds while it runs: the executor (made on first need when the run owns it), the
heartbeat that tells other runners it is alive, output routing for thread pools, and SIGTERM
turned into an exit that cleans up."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, Executor
from typing import Any

from taskproc.errors import ConfigError, Terminated
from taskproc.run._capture import routed_output
from taskproc.run._children import child_pids, stop_new_children
from taskproc.run._executors import (
    InlineExecutor,
    forks_lazily,
    owned_pool,
    runs_in_process,
    stop_workers,
)
from taskproc.run._options import RunOptions
from taskproc.store import Heartbeat, Holder, Store


class Resources:
    """The executor, the heartbeat and output routing of one run."""

    def __init__(self, options: RunOptions, store: Store, me: Holder) -> None:
        self._options = options
        self._store = store
        self._me = me
        self._owned: Executor | None = None
        self._heartbeat: Heartbeat | None = None
        self._stack = contextlib.ExitStack()
        self.interrupted = False
        # Children this process had before the run: an interrupt stops only those its tasks
        # start (on threads, or inline), see `_children.py`.
        self._children_before = child_pids() if self.in_process() else set()

    @property
    def owned(self) -> bool:
        """Whether the run owns its executor (the default process pool)."""
        return self._options.executor is None

    def executor(self) -> Executor:
        given = self._options.executor
        if given is not None:
            return given
        if self._owned is None:
            # Forked workers cannot use a bucket client their parent had used (obstore): a
            # pool made after that (a second run, a pool replaced) starts new interpreters.
            spawn = not getattr(self._store, "fork_safe", True) and _bucket_used()
            self._owned = owned_pool(self._options.max_workers, spawn=spawn)
            # Start the workers now, before this process has threads of its own: forking a
            # process that has threads can deadlock.
            try:
                self._owned.submit(int).result()
            except BrokenExecutor:
                if not spawn:
                    raise
                self._owned.shutdown(wait=False, cancel_futures=True)
                self._owned = None
                raise ConfigError(
                    "a process pool on a bucket: this process used the bucket already (an "
                    "earlier run), so the pool's workers start as new interpreters ('spawn'), "
                    "which import the main script again, and they failed; put the script's "
                    "code under `if __name__ == '__main__':`, or pass executor= a thread pool "
                    "or dask"
                ) from None
        return self._owned

    def in_process(self) -> bool:
        """Whether tasks run in this process (so they get task objects, not jobs)."""
        given = self._options.executor
        return given is not None and runs_in_process(given)

    def replace_broken(self, broken: Executor | None) -> None:
        """Drop an owned pool that lost a worker (once); the next task makes a new one."""
        if broken is not None and broken is self._owned:
            stop_workers(self._owned)
            self._owned.shutdown(wait=False, cancel_futures=True)
            self._owned = None

    def prefork(self) -> None:
        """Start the workers of a pool that forks them, now, before the store's first request
        (for a store whose client cannot cross a fork: `fork_safe` False)."""
        given = self._options.executor
        if given is None:
            self.executor()
        elif forks_lazily(given):
            given.submit(int).result()

    def start(self, need_executor: bool) -> None:
        if need_executor:
            executor = self.executor()
            if forks_lazily(executor):
                # A pool that forks its workers on first use: start them now, before the
                # heartbeat thread exists (forking a process that has threads can deadlock).
                executor.submit(int).result()
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self._store, self._me, self._options.heartbeat_interval)
            self._heartbeat.start()
        given = self._options.executor
        if given is not None and runs_in_process(given) and not isinstance(given, InlineExecutor):
            self._stack.enter_context(routed_output())

    def uses_code(self, digest: str) -> None:
        """Name a code identity this run uses in its heartbeat (at once, the first time), so
        that ``gc`` keeps its record while the run goes on."""
        if self._heartbeat is not None:
            self._heartbeat.uses_code(digest)

    def stop_workers(self) -> None:
        if self._owned is not None:
            stop_workers(self._owned)

    def close(self) -> None:
        if self.interrupted and self.in_process():
            stop_new_children(self._children_before)
        self._stack.close()
        if self._owned is not None:
            if self.interrupted:
                stop_workers(self._owned)
            self._owned.shutdown(wait=True, cancel_futures=True)
            self._owned = None
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None


def _bucket_used() -> bool:
    from taskproc.store import bucket_client_used  # loads the bucket layer only here

    return bucket_client_used()


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While running, turn SIGTERM into `Terminated` (SystemExit(143)) so that cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
