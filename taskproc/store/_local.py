"""`LocalStore`: the cache as a folder tree, browsable with ``tree -l``.

This module alone knows the layout::

    <cache>/
      .taskproc/cache.json               marks the folder as a taskproc cache (format version)
      .taskproc/runners/<runner>.json    one heartbeat file per live runner
      .taskproc/last_run.json            the last run to finish: its wall time (for status)
      .taskproc/trash/                   folders being deleted (renamed here first)
      .taskproc/code/<code>.json.gz      what a code identity covers, with sources (for
                                         ``taskproc why``), one file per distinct identity
      .taskproc/<key>                    a metadata document (`write_meta`), e.g.
                                         runs/<runner>.json, history/<start>-<runner>.json
      <task_name>/results/<task_id>/     a task's location
          args.json                      canonical arguments (human readable)
          result.pkl.gz                  the result and its record (see _resultfile.py)
          claim                          while a runner owns the task: a gzip member naming
                                         it, then the result being written; renamed to
                                         result.pkl.gz when complete
          error.txt                      the last failure (its traceback)
          stdout.txt stderr.txt          captured output of the last attempt
          deadline.txt                   tracebacks of a task ended for overrunning its timeout
          prefix_stdout.txt prefix_stderr.txt   the prefix command's own output
          job.pkl outcome.pkl            a prefix run's job and its outcome
          data/                          task_directory: made when first asked for (never
                                         while a graph builds); clear_task() empties it and
                                         keeps it
          deps/<attr>                    relative links to the upstream tasks' locations

A location is the task's folder path. A claim is the file ``claim``, created with O_EXCL (atomic
also on NFS v3 and later); the result is written after its claim member and the file renamed
to ``result.pkl.gz``: committing the result releases the claim, and no file is deleted on the
way. A dead claim is broken by renaming it away, which only one of several breakers can do.

A task is deleted (``clear``, ``gc``) by renaming its folder into ``.taskproc/trash`` first: it
leaves its place whole, in one step, and is then removed at leisure. ``gc`` also claims the task
first and checks that its result is still the one it meant to delete (`delete_unchanged`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from taskproc.errors import CacheError, CorruptResultError
from taskproc.store._claims import Claim
from taskproc.store._codes import code_ids, delete_code, read_code, write_code
from taskproc.store._contract import (
    CodeEntry,
    PrefixFiles,
    RunSummary,
    StoredTask,
    Ticket,
    check_meta_key,
)
from taskproc.store._files import (
    EXCL,
    FILE_MODE,
    ensure_dir,
    folder_problem,
    folder_size,
    list_folder,
    make_dirs,
    mtime,
    read_file,
    remove_temporaries,
    tail,
    write_all,
    write_atomic,
    write_file,
)
from taskproc.store._resultfile import (
    Record,
    read_header,
    read_record,
    rewrite_record,
    write_result,
)
from taskproc.store._resultload import load_result

MARKER_DIR = ".taskproc"
FORMAT = 1
RESULT = "result.pkl.gz"
CLAIM = "claim"
ERROR = "error.txt"
ARGS = "args.json"
DATA = "data"
STDOUT, STDERR = "stdout.txt", "stderr.txt"
DEADLINE = "deadline.txt"
LAST_RUN = "last_run.json"  # in the marker folder
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_DEPTH = "../../../../"  # from <task folder>/deps/<link> up to the cache folder


class LocalStore:
    """A cache folder (see the module docstring for its layout)."""

    __slots__ = ("_root",)

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = os.fspath(root)

    def __reduce__(self) -> tuple[Any, ...]:
        return (LocalStore, (self._root,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStore) and other._root == self._root

    def __hash__(self) -> int:
        return hash(self._root)

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    @property
    def root(self) -> str:
        return self._root

    @property
    def _meta(self) -> str:
        return os.path.join(self._root, MARKER_DIR)

    # -- the store as a whole -----------------------------------------------------------

    def is_cache(self) -> bool:
        return os.path.isfile(os.path.join(self._meta, "cache.json"))

    def is_new(self) -> bool:
        """Whether the folder may become a cache: missing, empty, or being made one by another
        runner (it holds only the marker folder)."""
        if not os.path.exists(self._root):
            return True
        if not os.path.isdir(self._root):
            return False
        with os.scandir(self._root) as it:
            return all(entry.name == MARKER_DIR for entry in it)

    def ensure(self) -> None:
        try:
            make_dirs(os.path.join(self._meta, "runners"))
            marker = os.path.join(self._meta, "cache.json")
            if not os.path.exists(marker):
                write_atomic(marker, json.dumps({"format": FORMAT}).encode())
        except OSError as exc:
            raise CacheError(
                f"cannot use {self._root!r} as a cache folder: {folder_problem(exc)}"
            ) from None

    def task_names(self) -> list[str]:
        try:
            entries = os.listdir(self._root)
        except OSError:
            return []
        return sorted(
            e
            for e in entries
            if not e.startswith(".") and os.path.isdir(os.path.join(self._root, e, "results"))
        )

    def task_ids(self, task_name: str) -> frozenset[str] | None:
        try:
            return frozenset(os.listdir(f"{self._root}/{task_name}/results"))
        except FileNotFoundError:
            return frozenset()
        except OSError:
            return None  # cannot tell: probe each task

    @property
    def _last_run(self) -> str:
        return os.path.join(self._meta, LAST_RUN)

    def write_last_run(self, summary: RunSummary) -> None:
        kept = self.read_last_run()
        if kept is not None and kept.finished > summary.finished:
            return  # another runner finished later
        write_atomic(self._last_run, json.dumps(summary.to_json()).encode())

    def read_last_run(self) -> RunSummary | None:
        try:
            return RunSummary.from_json(json.loads(read_file(self._last_run)))
        except (OSError, ValueError):
            return None

    def read_stamp(self, task_name: str, task_id: str) -> str | None:
        try:
            record = self.read_record(self.locate(task_name, task_id))
        except CorruptResultError:
            return None
        return record.stamp if record else None

    # -- code identities -----------------------------------------------------------------

    @property
    def _codes(self) -> str:
        return os.path.join(self._meta, "code")

    def write_code(self, code: str, entries: Sequence[CodeEntry]) -> None:
        write_code(self._codes, code, entries)

    def read_code(self, code: str) -> tuple[CodeEntry, ...] | None:
        return read_code(self._codes, code)

    def code_ids(self) -> frozenset[str]:
        return code_ids(self._codes)

    def delete_code(self, code: str) -> None:
        delete_code(self._codes, code)

    # -- metadata ------------------------------------------------------------------------

    def _meta_path(self, key: str) -> str | None:
        """The file of metadata `key`; None if a folder on the way is a symlink (never read or
        written through one: it may lead out of the cache)."""
        check_meta_key(key.rstrip("/"))
        path = self._meta
        for word in key.rstrip("/").split("/")[:-1]:
            path = f"{path}/{word}"
            if os.path.islink(path):
                return None
        return f"{self._meta}/{key.rstrip('/')}"

    def write_meta(self, key: str, data: bytes) -> None:
        path = self._meta_path(key)
        if path is None:
            raise OSError(errno.ELOOP, f"a folder of metadata {key!r} is a symlink", self._meta)
        make_dirs(os.path.dirname(path))
        write_atomic(path, data)

    def read_meta(self, key: str) -> bytes | None:
        path = self._meta_path(key)
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # missing, a symlink, or a folder
            return None
        with open(fd, "rb") as f:
            try:
                return f.read()
            except IsADirectoryError:
                return None

    def list_meta(self, prefix: str) -> list[str]:
        top = self._meta_path(prefix)
        if top is None or os.path.islink(top):
            return []
        keys = []
        for folder, dirs, files in os.walk(top):  # never into symlinked folders
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = os.path.relpath(folder, self._meta)
            keys += [
                f"{rel}/{name}"
                for name in files
                if not name.startswith(".") and not os.path.islink(f"{folder}/{name}")
            ]
        return sorted(keys)

    def delete_meta(self, key: str) -> None:
        path = self._meta_path(key)
        if path is not None:
            _unlink(path)

    def scan(self, names: Iterable[str], *, with_size: bool = False) -> list[StoredTask]:
        out = []
        for name in names:
            try:
                ids = sorted(os.listdir(os.path.join(self._root, name, "results")))
            except OSError:
                continue
            for task_id in ids:
                if not task_id.startswith("."):
                    out.append(self._read_folder(name, task_id, with_size))
        return out

    def read_args(self, loc: str) -> str | None:
        try:
            return read_file(f"{loc}/{ARGS}", 1 << 24).decode("utf-8").strip()
        except (OSError, ValueError):
            return None

    def _read_folder(self, task_name: str, task_id: str, with_size: bool) -> StoredTask:
        folder = self.locate(task_name, task_id)
        files = list_folder(folder)
        claim = self.read_claim(folder) if CLAIM in files else None
        result_time = mtime(files.get(RESULT))
        record: Record | None = None
        facts: dict[str, Any] = {}
        damage = ""
        if result_time is not None:
            try:
                header = read_header(f"{folder}/{RESULT}", _owner(folder))
            except CorruptResultError as exc:
                damage = str(exc)
            else:
                if header is not None:
                    record, facts = header
        return StoredTask(
            task_name=task_name,
            task_id=task_id,
            location=folder,
            record=record,
            facts=facts,
            result_time=result_time,
            error_time=mtime(files.get(ERROR)),
            claim=claim,
            claimed_since=mtime(files.get(CLAIM)),
            damage=damage,
            upstream=_upstream_keys(folder) if record is not None else None,
            size=folder_size(folder, files) if with_size else None,
            log=f"{folder}/{STDERR}",
            error_file=f"{folder}/{ERROR}",
        )

    # -- one task: results ---------------------------------------------------------------

    def locate(self, task_name: str, task_id: str) -> str:
        return f"{self._root}/{task_name}/results/{task_id}"

    def read_record(self, loc: str) -> Record | None:
        return read_record(f"{loc}/{RESULT}", _owner(loc))

    def load(self, loc: str, who: str) -> Any:
        try:
            return load_result(f"{loc}/{RESULT}", task=who, owner=_owner(loc))
        except CorruptResultError as exc:
            raise CorruptResultError(str(exc), loc) from exc.__cause__

    def discard_result(self, loc: str) -> None:
        try:
            os.unlink(f"{loc}/{RESULT}")
        except OSError:
            pass

    def result_file(self, loc: str) -> str:
        return f"{loc}/{RESULT}"

    def data_folder(self, loc: str) -> Path:
        path = f"{loc}/{DATA}"
        make_dirs(path)
        return Path(path)

    # -- one task: running it ---------------------------------------------------------------

    def make_folder(self, loc: str) -> bool:
        return ensure_dir(loc)

    def claim(self, loc: str, me: Claim) -> Ticket | Claim:
        """The open descriptor of our new claim file (the result is written after its claim
        member, and the file renamed into place), else the holder.

        A runner that dies between creating and writing the file leaves an empty claim,
        which `Liveness` declares dead once it has stayed unchanged for `stale_after` seconds.
        """
        path = f"{loc}/{CLAIM}"
        try:
            fd = os.open(path, EXCL, FILE_MODE)
        except FileExistsError:
            holder = self.read_claim(loc)
            return holder if holder is not None else self.claim(loc, me)
        try:
            write_all(fd, me.text)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        return fd

    def close_claim(self, loc: str, ticket: Ticket, *, remove: bool) -> None:
        os.close(ticket)
        if remove:
            _unlink(f"{loc}/{CLAIM}")

    def read_claim(self, loc: str) -> Claim | None:
        try:
            data = read_file(f"{loc}/{CLAIM}", 4096)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Claim.from_bytes(data)

    def release(self, loc: str, me: Claim, verify: bool = True) -> None:
        """Without `verify`, trust that the claim is ours: only a runner that took us for dead
        (no heartbeat for `stale_after`) can have replaced it."""
        held = self.read_claim(loc) if verify else None
        if not verify or (held is not None and held.held_by(me)):
            _unlink(f"{loc}/{CLAIM}")

    def break_claim(self, loc: str, dead: Claim, me: Claim) -> bool:
        path = f"{loc}/{CLAIM}"
        aside = f"{loc}/.claim.broken.{me.runner}.{secrets.token_hex(3)}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True  # somebody else removed it: the task is free again
        moved = Claim.from_bytes(read_file(aside, 4096))
        if moved != dead:  # a new claim appeared meanwhile: put it back
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
        os.unlink(aside)
        if moved == dead:
            remove_temporaries(loc)
        return moved == dead

    def commit(
        self, loc: str, value: Any, record: Record, level: int, info: str, ticket: Ticket | None
    ) -> int:
        claim = None if ticket is None else (ticket, f"{loc}/{CLAIM}")
        return write_result(f"{loc}/{RESULT}", value, record, level, info, claim)

    def rekey(self, loc: str, expect: Record, record: Record, ticket: Ticket) -> bool:
        note = {"accepted": {"code": expect.code, "time": round(time.time(), 3)}}
        return rewrite_record(f"{loc}/{RESULT}", expect, record, note, (ticket, f"{loc}/{CLAIM}"))

    def delete_unchanged(self, loc: str, me: Claim, stamp: str | None) -> int | None:
        """Claim the task, check its stamp, rename its folder into the trash, remove it there.
        The claim keeps runners out meanwhile (they wait for it, then find the task gone)."""
        try:
            got = self.claim(loc, me)
        except (FileNotFoundError, NotADirectoryError):
            return None  # gone already
        if isinstance(got, Claim):
            return None
        removed = False
        try:
            try:
                record = self.read_record(loc)
            except CorruptResultError:
                record = None
                if stamp is not None:
                    return None
            if (record.stamp if record is not None else None) != stamp:
                return None
            size = folder_size(loc) - os.fstat(got).st_size  # not counting our claim
            self._remove(loc)  # the claim file leaves with the folder
            removed = True
            return size
        finally:
            self.close_claim(loc, got, remove=not removed)

    def start_attempt(
        self,
        loc: str,
        args_json: str,
        links: Sequence[tuple[str, str, str]],
        *,
        fresh: bool,
        keep_output: bool,
    ) -> None:
        if not fresh:  # a folder made for this run has nothing old in it
            # Captured runs truncate stdout/stderr as they open them.
            for name in (ERROR, DEADLINE) if keep_output else (ERROR, DEADLINE, STDOUT, STDERR):
                _unlink(f"{loc}/{name}")
        write_file(f"{loc}/{ARGS}", args_json.encode() + b"\n")
        if links:
            self._link(loc, links)

    def _link(self, loc: str, links: Sequence[tuple[str, str, str]]) -> None:
        """``deps/<attr>``: relative symlinks to the upstream tasks' folders."""
        deps = f"{loc}/deps"
        ensure_dir(deps)
        for attr, task_name, task_id in links:
            name = _UNSAFE.sub("_", attr).strip(".")[:120] or "_"
            try:
                os.symlink(f"{_DEPTH}{task_name}/results/{task_id}", f"{deps}/{name}")
            except FileExistsError:
                pass
            except OSError:
                return  # a file system without symlinks: the links are only for browsing

    def output_files(self, loc: str) -> tuple[str, str]:
        return f"{loc}/{STDOUT}", f"{loc}/{STDERR}"

    def deadline_file(self, loc: str) -> str:
        return f"{loc}/{DEADLINE}"

    def output_tail(self, loc: str, lines: int = 10) -> str:
        parts = []
        for name, file in (("stdout", STDOUT), ("stderr", STDERR)):
            text = tail(f"{loc}/{file}", lines)
            if text:
                parts.append(f"[{name}]\n{text}")
        return "\n".join(parts)

    def read_output(self, loc: str) -> tuple[str, str]:
        texts = []
        for name in (STDOUT, STDERR):
            try:
                with open(f"{loc}/{name}", encoding="utf-8", errors="replace") as f:
                    texts.append(f.read())
            except OSError:
                texts.append("")
        return texts[0], texts[1]

    def write_error(self, loc: str, text: str) -> None:
        try:
            write_atomic(f"{loc}/{ERROR}", text.encode())
        except OSError:
            pass  # the failure is still reported; only its record on disk is missing

    def read_error(self, loc: str) -> str | None:
        try:
            with open(f"{loc}/{ERROR}", errors="replace") as f:
                return f.read(1 << 20)
        except OSError:
            return None

    def prefix_files(self, loc: str) -> PrefixFiles:
        return PrefixFiles(
            f"{loc}/job.pkl",
            f"{loc}/outcome.pkl",
            f"{loc}/prefix_stdout.txt",
            f"{loc}/prefix_stderr.txt",
        )

    # -- clearing --------------------------------------------------------------------

    def _remove(self, path: str) -> None:
        """Remove a folder: rename it aside first, so it disappears at once and whole."""
        if not os.path.lexists(path):
            return
        trash = os.path.join(self._meta, "trash")
        make_dirs(trash)
        aside = os.path.join(trash, secrets.token_hex(8))
        try:
            if os.path.islink(trash):  # not ours: never move anything through it
                raise OSError(errno.EXDEV, "trash is a link")
            os.rename(path, aside)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            aside = path  # the trash is on another file system: delete in place
        if os.path.islink(aside):
            os.unlink(aside)
        else:
            shutil.rmtree(aside, ignore_errors=True)

    def empty_trash(self) -> None:
        """Remove what an interrupted deletion left in the trash (it is out of every task's
        place already, so removing it concurrently with another deleter is harmless)."""
        trash = os.path.join(self._meta, "trash")
        for name in list_folder(trash):
            shutil.rmtree(os.path.join(trash, name), ignore_errors=True)

    def clear_task(self, task_name: str, task_id: str, *, keep_data: bool = False) -> None:
        loc = self.locate(task_name, task_id)
        had_data = keep_data and os.path.isdir(f"{loc}/{DATA}")
        self._remove(loc)
        if had_data:  # a path to it that code holds stays a folder, as in taskproc 0.25
            make_dirs(f"{loc}/{DATA}")

    def clear_task_name(self, task_name: str) -> None:
        self._remove(os.path.join(self._root, task_name))

    def clear_all(self) -> None:
        if not os.path.isdir(self._root):
            return
        entries = [e for e in os.listdir(self._root) if e != MARKER_DIR]
        if entries and not self.is_cache():
            raise CacheError(
                f"{self._root!r} is not a taskproc cache (no {MARKER_DIR}/cache.json); "
                "refusing to clear it - pass the folder your tasks were cached in"
            )
        for entry in entries:
            self._remove(os.path.join(self._root, entry))

    # -- runners ---------------------------------------------------------------------

    def _beat_file(self, runner: str) -> str:
        return os.path.join(self._meta, "runners", f"{runner}.json")

    def write_beat(self, runner: str, payload: str) -> None:
        write_atomic(self._beat_file(runner), payload.encode())

    def read_beat(self, runner: str) -> str:
        try:
            return read_file(self._beat_file(runner)).decode("utf-8", "replace")
        except (FileNotFoundError, NotADirectoryError):
            return ""

    def end_beat(self, runner: str) -> None:
        _unlink(self._beat_file(runner))


def _owner(loc: str) -> str:
    """The key (``name/id``) of the task whose location is `loc`: its result must be its own."""
    _, task_name, _, task_id = loc.rsplit("/", 3)  # <root>/<task_name>/results/<task_id>
    return f"{task_name}/{task_id}"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _upstream_keys(folder: str) -> tuple[str, ...] | None:
    """Keys of the upstream tasks from the ``deps/`` links; None if they cannot be told."""
    deps = os.path.join(folder, "deps")
    links = list_folder(deps)
    if not links:
        # No deps/ folder: no upstream tasks. An empty one: a file system without symlinks.
        return () if not os.path.lexists(deps) else None
    keys = set()
    for entry in links.values():
        try:
            target = os.readlink(entry.path)
        except OSError:
            return None
        parts = target.split("/")
        if len(parts) < 3 or parts[-2] != "results":
            return None
        keys.add(f"{parts[-3]}/{parts[-1]}")
    return tuple(sorted(keys))
