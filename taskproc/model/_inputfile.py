"""`InputFile`: a file or a folder on the runner's machine, as an upstream future.

An input is a built-in task whose result is its path and whose *stamp* is the digest of its
content, so a task that reads it sees it through the ordinary freshness rule: its record's
`inputs` digest counts the input's stamp, and changes when, and only when, the bytes do.

    InputFile('data/train.csv')
      identity ........ the path relative to the working directory (absolute outside it), so
                        a project moved elsewhere, or on another machine, keeps its identities
      result .......... the absolute path on the runner's machine (workers get it with the
                        job; they never read the stamp)
      stamp ........... blake2b of the content: of a file its bytes, of a folder the relative
                        name and bytes of every regular file under it, recursively, symlinks
                        followed (a folder reached twice is read once), sorted by name
      record .......... stamp, `INPUT_CODE` as the code, and as `inputs` the digest of what
                        ``stat`` says of each file (size, mtime_ns, ctime_ns, inode); the
                        stored value is the table of those facts with each file's digest

Checking an input (the plan does, `check_input`) stats every file; when the facts are those
recorded, the stored stamp holds and no byte is read. Otherwise only the files whose facts
changed are read again (in 1 MiB pieces, never whole), the others keep their recorded digest.
A file is read between two ``fstat`` calls and read again if it changed meanwhile. A file
written less than `RACY_NS` before it was read may change again without its time changing (the
clock's grain): its time is recorded negated (``~mtime_ns``, which no ``stat`` gives), so the
next check reads it again. The cache
folder itself is left out of a folder that holds it. When the content is the same but the
facts are not (``touch``, a checkout), the input runs alone: its record is rewritten with the
new facts, and no task downstream of it reruns.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskproc.errors import ArgumentError, TaskDefinitionError
from taskproc.model._build import TaskMeta
from taskproc.model._freshness import Reason
from taskproc.model._task import TaskBase
from taskproc.store import Record, Unreadable

if TYPE_CHECKING:
    from taskproc.model._ledger import Ledger

# The code identity of every input's record: the format of its table and of its stamp.
INPUT_CODE = hashlib.blake2b(b"taskproc.InputFile 1", digest_size=16).hexdigest()
RACY_NS = 2_000_000_000
CHUNK = 1 << 20
TRIES = 3

# One file as recorded: (relative name, "" for a single file; size, mtime_ns, ctime_ns, inode,
# digest of its bytes). Plain tuples, so a stored table loads whatever taskproc's classes become.
Row = tuple[str, int, int, int, int, str]
Files = list[tuple[str, str, os.stat_result]]  # (relative name, path, stat) each


@dataclass(frozen=True, slots=True)
class Scan:
    """An input as a check found it: its files with their digests, the digest of their facts
    (`state`, the record's `inputs`), of their content (`stamp`), how many were read, and why
    it cannot be read ("" if it can). `reader` names a task that needs it, for the error."""

    path: Path
    rows: tuple[Row, ...] = ()
    state: str = ""
    stamp: str = ""
    read: int = 0
    error: str = ""
    reader: str = ""

    def record(self, key: str) -> Record:
        """The record of this scan, for the input whose key is `key`."""
        return Record(self.stamp, INPUT_CODE, None, self.state, key)


class _InputMeta(TaskMeta):
    """Builds an input from its path's identity (see the module docstring)."""

    def __call__(cls, path):  # type: ignore[no-untyped-def]  # keeps __init__'s types
        return super().__call__(input_identity(path))  # type: ignore[no-untyped-call]


class InputFile(TaskBase, metaclass=_InputMeta):
    """A file or a folder (every file under it, recursively) on the runner's machine, as an
    upstream future: ``self.data = InputFile('data/train.csv')``. Its result is the absolute
    path; a task that holds it reruns when, and only when, the bytes change (see
    docs/freshness.md). A relative path is taken from the working directory."""

    task_name = "taskproc.InputFile"
    task_compress_level = 1  # the table of its files: written often, read rarely

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TaskDefinitionError(
            f"{cls.__qualname__}: InputFile cannot be subclassed; hold an InputFile as an "
            "attribute of your task instead"
        )

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # `path` is the identity `_InputMeta` made of the caller's path (normalized).
        self.path = Path(os.path.join(os.getcwd(), path))

    def run_task(self) -> Path:
        return self.path

    def get_result(self) -> Path:  # the path: known, never loaded
        """The input's absolute path (known without running anything)."""
        return self.path


def input_identity(path: object) -> str:
    """The identity of an input at `path`: relative to the working directory when it is
    under it, else absolute; normalized. ArgumentError if `path` is not a path."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text or "\0" in text:
        raise ArgumentError.of(
            InputFile.task_name,
            f"path must be a file or folder name (a str or a pathlib.Path), got {path!r}",
        )
    norm = os.path.normpath(text)  # lexical, as os.path.abspath is
    if not os.path.isabs(norm):
        if norm == os.pardir or norm.startswith(os.pardir + os.sep):
            return os.path.abspath(norm)
        return norm
    here = os.getcwd()
    if norm == here:
        return os.curdir
    inside = here.rstrip(os.sep) + os.sep
    return norm[len(inside) :] if norm.startswith(inside) else norm


# -- reading the files ----------------------------------------------------------------------


def _facts(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def list_files(path: Path, cache: str = "") -> Files:
    """(relative name, path, stat) of each regular file `path` stands for, sorted by name; a
    file alone has the name "". Symlinks are followed; a folder reached twice is listed once,
    the folder `cache` never. OSError if `path` cannot be read, or is neither a file nor a
    folder."""
    top = os.stat(path)
    if stat.S_ISREG(top.st_mode):
        return [("", str(path), top)]
    if not stat.S_ISDIR(top.st_mode):
        raise OSError(f"{path} is neither a file nor a folder")
    out: Files = []
    seen = {(top.st_dev, top.st_ino)}
    try:
        held = os.stat(cache) if cache else None
    except (OSError, ValueError):
        held = None
    if held is not None:
        seen.add((held.st_dev, held.st_ino))
    stack = [("", str(path))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        folders = []
        for entry in entries:
            try:
                st = entry.stat()  # follows a symlink
            except FileNotFoundError:  # a broken link, or removed meanwhile
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    folders.append((f"{prefix}{entry.name}/", entry.path))
            elif stat.S_ISREG(st.st_mode):
                out.append((f"{prefix}{entry.name}", entry.path, st))
        stack.extend(reversed(folders))  # depth first, in name order: the same every time
    out.sort(key=lambda f: f[0])
    return out


def _line(name: str, facts: Iterable[int]) -> bytes:
    return name.encode("utf-8", "surrogateescape") + b"\0" + " ".join(map(str, facts)).encode()


def state_digest(rows: Iterable[tuple[str, int, int, int, int]]) -> str:
    """The digest of the facts of files: (name, size, mtime_ns, ctime_ns, inode) each."""
    h = hashlib.blake2b(digest_size=16)
    for name, *facts in rows:
        h.update(_line(name, facts) + b"\n")
    return h.hexdigest()


def content_stamp(rows: Iterable[Row], folder: bool) -> str:
    """The stamp of an input: the digest of its files' names and digests."""
    h = hashlib.blake2b(b"folder\n" if folder else b"file\n", digest_size=16)
    for row in rows:
        h.update(row[0].encode("utf-8", "surrogateescape") + b"\0" + row[5].encode() + b"\n")
    return h.hexdigest()


def read_digest(path: str) -> tuple[str, os.stat_result]:
    """The digest of a file's bytes, read in pieces, and its facts as read. OSError if it
    cannot be read, or if it kept changing while it was being read."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    for _ in range(TRIES):
        with open(path, "rb", buffering=0) as f:
            before = os.fstat(f.fileno())
            h = hashlib.blake2b(digest_size=16)
            size = 0
            while n := f.readinto(buf):
                h.update(view[:n])
                size += n
            after = os.fstat(f.fileno())
        if _facts(before) == _facts(after) and size == after.st_size:
            return h.hexdigest(), after
    raise OSError(f"{path} kept changing while it was being read ({TRIES} times)")


def scan(path: Path, files: Files, known: Mapping[str, Row]) -> Scan:
    """The scan of an input whose files are `files` (`list_files`), reading only those whose
    facts are not as `known` (an earlier scan's rows, by name) recorded them."""
    now = time.time_ns()
    rows: list[Row] = []
    read = 0
    for name, full, st in files:
        old = known.get(name)
        if old is not None and old[1:5] == _facts(st):  # a racy time (negated) never matches
            rows.append(old)
            continue
        digest, st = read_digest(full)
        read += 1
        size, mtime, ctime, ino = _facts(st)
        if mtime >= now - RACY_NS:  # may change again within the clock's grain
            mtime = ~mtime
        rows.append((name, size, mtime, ctime, ino, digest))
    folder = not (len(files) == 1 and files[0][0] == "")
    return Scan(
        path,
        tuple(rows),
        state_digest(r[:5] for r in rows),
        content_stamp(rows, folder),
        read,
    )


def problem(exc: OSError, path: Path) -> str:
    """Why an input cannot be read, in one line."""
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {path}"
    if isinstance(exc, PermissionError):
        return f"permission denied reading {exc.filename or path}"
    return str(exc) if not exc.strerror else f"{exc.strerror}: {exc.filename or path}"


# -- the check the plan makes -----------------------------------------------------------------


def stored_rows(task: InputFile) -> dict[str, Row]:
    """The rows the input's stored result keeps, by name; {} if they cannot be read."""
    try:
        value = task._tp.store.load(task._tp_loc(), repr(task))
        rows = {r[0]: r for r in value if type(r) is tuple and len(r) == 6}
        return rows if len(rows) == len(value) else {}
    except Exception:  # gone, damaged, or not a table: read every file again
        return {}


def check_input(
    task: InputFile, found: Record | Unreadable | None, ledger: Ledger
) -> Reason | None:
    """Whether the input's record holds (None), or why it must be recorded again: its
    content changed, its files were touched (same content: no task downstream of it reruns),
    it was never recorded, its record is unreadable, or it cannot be read. Notes its stamp in
    `ledger` whenever it is known, and the scan to record (or the error) in `ledger.scans`."""
    record = found if isinstance(found, Record) and found.code_id == INPUT_CODE else None
    try:
        files = list_files(task.path, task._tp.store.root)  # a folder leaves the cache out
        if record is not None and record.inputs == state_digest(
            (name, *_facts(st)) for name, _, st in files
        ):
            ledger.stamps[task] = record.stamp
            return None
        now = scan(task.path, files, stored_rows(task) if record is not None else {})
    except OSError as exc:
        ledger.scans[task] = Scan(task.path, error=problem(exc, task.path))
        return Reason.NO_FILE
    ledger.stamps[task] = now.stamp
    ledger.scans[task] = now
    if isinstance(found, Unreadable):
        return Reason.CORRUPT
    if record is None:
        return Reason.MISSING
    return Reason.TOUCHED if now.stamp == record.stamp else Reason.FILES
