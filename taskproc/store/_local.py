"""`LocalStore`: the cache as a folder tree, browsable with ``tree -l``.

This module alone knows the layout::

    <cache>/
      .taskproc/cache.json               marks the folder as a taskproc cache (format version)
      .taskproc/<key>                    meta entries (`Store.write_meta`), among them:
        runners/<runner>.json            one heartbeat per live runner (_liveness.py)
        last_run.json                    the last run to finish: its wall time (_runs.py)
        code/<digest>.json.gz            what a code identity covers, with sources, for
                                         ``taskproc why`` (_codes.py)
      .taskproc/trash/                   folders being deleted (renamed here first)
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
also on NFS v3 and later); a `_FolderLease` holds it open. The result is written after the
claim member and the file renamed to ``result.pkl.gz``, once the claim file is checked to be
still ours (same inode): committing the result releases the claim, and no file is deleted on
the way. A dead claim is broken by renaming it away, which only one of several breakers can do.

A task is deleted (``clear``, ``gc``) by renaming its folder into ``.taskproc/trash`` first: it
leaves its place whole, in one step, and is then removed at leisure (`ensure` finishes what an
interrupted deletion left there). ``gc`` deletes through the task's lease (`Lease.delete`),
checking that its result is still the one it meant to delete.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from taskproc.errors import CacheError, CorruptResultError
from taskproc.store._claims import claim_bytes, holder_of
from taskproc.store._contract import (
    ClaimTaken,
    Handover,
    Holder,
    Lease,
    PrefixFiles,
    Record,
    ResultReplaced,
    Store,
    StoredTask,
    Unreadable,
    check_key,
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
    temp_path,
    write_all,
    write_atomic,
    write_file,
)
from taskproc.store._resultfile import (
    copy_result,
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
DEPS = "deps"
STDOUT, STDERR = "stdout.txt", "stderr.txt"
OUTPUT = {"stdout": STDOUT, "stderr": STDERR}
DEADLINE = "deadline.txt"
TRASH = "trash"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_DEPTH = "../../../../"  # from <task folder>/deps/<link> up to the cache folder
_CLAIM_TRIES = 5  # a folder deleted under a claim being taken (gc, clear): make it again


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

    def portable(self) -> Store:
        return self  # a folder's path is all another process needs

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
        self._empty_trash()

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

    def _read_folder(self, task_name: str, task_id: str, with_size: bool) -> StoredTask:
        folder = self.locate(task_name, task_id)
        files = list_folder(folder)
        holder = self.read_claim(folder) if CLAIM in files else None
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
            holder=holder,
            claimed_since=mtime(files.get(CLAIM)),
            damage=damage,
            upstream=_upstream_keys(folder) if record is not None else None,
            size=folder_size(folder, files) if with_size else None,
            log=f"{folder}/{STDERR}",
            error_file=f"{folder}/{ERROR}",
            started=ARGS in files,
        )

    # -- one task: reading --------------------------------------------------------------

    def locate(self, task_name: str, task_id: str) -> str:
        return f"{self._root}/{task_name}/results/{task_id}"

    def read_records(self, locs: Sequence[str]) -> list[Record | Unreadable | None]:
        out: list[Record | Unreadable | None] = []
        for loc in locs:
            try:
                out.append(read_record(f"{loc}/{RESULT}", _owner(loc)))
            except CorruptResultError as exc:
                out.append(Unreadable(str(exc), exc.path or loc))
        return out

    def load(self, loc: str, who: str, stamp: str | None = None) -> Any:
        try:
            return load_result(f"{loc}/{RESULT}", task=who, owner=_owner(loc), stamp=stamp)
        except CorruptResultError as exc:
            raise CorruptResultError(str(exc), loc) from exc.__cause__
        except ResultReplaced as exc:
            raise ResultReplaced(loc, exc.record) from None

    def read_args(self, loc: str) -> str | None:
        try:
            return read_file(f"{loc}/{ARGS}", 1 << 24).decode("utf-8").strip()
        except (OSError, ValueError):
            return None

    def read_error(self, loc: str) -> str | None:
        try:
            with open(f"{loc}/{ERROR}", errors="replace") as f:
                return f.read(1 << 20)
        except OSError:
            return None

    def read_output(self, loc: str, stream: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        try:
            # Never through a link planted in the cache: output is served to people.
            fd = os.open(f"{loc}/{OUTPUT[stream]}", os.O_RDONLY | os.O_NOFOLLOW)
            with open(fd, "rb") as f:
                if offset < 0:
                    f.seek(max(0, f.seek(0, os.SEEK_END) + offset))
                else:
                    f.seek(offset)
                return f.read(limit)
        except OSError:
            return b""

    def result_file(self, loc: str) -> str:
        return f"{loc}/{RESULT}"

    def links(self, loc: str) -> list[tuple[str, str, str]] | None:
        """The task's upstream links as its last run made them (``taskproc push``)."""
        return _deps_links(loc)

    # -- capabilities: files of one task ------------------------------------------------------

    def output_files(self, loc: str) -> tuple[str, str]:
        return f"{loc}/{STDOUT}", f"{loc}/{STDERR}"

    def deadline_file(self, loc: str) -> str:
        return f"{loc}/{DEADLINE}"

    def prefix_files(self, loc: str) -> PrefixFiles:
        return PrefixFiles(
            f"{loc}/job.pkl",
            f"{loc}/outcome.pkl",
            f"{loc}/prefix_stdout.txt",
            f"{loc}/prefix_stderr.txt",
        )

    def data_folder(self, loc: str) -> Path:
        path = f"{loc}/{DATA}"
        make_dirs(path)
        return Path(path)

    # -- one task: claims and writing ------------------------------------------------------

    def claim(self, loc: str, me: Holder) -> Lease | Holder:
        """A lease on our new claim file, held open (the result is written after its claim
        member, and the file renamed into place), else the holder.

        A runner that dies between creating and writing the file leaves an empty claim,
        which `Liveness` declares dead once it has stayed unchanged for `stale_after` seconds.
        The task's folder may be deleted (``gc``, ``clear``) between making it and creating
        the claim in it: it is then made again, as a new task's.
        """
        path = f"{loc}/{CLAIM}"
        for _ in range(_CLAIM_TRIES):
            made = ensure_dir(loc)
            try:
                fd = os.open(path, EXCL, FILE_MODE)
            except FileExistsError:
                holder = self.read_claim(loc)
                if holder is not None:
                    return holder
                continue  # released meanwhile: try again
            except FileNotFoundError:
                continue  # the folder was deleted meanwhile: make it again
            try:
                write_all(fd, claim_bytes(me))
            except BaseException:
                os.close(fd)
                _unlink(path)
                raise
            # Another runner may have claimed, run and committed (or failed) the task in the
            # folder we made, between our mkdir and our claim: fresh only if it holds our claim
            # alone, else the caller would skip looking for that result and run the task twice.
            if made:
                try:
                    made = os.listdir(loc) == [CLAIM]
                except OSError:
                    made = False
            return _FolderLease(self, loc, fd, None, me, made)
        raise CacheError(
            f"{loc}: its folder kept vanishing while it was being claimed ({_CLAIM_TRIES} "
            "times); is another program deleting the cache?"
        )

    def resume(self, handover: Handover) -> Lease | None:
        loc = handover.location
        try:
            fd = os.open(f"{loc}/{CLAIM}", os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            ino = os.fstat(fd).st_ino
            held = holder_of(os.read(fd, 4096))
            if str(ino) != handover.token or held != handover.holder:
                os.close(fd)
                return None
            os.lseek(fd, 0, os.SEEK_END)
        except BaseException:
            os.close(fd)
            raise
        return _FolderLease(self, loc, fd, ino, handover.holder, handover.fresh)

    def read_claim(self, loc: str) -> Holder | None:
        try:
            data = read_file(f"{loc}/{CLAIM}", 4096)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            return Holder("", "", 0)  # a damaged cache: an anonymous claim, dead at once
        return holder_of(data)

    def break_claim(self, loc: str, dead: Holder, me: Holder) -> bool:
        path = f"{loc}/{CLAIM}"
        aside = f"{loc}/.claim.broken.{me.runner}.{os.urandom(3).hex()}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True  # somebody else removed it: the task is free again
        except OSError:
            return False  # a damaged claim (a folder) or a read-only cache: not ours to fix
        try:
            moved = holder_of(read_file(aside, 4096))
        except OSError:
            moved = Holder("", "", 0)
        if moved != dead:  # a new claim appeared meanwhile: put it back
            try:
                os.link(aside, path)
            except (FileExistsError, PermissionError):  # PermissionError: a folder
                pass
        if os.path.isdir(aside) and not os.path.islink(aside):
            _rmtree(aside, ignore_errors=True)  # a damaged cache's claim: a folder
        else:
            _unlink(aside)
        if moved == dead:
            remove_temporaries(loc)
        return moved == dead

    def write_error(self, loc: str, text: str) -> None:
        try:
            write_atomic(f"{loc}/{ERROR}", text.encode())
        except OSError:
            pass  # the failure is still reported; only its record on disk is missing

    def discard_result(self, loc: str) -> None:
        try:
            os.unlink(f"{loc}/{RESULT}")
        except OSError:
            pass

    def clear(
        self, task_name: str | None = None, task_id: str | None = None, *, keep_data: bool = False
    ) -> None:
        if task_name is None:
            self._clear_all()
            return
        if task_id is None:
            self._remove(os.path.join(self._root, task_name))
            return
        loc = self.locate(task_name, task_id)
        had_data = keep_data and os.path.isdir(f"{loc}/{DATA}")
        self._remove(loc)
        if had_data:  # a path to it that code holds stays a folder, as in taskproc 0.25
            make_dirs(f"{loc}/{DATA}")

    def _clear_all(self) -> None:
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

    def _remove(self, path: str) -> None:
        """Remove a folder: rename it aside first, so it disappears at once and whole."""
        if not os.path.lexists(path):
            return
        trash = os.path.join(self._meta, TRASH)
        aside = os.path.join(trash, os.urandom(8).hex())
        try:
            if os.path.lexists(trash) and not os.path.isdir(trash) or os.path.islink(trash):
                raise OSError(errno.EXDEV, "the trash is not a folder of ours")
            make_dirs(trash)
            os.rename(path, aside)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOTDIR, errno.EEXIST):
                raise
            aside = path  # no trash to use (another file system, damaged): delete in place
        if os.path.islink(aside):
            os.unlink(aside)
        else:
            _rmtree(aside, ignore_errors=True)

    def _empty_trash(self) -> None:
        """Remove what an interrupted deletion left in the trash (it is out of every task's
        place already, so removing it concurrently with another deleter is harmless)."""
        trash = os.path.join(self._meta, TRASH)
        if os.path.islink(trash):
            return  # not ours: never remove anything through it
        for name in list_folder(trash):
            _rmtree(os.path.join(trash, name), ignore_errors=True)

    # -- meta --------------------------------------------------------------------------------

    def _meta_path(self, key: str) -> str:
        return os.path.join(self._meta, check_key(key))

    def write_meta(self, key: str, data: bytes, *, replace: bool = True) -> None:
        path = self._meta_path(key)
        make_dirs(os.path.dirname(path))
        if replace:
            write_atomic(path, data)
            return
        if os.path.exists(path):
            return
        tmp = temp_path(path)
        try:
            write_file(tmp, data, EXCL)
            os.link(tmp, path)  # fails if it exists: the first writer's stays
        except FileExistsError:
            pass
        finally:
            _unlink(tmp)

    def read_meta(self, key: str) -> bytes | None:
        try:
            # Never through a link planted in the cache: meta entries are served to people.
            return read_file(self._meta_path(key), 1 << 26, follow=False)
        except OSError:
            return None

    def list_meta(self, prefix: str) -> list[str]:
        folder = prefix.rstrip("/")
        path = self._meta_path(folder) if folder else self._meta
        return sorted(
            f"{folder}/{name}" if folder else name
            for name, entry in list_folder(path).items()
            if not name.startswith(".") and entry.is_file(follow_symlinks=False)
        )

    def delete_meta(self, key: str) -> None:
        _unlink(self._meta_path(key))


