"""Per-task capture of stdout, stderr and logging records into the task's folder.

Two mechanisms, by where the task runs:

* A worker process runs one task at a time, so `capture_fds` points file descriptors 1 and 2
  at the task's files: output of subprocesses and C code is captured too.
* Threads share the descriptors, so `routed_output` swaps `sys.stdout`/`sys.stderr` for
  routers that send each write to the file of the task running in the writing thread (a
  ContextVar), and adds a logging handler that does the same for log records.
"""

from __future__ import annotations

import contextvars
import io
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TextIO

from taskproc.store import APPEND, CREATE, make_empty, open_file

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_SINK: contextvars.ContextVar[tuple[_LazyFile, _LazyFile] | None] = contextvars.ContextVar(
    "taskproc_sink", default=None
)


def _log_handler(stream: TextIO | None = None) -> logging.Handler:
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _RoutingLogHandler()
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


def _writes_to_fds(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    try:
        return stream is not None and stream.fileno() in (1, 2)
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def capture_fds(out_path: str, err_path: str, append: bool = False) -> Iterator[None]:
    """Send fds 1 and 2 (and so sys.stdout, sys.stderr and logging) to the two files."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    flags = APPEND if append else CREATE
    out = open_file(out_path, flags)
    try:
        err = open_file(err_path, flags)
    except BaseException:
        os.close(out)
        raise
    saved = (os.dup(1), os.dup(2))
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    root = logging.getLogger()
    # Log records go to the task's stderr: through the user's own console handler if there is
    # one (it writes to fd 1 or 2, now the files), else through a handler of ours.
    # sys.stdout may be some other object (a notebook's, a test runner's): write to the fds.
    saved_streams = (sys.stdout, sys.stderr)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    handler = None if any(map(_writes_to_fds, root.handlers)) else _log_handler(sys.stderr)
    if handler is not None:
        root.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            root.removeHandler(handler)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


class _Router(io.TextIOBase):
    """Writes to the current task's file, or to the original stream outside tasks."""

    def __init__(self, original: TextIO, index: int) -> None:
        self._original = original
        self._index = index

    def write(self, s: str) -> int:
        sink = _SINK.get()
        target = sink[self._index] if sink is not None else self._original
        return target.write(s)

    def flush(self) -> None:
        sink = _SINK.get()
        (sink[self._index] if sink is not None else self._original).flush()

    def isatty(self) -> bool:
        return self._original.isatty()

    def fileno(self) -> int:
        return self._original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")


class _RoutingLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink = _SINK.get()
        if sink is None:
            return
        try:
            sink[1].write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@contextmanager
def routed_output() -> Iterator[None]:
    """Install the routers for the duration of a run on threads."""
    saved = (sys.stdout, sys.stderr)
    if saved[0] is not None:
        sys.stdout = _Router(saved[0], 0)
    if saved[1] is not None:
        sys.stderr = _Router(saved[1], 1)
    handler = _log_handler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        sys.stdout, sys.stderr = saved


class _LazyFile:
    """A task's output file: created at once (the folder shows the task has started), but
    opened for writing only when something is written - most tasks write nothing. In a folder
    made for this run (`fresh`) it is created without being opened; otherwise it is opened at
    once, which truncates or appends to the last run's file. (Not an io class: their
    finalizer would close the descriptor a second time.)"""

    def __init__(self, path: str, append: bool, fresh: bool = False) -> None:
        self._path = path
        self._fd = -1
        if fresh and not append:
            make_empty(path)
        else:
            self._fd = open_file(path, APPEND if append else CREATE)
        self._file: IO[str] | None = None

    def _text(self) -> IO[str]:
        if self._file is None:
            if self._fd < 0:
                self._fd = open_file(self._path, APPEND)
            self._file = open(self._fd, "a", encoding="utf-8", errors="replace")
        return self._file

    def write(self, s: str) -> int:
        return self._text().write(s)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        elif self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


@contextmanager
def thread_sink(
    out_path: str, err_path: str, append: bool = False, fresh: bool = False
) -> Iterator[None]:
    """Send this thread's writes to sys.stdout/sys.stderr to the two files (`fresh`: in a
    folder made for this run, where neither exists yet)."""
    out = _LazyFile(out_path, append, fresh)
    try:
        err = _LazyFile(err_path, append, fresh)
    except BaseException:
        out.close()
        raise
    token = _SINK.set((out, err))
    try:
        yield
    finally:
        _SINK.reset(token)
        out.close()
        err.close()
