"""Waiting for changes under some paths, for ``taskproc FILE.py -o CACHE --watch PATH ...``.

The file-system events come from watchfiles (the operating system's notifications through
the Rust `notify` crate; no polling), an optional dependency (``pip install 'taskproc[watch]'``)
imported only when ``--watch`` is given. `Changes` starts watching when it is made and keeps
collecting events while the caller runs the graph, so a file dropped during a run is not
missed: the next `wait` returns at once.

Two watchers, because a watch is on an inode, not on a name::

    near   the parent folder of each watched path, not recursive; only events whose path is
           a watched path count. A file replaced by rename (``sed -i``, an editor's safe save)
           or deleted and written again is a new inode under the same name: the parent sees it.
    deep   each watched folder that exists, recursive (DefaultFilter: no editor or
           version-control files). When `near` sees a watched folder come or go, or `deep`
           sees one go, `deep` is made again over the folders that exist then (re-armed), so
           a folder deleted and made again is watched again.

Events are debounced in `wait`: it returns once the paths have been quiet for `QUIET_MS` (at
most `GROUP_MS` after the first event), so a burst of files is one change. Changes under the
ignored paths (the cache folder, which every run writes to) do not count; paths are compared
resolved (symlinks followed), so a cache named through a symlink is still the cache.

Ctrl-C while waiting raises KeyboardInterrupt, and SIGTERM SystemExit(143), as anywhere else
in the command (watchfiles turns any exception of a signal handler into KeyboardInterrupt, so
`wait` notes a SIGTERM itself).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import Any

from taskproc.cli._parse import EXIT_TERM
from taskproc.errors import UsageError

GROUP_MS = 1600  # the longest a burst of events is grouped into one change
QUIET_MS = 300  # a change is over when nothing happened for this long
STEP_MS = 50  # each watcher is asked this often (Ctrl-C is seen at once, in Rust)

INSTALL_HINT = (
    "--watch needs the watchfiles package, which is not installed: "
    "pip install 'taskproc[watch]' (or pip install watchfiles)"
)

Events = Generator[set[tuple[Any, str]], None, None]


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
        self._watch = watchfiles.watch
        self._default = watchfiles.DefaultFilter()
        given = check_paths(paths)
        # Each path by the name it was given and by its target: an edit of a symlink's target
        # and a new symlink are both changes.
        self._names = frozenset(given) | frozenset(os.path.realpath(p) for p in given)
        self._ignored = _Ignored(ignore)
        self._pending: set[str] = set()
        self._armed: frozenset[str] = frozenset()  # the folders `deep` watches
        self._near = self._arm(sorted({os.path.dirname(n) for n in self._names}), deep=False)
        self._deep: Events | None = None
        self._rearm()

    def wait(self) -> set[str]:
        """Block until something changed; the paths that changed. Raises KeyboardInterrupt
        on Ctrl-C, SystemExit(143) on SIGTERM."""
        with _terms_noted() as terms:
            try:
                return self._wait()
            except KeyboardInterrupt:
                if terms:
                    raise SystemExit(EXIT_TERM) from None
                raise

    def close(self) -> None:
        """Stop watching."""
        self._near.close()
        if self._deep is not None:
            self._deep.close()

    def _wait(self) -> set[str]:
        first = last = time.monotonic() if self._pending else None
        while True:
            before = len(self._pending)
            self._take(next(self._near), near=True)
            if self._deep is not None:
                self._take(next(self._deep), near=False)
            now = time.monotonic()
            if len(self._pending) > before:
                first = now if first is None else first
                last = now
            if first is not None and last is not None:
                if now - last >= QUIET_MS / 1000 or now - first >= GROUP_MS / 1000:
                    changed, self._pending = self._pending, set()
                    return changed

    def _take(self, batch: set[tuple[Any, str]], *, near: bool) -> None:
        """Add the events of one watcher that count to the pending changes; re-arm `deep`
        when a watched folder came or went."""
        if near:
            paths = {path for _, path in batch if path in self._names}
        else:
            paths = {path for change, path in batch if self._default(change, path)}
        counted = self._ignored.drop(paths)
        self._pending |= counted
        if any(n in self._armed or os.path.isdir(n) for n in counted & self._names):
            self._rearm()

    def _rearm(self) -> None:
        """(Re)make `deep` over the watched folders that exist now."""
        if self._deep is not None:
            self._deep.close()
            self._deep = None
        self._armed = frozenset(n for n in self._names if os.path.isdir(n))
        with contextlib.suppress(FileNotFoundError):  # gone again: `near` will see it back
            self._deep = self._arm(sorted(self._armed), deep=True) if self._armed else None

    def _arm(self, paths: list[str], *, deep: bool) -> Events:
        """A watcher over `paths`, started; what it saw while starting is pending."""
        events: Events = self._watch(
            *paths,
            watch_filter=None,
            debounce=GROUP_MS,
            step=STEP_MS,
            rust_timeout=1,  # return after one quiet step
            yield_on_timeout=True,
            recursive=deep,
        )
        self._take(next(events), near=not deep)  # the watcher is made on the first step
        return events


class _Ignored:
    """The ignored folders, by the name given and resolved; an event's folder is resolved too
    when the names alone do not tell (a symlink inside a watched folder)."""

    def __init__(self, folders: Iterable[str]) -> None:
        given = [os.path.abspath(p) for p in folders]
        self._folders = tuple(sorted(set(given) | {os.path.realpath(p) for p in given}))

    def drop(self, paths: set[str]) -> set[str]:
        """The paths not under an ignored folder."""
        if not self._folders:
            return paths
        resolve = functools.cache(os.path.realpath)  # per batch: many files per folder
        return {
            p
            for p in paths
            if not self._under(p)
            and not self._under(os.path.join(resolve(os.path.dirname(p)), os.path.basename(p)))
        }

    def _under(self, path: str) -> bool:
        return any(_under(path, folder) for folder in self._folders)


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