class _FolderLease:
    """Our claim file, held open (see the module docstring). Not thread-safe: one lease is
    used by one thread at a time."""

    # `fresh` a plain attribute, not a property: it is read once or twice a task.
    __slots__ = ("_store", "_loc", "_fd", "_ino", "_holder", "fresh", "_over")

    def __init__(
        self, store: LocalStore, loc: str, fd: int, ino: int | None, holder: Holder, fresh: bool
    ) -> None:
        self._store = store
        self._loc = loc
        self._fd = fd
        self._ino = ino
        self._holder = holder
        self.fresh = fresh
        self._over = False  # committed, deleted, taken from us, or released

    @property
    def location(self) -> str:
        return self._loc

    def __repr__(self) -> str:
        return f"<lease on {self._loc}>"

    def _close(self) -> None:
        self._over = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _check(self) -> int:
        if self._over:
            raise ClaimTaken(f"{self._loc}: the lease is over")
        return self._fd

    def start(
        self, args_json: str, links: Sequence[tuple[str, str, str]], *, keep_output: bool
    ) -> None:
        loc = self._loc
        if not self.fresh:  # a folder made for this claim has nothing old in it
            # Captured runs truncate stdout/stderr as they open them.
            for name in (ERROR, DEADLINE) if keep_output else (ERROR, DEADLINE, STDOUT, STDERR):
                _unlink(f"{loc}/{name}")
        write_file(f"{loc}/{ARGS}", args_json.encode() + b"\n")
        if links or not self.fresh:
            _link(loc, links, self.fresh)

    def commit(self, value: Any, record: Record, level: int, info: str) -> int:
        fd = self._check()
        try:
            size = write_result(
                f"{self._loc}/{RESULT}", value, record, level, info, (fd, f"{self._loc}/{CLAIM}")
            )
        except ClaimTaken:
            self._close()
            raise
        self._close()
        return size

    def commit_file(self, path: str, record: Record) -> int:
        """Commit the result file at `path` as it is (its first header carries `record`),
        and give the claim back: ``taskproc pull``. As `commit` otherwise."""
        fd = self._check()
        try:
            size = copy_result(path, (fd, f"{self._loc}/{CLAIM}"), f"{self._loc}/{RESULT}")
        except ClaimTaken:
            self._close()
            raise
        self._close()
        return size

    def rekey(self, expect: Record, record: Record) -> bool:
        fd = self._check()
        note = {"accepted": {"code": expect.code_id, "time": round(time.time(), 3)}}
        try:
            done = rewrite_record(
                f"{self._loc}/{RESULT}", expect, record, note, (fd, f"{self._loc}/{CLAIM}")
            )
        except ClaimTaken:
            self._close()
            raise
        if done:
            self._close()
        return done

    def delete(self, stamp: str | None) -> int | None:
        """Check the stamp, rename the folder into the trash, remove it there. The claim keeps
        runners out meanwhile (they wait for it, then find the task gone)."""
        fd = self._check()
        loc = self._loc
        try:
            record = read_record(f"{loc}/{RESULT}", _owner(loc))
        except CorruptResultError:
            if stamp is not None:
                return None
            record = None
        if (record.stamp if record is not None else None) != stamp:
            return None
        size = folder_size(loc) - os.fstat(fd).st_size  # not counting our claim
        self._store._remove(loc)  # the claim file leaves with the folder
        self._close()
        return size

    def hand_over(self) -> Handover:
        self._check()
        return Handover(self._loc, self._holder, str(self._inode()), self.fresh)

    def _inode(self) -> int:
        """Our claim file's inode: learned when first needed (most leases end in a commit,
        which learns it itself: a system call fewer a task)."""
        if self._ino is None:
            self._ino = os.fstat(self._fd).st_ino
        return self._ino

    def release(self) -> None:
        if self._over:
            return
        ino = self._inode()
        self._close()
        path = f"{self._loc}/{CLAIM}"
        try:
            if os.stat(path).st_ino == ino:  # still ours: nobody broke it
                os.unlink(path)
        except OSError:
            pass

    def __enter__(self) -> _FolderLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _rmtree(path: str, ignore_errors: bool) -> None:
    import shutil  # here: a worker process never deletes a folder, and shutil is slow to import

    shutil.rmtree(path, ignore_errors=ignore_errors)


