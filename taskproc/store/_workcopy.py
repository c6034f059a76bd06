"""The local working copy of a bucket: what this machine has read of it, and the local files
of the tasks it runs.

Design note. A bucket is far (a millisecond a request on loopback, more across a network), so a
machine keeps what it read, named by what makes it immutable: a result object's record by the
object's ETag, a result file by its record's stamp (new for every write of a result). Nothing
here is ever invalidated: an entry whose ETag or stamp is not the bucket's current one is
simply not looked up. Several processes (runners, pool workers) share one working copy: every
file is written to a temporary name and renamed, and the record index is appended to, one
checksummed line a record, so a line torn by two writers is skipped, never misread.

Layout, under ``${TASKPROC_WORKING_COPY:-${XDG_CACHE_HOME:-~/.cache}/taskproc/buckets}/<bucket>/
<digest of endpoint and prefix>/``::

    records/<task_name>.tsv          id, ETag, kind, record, facts, checksum: one line each
    results/<task_name>/<id>.<stamp>.pkl.gz   result files read or written here (a rerun's
                                     commit removes the result it replaced)
    output/<task_name>/<id>.stdout.txt, .stderr.txt, .deadline.txt   a task running here
    data/<task_name>/<id>/           task_directory: of the task running here, or of the result
                                     named in <id>.stamp, unpacked from its archive
    jobs/<task_name>/<id>/           a prefix run's job, outcome and the command's output

The record index answers the plan of a cached rerun from one LIST a thousand tasks (about 25 µs
a task on loopback) instead of a ranged GET each.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from taskproc.store._files import (
    APPEND,
    EXCL,
    FILE_MODE,
    list_folder,
    make_dirs,
    temp_path,
    write_atomic,
)

ENV = "TASKPROC_WORKING_COPY"
# Rewrite an index file when it holds this many more lines than tasks (old ETags of reruns).
_COMPACT_SLACK = 1000


def default_root(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """Where working copies live: ``$TASKPROC_WORKING_COPY``, else the user's cache folder."""
    env = os.environ if environ is None else environ
    given = env.get(ENV)
    if given:
        return Path(given).expanduser()
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "taskproc" / "buckets"


def folder_for(root: Path, bucket: str, where: str) -> Path:
    """The working copy of one bucket and prefix (`where`: the endpoint and the URL)."""
    digest = hashlib.blake2b(where.encode(), digest_size=8).hexdigest()
    return root / bucket / digest


@dataclass(frozen=True, slots=True)
class Known:
    """What the index knows of one version (ETag) of a task's result object: its kind
    (``result``, ``held``, ``free``), the record's text and the facts (JSON text) of a
    result, or the body (JSON text) of a claim."""

    etag: str
    kind: str
    record: str
    facts: str


def _line(task_id: str, known: Known) -> str:
    body = f"{task_id}\t{known.etag}\t{known.kind}\t{known.record}\t{known.facts}"
    return f"{body}\t{zlib.crc32(body.encode()):08x}\n"


def _parse_line(line: str) -> tuple[str, Known] | None:
    fields = line.split("\t")
    if len(fields) != 6:
        return None
    body = line[: line.rfind("\t")]
    if f"{zlib.crc32(body.encode()):08x}" != fields[5].strip():
        return None  # torn by two writers, or damaged: a miss, never a wrong answer
    return fields[0], Known(fields[1], fields[2], fields[3], fields[4])


