"""Small file operations with the fewest system calls, and modes that are never world-writable.

System calls are worth counting: each one lets other Python threads take the interpreter lock
and must take it back, which costs a context switch as soon as a thread pool has more threads
than the machine has cores.

Files are created with mode 0o664 and folders with 0o775, further restricted by the user's
umask: a cache may be shared by a group, never written by everyone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from typing import IO, Any

FILE_MODE = 0o664
DIR_MODE = 0o775
# Never through a final symlink: a link planted in the cache (or a cache copied with `cp -rs`)
# must not make taskproc write outside it. O_EXCL with O_CREAT never follows one either.
CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
EXCL = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW


def make_dirs(path: str) -> None:
    """`os.makedirs(path, exist_ok=True)`, giving every folder it makes DIR_MODE."""
    missing = []
    head = path
    while head and not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise


def ensure_dir(path: str) -> bool:
    """Make `path` (one system call when its parent exists); True if it was made now."""
    try:
        os.mkdir(path, DIR_MODE)
        return True
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return False
    except FileNotFoundError:
        make_dirs(path)
        return True


def open_file(path: str, flags: int) -> int:
    """`os.open(path, flags, FILE_MODE)` for writing; a symlink at `path` (the flags never
    follow one) is replaced by a new file, so nothing outside the cache is written."""
    try:
        return os.open(path, flags, FILE_MODE)
    except OSError as exc:
        if exc.errno != errno.ELOOP or not os.path.islink(path):
            raise
    os.unlink(path)
    return os.open(path, flags, FILE_MODE)


def make_empty(path: str) -> None:
    """Create `path` as a new empty file with FILE_MODE in one system call and without a
    descriptor to close (three calls fewer than `open_file` and a write): for a folder that
    holds nothing yet. Anything already there (a file, or a symlink, never followed) is
    replaced by an empty file as `open_file` does."""
    try:
        os.mknod(path, stat.S_IFREG | FILE_MODE)
    except OSError:  # there already; or a file system that cannot make a node this way
        os.close(open_file(path, CREATE))


def write_file(path: str, data: bytes, flags: int = CREATE) -> None:
    """Write `data` to `path` with two system calls less than `open()` needs."""
    fd = open_file(path, flags)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def write_all(fd: int, data: Any) -> None:
    """Write all of `data` (bytes or a buffer) to the descriptor `fd`."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_file(path: str, limit: int = 1 << 16, *, follow: bool = True) -> bytes:
    """The first `limit` bytes of the file at `path` (without `follow`, never through a final
    symlink: ELOOP)."""
    fd = os.open(path, os.O_RDONLY if follow else os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def temp_path(path: str) -> str:
    """A unique temporary name beside `path`, for write-then-rename."""
    head, tail = os.path.split(path)
    # Unique per process, thread and nanosecond, without a system call for randomness.
    return f"{head}/.{tail}.{os.getpid()}.{threading.get_ident():x}.{time.monotonic_ns():x}.tmp"


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    tmp = temp_path(path)
    try:
        write_file(tmp, data, EXCL)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_write(path: str, *, append: bool = False, text: bool = True) -> IO[Any]:
    """An open file for writing (truncated, or appended to) with FILE_MODE."""
    fd = open_file(path, APPEND if append else CREATE)
    if text:
        return open(fd, "a" if append else "w", encoding="utf-8", errors="replace")
    return open(fd, "ab" if append else "wb")


def remove_temporaries(folder: str) -> None:
    """Delete temporary files left in `folder` by a writer that died (call it while holding
    the folder's claim, so no live writer is there)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(".") and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def folder_problem(exc: OSError, path: str | None = None) -> str:
    """A one-line cause and fix for a failure to use the cache folder."""
    where = exc.filename or path or "the cache folder"
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return (
            f"{where} (or a folder above it) is a file where taskproc needs a folder; remove "
            "it or choose another folder"
        )
    if exc.errno == errno.ENOSPC:
        return f"{exc.strerror} writing {where}; free space in the cache folder"
    return f"{exc.strerror or exc}: {where}; check its permissions or choose a writable folder"


def read_text(path: str, limit: int = 1 << 20) -> str:
    """The first `limit` bytes of a text file ('' if there is none)."""
    try:
        return read_file(path, limit).decode("utf-8", "replace")
    except OSError:
        return ""


def tail(path: str, lines: int = 20, max_bytes: int = 8192) -> str:
    """The last `lines` lines of a text file ('' if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def list_folder(folder: str) -> dict[str, os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return {e.name: e for e in it}
    except OSError:
        return {}


def mtime(entry: os.DirEntry[str] | None) -> float | None:
    if entry is None:
        return None
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return None


def folder_size(folder: str, listed: dict[str, os.DirEntry[str]] | None = None) -> int:
    """Bytes of the files under `folder`, not following the ``deps/`` links; `listed` is
    the folder's listing when the caller has it already."""
    total = 0
    pending = [listed if listed is not None else list_folder(folder)]
    while pending:
        for entry in pending.pop().values():
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(list_folder(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