def _owner(loc: str) -> str:
    """The key (``name/id``) of the task whose location is `loc`: its result must be its own."""
    _, task_name, _, task_id = loc.rsplit("/", 3)  # <root>/<task_name>/results/<task_id>
    return f"{task_name}/{task_id}"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass


def _link(loc: str, links: Sequence[tuple[str, str, str]], fresh: bool) -> None:
    """``deps/<attr>``: relative symlinks to the upstream tasks' folders, as this run has
    them: a link of an earlier run that points elsewhere, or names an attribute the task no
    longer has, is replaced or removed (a task that keeps its id may change its upstream
    tasks, e.g. one that globs a folder)."""
    deps = f"{loc}/{DEPS}"
    wanted = {}
    for attr, task_name, task_id in links:
        name = _UNSAFE.sub("_", attr).strip(".")[:120] or "_"
        wanted[name] = f"{_DEPTH}{task_name}/results/{task_id}"
    old = {} if fresh else list_folder(deps)
    if not wanted and not old:
        return
    try:
        if not wanted:  # no upstream tasks now: no deps/ folder (an empty one means no links)
            _rmtree(deps, ignore_errors=True)
            return
        ensure_dir(deps)
        for name in old.keys() - wanted.keys():
            _unlink(f"{deps}/{name}")
        for name, target in wanted.items():
            if name in old:
                try:
                    if os.readlink(f"{deps}/{name}") == target:
                        continue
                except OSError:
                    pass
                _unlink(f"{deps}/{name}")
            try:
                os.symlink(target, f"{deps}/{name}")
            except FileExistsError:
                pass
    except OSError:
        return  # a file system without symlinks: the links are only for browsing


def _deps_links(folder: str) -> list[tuple[str, str, str]] | None:
    """(attribute, task name, task id) of each ``deps/`` link, sorted; None if one cannot be
    read or points elsewhere than a task's folder."""
    out = []
    for name, entry in list_folder(os.path.join(folder, DEPS)).items():
        try:
            parts = os.readlink(entry.path).split("/")
        except OSError:
            return None
        if len(parts) < 3 or parts[-2] != "results":
            return None
        out.append((name, parts[-3], parts[-1]))
    return sorted(out)


def _upstream_keys(folder: str) -> tuple[str, ...] | None:
    """Keys of the upstream tasks from the ``deps/`` links; None if they cannot be told."""
    links = _deps_links(folder)
    if not links:
        # No deps/ folder: no upstream tasks. An empty one: a file system without symlinks.
        return () if links == [] and not os.path.lexists(os.path.join(folder, DEPS)) else None
    return tuple(sorted({f"{name}/{task_id}" for _, name, task_id in links}))