class WorkingCopy:
    """One bucket's working copy (see the module's note). Thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, Known]] = {}
        self._made: set[str] = set()
        self._appending: dict[str, int] = {}  # index files kept open for appending

    def _dir(self, path: str) -> str:
        """`path`, made if missing (once per process)."""
        if path not in self._made:
            make_dirs(path)
            self._made.add(path)
        return path

    # -- the record index -----------------------------------------------------------------

    def _records_file(self, task_name: str) -> str:
        return os.path.join(self.folder, "records", f"{task_name}.tsv")

    def known(self, task_name: str) -> dict[str, Known]:
        """What the index knows of the tasks of `task_name`, by task id (the latest line of
        each wins). Read from disk once per process."""
        with self._lock:
            found = self._index.get(task_name)
            if found is not None:
                return found
        path = self._records_file(task_name)
        found = {}
        lines = 0
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    lines += 1
                    parsed = _parse_line(line)
                    if parsed is not None:
                        found[parsed[0]] = parsed[1]
        except OSError:
            pass
        if lines > 2 * len(found) + _COMPACT_SLACK:
            self._rewrite(path, found)
        with self._lock:
            return self._index.setdefault(task_name, found)

    def remember(self, task_name: str, entries: list[tuple[str, Known]]) -> None:
        """Add what was read to the index (appended: other processes may be appending too)."""
        if not entries:
            return
        index = self.known(task_name)
        with self._lock:
            index.update(entries)
        text = "".join(_line(task_id, known) for task_id, known in entries)
        try:
            with self._lock:
                fd = self._appending.get(task_name)
                if fd is None:
                    path = self._records_file(task_name)
                    self._dir(os.path.dirname(path))
                    fd = self._appending[task_name] = os.open(path, APPEND, FILE_MODE)
            os.write(fd, text.encode())  # one call, appended whole (O_APPEND)
        except OSError:
            pass  # a cache: what is not kept is read again next time

    def _rewrite(self, path: str, found: dict[str, Known]) -> None:
        tmp = temp_path(path)
        try:
            with open(tmp, "x", encoding="utf-8") as f:
                f.write("".join(_line(task_id, known) for task_id, known in found.items()))
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    # -- result files ---------------------------------------------------------------------

    def result_path(self, task_name: str, task_id: str, stamp: str) -> str:
        return os.path.join(self.folder, "results", task_name, f"{task_id}.{stamp}.pkl.gz")

    def has_result(self, task_name: str, task_id: str, stamp: str) -> str | None:
        path = self.result_path(task_name, task_id, stamp)
        return path if os.path.isfile(path) else None

    def new_result(self, task_name: str, task_id: str) -> tuple[str, int]:
        """A temporary file for a result being written or downloaded, open for writing."""
        folder = self._dir(os.path.join(self.folder, "results", task_name))
        tmp = temp_path(os.path.join(folder, task_id))
        return tmp, os.open(tmp, EXCL, FILE_MODE)

    def keep_result(self, tmp: str, task_name: str, task_id: str, stamp: str) -> str:
        """Put the temporary file `tmp` in place as the result of `stamp`."""
        path = self.result_path(task_name, task_id, stamp)
        os.replace(tmp, path)
        return path

    def keep_bytes(self, task_name: str, task_id: str, stamp: str, data: bytes) -> None:
        """Keep a result file held in memory (best effort: a cache)."""
        path = self.result_path(task_name, task_id, stamp)
        with contextlib.suppress(OSError):
            self._dir(os.path.dirname(path))
            write_atomic(path, data)

    def drop_result(self, task_name: str, task_id: str, stamp: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.result_path(task_name, task_id, stamp))

    # -- files of tasks running here --------------------------------------------------------

    def output_paths(self, task_name: str, task_id: str) -> tuple[str, str, str]:
        """stdout, stderr and deadline files of a task running on this machine."""
        folder = self._dir(os.path.join(self.folder, "output", task_name))
        base = os.path.join(folder, task_id)
        return f"{base}.stdout.txt", f"{base}.stderr.txt", f"{base}.deadline.txt"

    def work_folder(self, task_name: str, task_id: str) -> Path:
        """The task's task_directory on this machine (not made): one path, whichever result
        it holds, so that a path into it stays good on this machine as in a folder cache."""
        return Path(self.folder, "data", task_name, task_id)

    def folder_stamp(self, task_name: str, task_id: str) -> str | None:
        """The stamp of the result whose folder `work_folder` holds ("": of a task without
        a result, run here); None if unknown."""
        try:
            with open(self._stamp_file(task_name, task_id), encoding="ascii") as f:
                return f.read()
        except (OSError, ValueError):
            return None

    def set_folder_stamp(self, task_name: str, task_id: str, stamp: str) -> None:
        path = self._stamp_file(task_name, task_id)
        self._dir(os.path.dirname(path))
        with contextlib.suppress(OSError):
            write_atomic(path, stamp.encode())

    def _stamp_file(self, task_name: str, task_id: str) -> str:
        return os.path.join(self.folder, "data", task_name, f"{task_id}.stamp")

    def job_folder(self, task_name: str, task_id: str) -> str:
        return self._dir(os.path.join(self.folder, "jobs", task_name, task_id))

    def forget_task(self, task_name: str, task_id: str) -> None:
        """Remove what this machine holds of a task (it was deleted from the bucket), except a
        task_directory a task running here is using."""
        results = os.path.join(self.folder, "results", task_name)
        for name in list_folder(results):
            if name.startswith(f"{task_id}."):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(results, name))
        with contextlib.suppress(OSError):
            os.unlink(self._stamp_file(task_name, task_id))
