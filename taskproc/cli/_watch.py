"""Waiting for changes under some paths, for ``taskproc FILE.py -o CACHE --watch PATH ...``.

The file-system events come from watchfiles (the operating system's notifications through
the Rust `notify` crate; no polling), an optional dependency (``pip install 'taskproc[watch]'``)
imported only when ``--watch`` is given. `Changes` starts watching when it is made and keeps
collecting events while the caller runs the graph, so a file dropped during a run is not
missed: the next `wait` returns at once. Events are debounced: `wait` returns once the paths
have been quiet for `QUIET_MS` (at most `GROUP_MS` after the first event), so a burst of files
is one change. Changes under the ignored paths (the cache folder, which every run writes to)
and editor or version-control files (watchfiles' default filter) do not count.

Ctrl-C while waiting raises KeyboardInterrupt, and SIGTERM SystemExit(143), as anywhere else
in the command (watchfiles turns any exception of a signal handler into KeyboardInterrupt, so
`wait` notes a SIGTERM itself).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from taskproc.cli._parse import EXIT_TERM
from taskproc.errors import UsageError

GROUP_MS = 1600  # the longest a burst of events is grouped into one change
QUIET_MS = 300  # a change is over when nothing happened for this long
TICK_MS = 200  # how often the wait wakes up in Python (Ctrl-C is seen sooner, in Rust)

INSTALL_HINT = (
    "--watch needs the watchfiles package, which is not installed: "
    "pip install 'taskproc[watch]' (or pip install watchfiles)"
)


def check_paths(paths: Sequence[str]) -> list[str]:
    """The paths to watch, absolute; UsageError for one that does not exist."""
    out = []
    for path in paths:
        if not os.path.exists(path):
            raise UsageError(
                f"--watch {path}: no such file or folder; create it or give an existing path"
            )
        out.append(os.path.abspath(path))
    return out


class Changes:
    """Changes under `paths` from now on, except under `ignore`."""

    def __init__(self, paths: Sequence[str], ignore: Sequence[str] = ()) -> None:
        try:
            import watchfiles
        except ImportError:
            raise UsageError(INSTALL_HINT) from None
        default = watchfiles.DefaultFilter()
        ignored = [os.path.abspath(p) for p in ignore]

        def counts(change: Any, path: str) -> bool:
            return default(change, path) and not any(_under(path, p) for p in ignored)

        self._events: Generator[set[tuple[Any, str]], None, None] = watchfiles.watch(
            *check_paths(paths),
            watch_filter=counts,
            debounce=GROUP_MS,
            step=QUIET_MS,
            rust_timeout=TICK_MS,
            yield_on_timeout=True,
        )
        next(self._events)  # the watcher is made on the first step; events count from here

    def wait(self) -> set[str]:
        """Block until something changed; the paths that changed. Raises KeyboardInterrupt
        on Ctrl-C, SystemExit(143) on SIGTERM."""
        with _terms_noted() as terms:
            try:
                for batch in self._events:
                    if batch:
                        return {path for _, path in batch}
                raise KeyboardInterrupt  # watchfiles stops without raising only on a signal
            except KeyboardInterrupt:
                if terms:
                    raise SystemExit(EXIT_TERM) from None
                raise

    def close(self) -> None:
        """Stop watching."""
        self._events.close()


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@contextlib.contextmanager
def _terms_noted() -> Iterator[list[int]]:
    """While waiting, SIGTERM is noted (in the list yielded) and stops the wait."""
    terms: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield terms
        return

    def on_term(signum: int, frame: Any) -> None:
        terms.append(signum)
        raise SystemExit(EXIT_TERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield terms
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
