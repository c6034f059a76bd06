"""The result file: standard gzip, whose first header carries the task's freshness record.

The file is a series of gzip members (RFC 1952), one per 1 MiB of pickled data, as BGZF does::

    member 1:  1f 8b 08 FLG=FEXTRA|FCOMMENT|FHCRC  MTIME=0  XFL  OS
               XLEN, subfield "TP": compressed size, mode (0 stored, 1 deflate)
               "taskproc " + record [+ newline + run facts as JSON] + NUL
               CRC16 of the header                       so a garbled record is detected
               raw deflate data of the member's chunk
               CRC32, ISIZE of the chunk                  so garbled or cut data is detected
    member 2…: the same without the comment and header CRC

One file holds both the result and the record that says what it was computed from, so a
single rename commits both, and checking freshness reads only the first few hundred bytes.

A file written by a runner that claimed its task begins with one more member, the claim: an
empty member whose header comment names the runner ("taskproc-claim {json}"). The claim file
is created with O_EXCL, the result is written after the claim member, and renaming the file
to ``result.pkl.gz`` commits the result and releases the claim at once: a task costs one file
fewer, and no file is deleted (on ext4 without a journal, every recently deleted inode slows
down the next file creations).
`gzip -t`, `zcat` and ``cloudpickle.load(gzip.open(path))`` read it as usual.

A chunk that does not compress (a 64 KiB probe at level 1 saves under 3%) is stored, so
incompressible data is saved at copy speed even at level 9, and is loaded by reading it straight
from the file into the unpickler's buffer. The pickler streams into the writer, so the pickled
bytes are never held whole in memory.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pickle
import struct
import sys
import zlib
from typing import Any, NamedTuple

from taskproc.errors import CacheError, CorruptResultError
from taskproc.store._contract import ClaimTaken, Record
from taskproc.store._files import EXCL, FILE_MODE, temp_path, write_all

_MAGIC = b"\x1f\x8b\x08"
_FHCRC = 0x02
_FCOMMENT = 0x10
_COMMENT_PREFIX = b"taskproc "
_CLAIM_PREFIX = b"taskproc-claim "
_EMPTY_BODY = b"\x03\x00" + bytes(8)  # an empty final deflate block, CRC32 0, ISIZE 0
_CHUNK = 1 << 20
_PROBE = 1 << 16
_ONE_CALL = 1 << 16  # chunks this small are deflated in one call (see `_deflate`)
_SMALL_FILE = 8 << 20
_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None)})


class StampMaker:
    """Unique stamps without a system call each: a random prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(5).hex()
        self._count = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._count):x}"


_FEXTRA = 0x04
_FIRST_FLAGS = _FEXTRA | _FCOMMENT | _FHCRC
_EXTRA_ID = b"TP"
_STORED, _DEFLATE = 0, 1


def _member_header(bsize: int, mode: int, comment: bytes | None) -> bytes:
    """A member's header; the first member's carries `comment` and a header CRC."""
    flags = _FEXTRA | (_FCOMMENT | _FHCRC if comment is not None else 0)
    extra = _EXTRA_ID + struct.pack("<HIB", 5, bsize, mode)
    head = _MAGIC + bytes([flags]) + b"\0\0\0\0\0\xff" + struct.pack("<H", len(extra)) + extra
    if comment is None:
        return head
    head += _COMMENT_PREFIX + comment + b"\0"
    return head + struct.pack("<H", zlib.crc32(head) & 0xFFFF)


_CLAIM_FLAGS = _FCOMMENT | _FHCRC
_CLAIM_FLAG_BYTE = bytes([_CLAIM_FLAGS])


def claim_member(text: bytes) -> bytes:
    """The empty gzip member a claim file begins with; its comment is `text`."""
    head = _MAGIC + bytes([_CLAIM_FLAGS]) + b"\0\0\0\0\0\xff" + _CLAIM_PREFIX + text + b"\0"
    return head + struct.pack("<H", zlib.crc32(head) & 0xFFFF) + _EMPTY_BODY


def _claim_end(data: bytes) -> int:
    """The end of the claim member `data` begins with; 0 if none; -1 if it is damaged."""
    if len(data) < 4 or data[3] != _CLAIM_FLAGS or not data.startswith(_MAGIC):
        return 0
    end = data.find(b"\0", 10)
    if end < 0 or not data.startswith(_CLAIM_PREFIX, 10):
        return -1
    stored = int.from_bytes(data[end + 1 : end + 3], "little")
    if zlib.crc32(data[: end + 1]) & 0xFFFF != stored or data[end + 3 : end + 13] != _EMPTY_BODY:
        return -1
    return end + 13


def claim_text(data: bytes) -> bytes | None:
    """The text of the claim member `data` begins with; None if it begins with none."""
    if _claim_end(data) <= 0:
        return None
    return data[10 + len(_CLAIM_PREFIX) : data.find(b"\0", 10)]


def _result_start(head: bytes, path: str) -> int:
    """Where the result's first member starts: after the claim member, if the file has one."""
    end = _claim_end(head)
    if end < 0:
        raise _bad(path, "header checksum mismatch (claim member)")
    return end


def _comment(record: Record, info: str) -> bytes:
    return (record.to_text() + (f"\n{info}" if info else "")).encode("ascii", "backslashreplace")


def _deflate(chunk: Any, level: int) -> bytes:
    """`chunk` as raw deflate data at `level`.

    A small chunk (most results) is deflated in one call, which lets other threads run once
    instead of twice. The bytes are the same; those of a stored chunk (level 0) would not be
    (its deflate blocks split differently), so it keeps the incremental compressor.
    """
    if sys.version_info >= (3, 11) and level > 0 and len(chunk) <= _ONE_CALL:
        return zlib.compress(chunk, level, wbits=-15)
    comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    return comp.compress(chunk) + comp.flush()


class _MemberWriter:
    """A write-only file object that gzips what the pickler writes into the file `fd`, one
    member per chunk. Output is collected up to a chunk's size before it is written, so a
    small result takes a single system call."""

    def __init__(self, fd: int, level: int, comment: bytes) -> None:
        self._fd = fd
        self._level = level
        self._comment: bytes | None = comment
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._pending = 0
        self.written = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if self._buf or n < _CHUNK:
            take = min(n, _CHUNK - len(self._buf))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == _CHUNK:
                self._emit(self._buf)
                self._buf = bytearray()
        while len(view) >= _CHUNK:  # large writes are compressed without a copy
            self._emit(view[:_CHUNK])
            view = view[_CHUNK:]
        if view:
            self._buf += view
        return n

    def _level_for(self, chunk: Any) -> int:
        if self._level == 0 or len(chunk) < 4 * _PROBE:
            return self._level
        probe = chunk[:_PROBE]
        return 0 if len(zlib.compress(probe, 1)) > 0.97 * len(probe) else self._level

    def _emit(self, chunk: Any) -> None:
        level = self._level_for(chunk)
        body = _deflate(chunk, level)
        mode = _STORED if level == 0 else _DEFLATE
        self._put(_member_header(len(body), mode, self._comment))
        self._comment = None
        self._put(body)
        self._put(struct.pack("<II", zlib.crc32(chunk), len(chunk) & 0xFFFFFFFF))

    def _put(self, data: bytes) -> None:
        self._out.append(data)
        self._pending += len(data)
        if self._pending >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        data = b"".join(self._out)
        write_all(self._fd, data)
        self.written += len(data)
        self._out.clear()
        self._pending = 0

    def close(self) -> int:
        """Write the last member; return the file's size."""
        if self._buf or self._comment is not None:
            self._emit(self._buf)
        self._flush()
        return self.written


def write_result(
    path: str,
    value: Any,
    record: Record,
    level: int,
    info: str = "",
    claim: tuple[int, str] | None = None,
) -> int:
    """Pickle `value` into the result file at `path` atomically; return its size in bytes.

    `info` is a line of JSON kept in the header beside the record, for people and tools.
    With `claim` (the open descriptor and the path of our claim file), the result is written
    after the claim member and the claim file is renamed to `path`; ClaimTaken if the file at
    the claim's path is no longer ours (it is left alone).

    Raises whatever pickling raises (the caller names the task); without `claim`, no file is
    left behind (with it, the caller removes the claim file).
    """
    if claim is not None:
        fd, claim_path = claim
        # The file holds only the claim member so far (so its size is our offset), and its
        # inode stays ours: one system call, where a seek and a stat after writing took two.
        ours = os.fstat(fd)
        claim_size = ours.st_size
        try:
            size = claim_size + _write_members(fd, value, record, level, info)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, claim_size)  # keep the claim, give back the space at once
            raise
        _replace_if_ours(ours, claim_path, path)
        return size
    tmp = temp_path(path)
    fd = os.open(tmp, EXCL, FILE_MODE)
    try:
        size = _write_members(fd, value, record, level, info)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    return size


def _write_members(fd: int, value: Any, record: Record, level: int, info: str) -> int:
    """Pickle `value` as result members into `fd`; the number of bytes written."""
    writer = _MemberWriter(fd, level, _comment(record, info))
    if type(value) in _SCALARS:  # the same bytes; cloudpickle's set-up costs more
        pickle.dump(value, writer, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        import cloudpickle  # here: a rerun that writes nothing never imports it

        cloudpickle.dump(value, writer, protocol=pickle.HIGHEST_PROTOCOL)
    return writer.close()


class _Member(NamedTuple):  # not a dataclass: see the records of _contract.py
    """Where a member's deflate data starts in the file, its size and its mode."""

    body: int
    bsize: int
    mode: int

    @property
    def end(self) -> int:
        return self.body + self.bsize + 8


def _bad(path: str, what: str) -> CorruptResultError:
    return CorruptResultError(f"{path}: {what}", path)


# magic, flags, (mtime, xfl, os), xlen, subfield id, subfield length, bsize, mode
_FIXED = struct.Struct("<3sB6xH2sHIB")
_FIXED_SIZE = _FIXED.size  # 21: a record's comment starts here


def _check_header(head: bytes, path: str, first: bool) -> tuple[int, int, int]:
    """(bsize, mode, end of the comment or of the header) of the member header at the start
    of `head`. The first member's header CRC is checked before any of its fields is believed.
    Raises CorruptResultError."""
    if len(head) < _FIXED_SIZE:
        raise _bad(path, "not a taskproc result file (bad gzip header)")
    magic, flags, xlen, xid, _, bsize, mode = _FIXED.unpack_from(head)
    if magic != _MAGIC or flags != (_FIRST_FLAGS if first else _FEXTRA):
        raise _bad(path, "not a taskproc result file (bad gzip header)")
    end = _FIXED_SIZE
    if first:
        end = head.find(b"\0", _FIXED_SIZE)
        if end < 0 or len(head) < end + 3:
            raise _bad(path, "truncated header")
        stored = int.from_bytes(head[end + 1 : end + 3], "little")
        if zlib.crc32(head[: end + 1]) & 0xFFFF != stored:
            raise _bad(path, "header checksum mismatch")
    if xlen != 9 or xid != _EXTRA_ID:
        raise _bad(path, "not a taskproc result file (bad gzip header)")
    if mode not in (_STORED, _DEFLATE):
        raise _bad(path, "bad member header")
    return bsize, mode, end


def _record_in(head: bytes, end: int, path: str) -> tuple[Record, bytes]:
    """The record and the run facts in the first header's comment, which ends at `end`."""
    if not head.startswith(_COMMENT_PREFIX, _FIXED_SIZE):
        raise _bad(path, "no taskproc record in the header")
    text, _, info = head[_FIXED_SIZE + len(_COMMENT_PREFIX) : end].partition(b"\n")
    try:
        return Record.parse(text.decode("ascii")), info
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(path, f"unreadable record ({exc})") from None


def _parse_member(
    head: bytes, offset: int, path: str, *, first: bool
) -> tuple[_Member, Record | None, str]:
    """The member whose header starts `head` (at file `offset`); for the first member also the
    record and the run facts. Raises CorruptResultError."""
    bsize, mode, end = _check_header(head, path, first)
    if not first:
        return _Member(offset + end, bsize, mode), None, ""
    record, info = _record_in(head, end, path)
    return _Member(offset + end + 3, bsize, mode), record, info.decode("ascii", "replace")


def _owned(record: Record, owner: str, path: str) -> Record:
    """`record`, if it is a result of the task `owner` (``name/id``; "": any task)."""
    if owner and not record.belongs_to(owner):
        raise _bad(path, f"it is the result of {record.task}, not of {owner} (a misplaced file)")
    return record


def read_record(path: str, owner: str = "") -> Record | None:
    """The record of the result file at `path`; None if there is no file.

    Reads only the header. Raises CorruptResultError if the header is garbled, or if the
    result is not one of the task `owner` (``name/id``), when given.
    """
    head = _read_head(path)
    if head is None:
        return None
    _, _, end = _check_header(head, path, True)
    return _owned(_record_in(head, end, path)[0], owner, path)


def unreadable(path: str) -> CacheError:
    """A result file this user may not read: one line, with the fix."""
    return CacheError(
        f"{path}: permission denied reading a result; make it readable "
        "(chmod a+r, or run as the user who owns the cache)"
    )


def _read_head(path: str) -> bytes | None:
    """The first bytes of the result in the file at `path`, past a claim member if there is
    one, and enough for its first header; None if there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise unreadable(path) from None
    try:
        head = os.read(fd, 1024)
        if head[3:4] == _CLAIM_FLAG_BYTE:
            head = head[_result_start(head, path) :]
        if b"\0" not in head[21:]:
            head += os.read(fd, 1 << 16)
    except IsADirectoryError:  # Linux opens a folder for reading; reading it fails
        raise CacheError(f"{path} is a folder where taskproc needs a file; remove it") from None
    finally:
        os.close(fd)
    return head


def _first_member(head: bytes, path: str, owner: str = "") -> tuple[_Member, Record, str]:
    """The result's first member, record and run facts; `head` starts at the file's start."""
    start = _result_start(head, path)
    member, record, info = _parse_member(head[start:], start, path, first=True)
    if record is None:  # the first member always has one: this cannot happen
        raise _bad(path, "no taskproc record in the header")
    return member, _owned(record, owner, path), info


def read_header(path: str, owner: str = "") -> tuple[Record, dict[str, Any]] | None:
    """The record and the run's facts (duration, attempts, host, pid, finish time) of the
    result file at `path`; None if there is no file. Raises CorruptResultError (as
    `read_record`)."""
    head = _read_head(path)
    if head is None:
        return None
    _, _, end = _check_header(head, path, True)
    record, info = _record_in(head, end, path)
    _owned(record, owner, path)
    try:
        details = json.loads(info.decode("ascii", "replace")) if info else {}
    except ValueError:
        details = {}
    return record, details if isinstance(details, dict) else {}


def copy_result(src: str, claim: tuple[int, str], path: str) -> int:
    """Copy the result file `src` after the claim member of our claim file (`claim`: its
    open descriptor and path), then rename the claim file to `path`, as `write_result` does;
    the bytes copied. ClaimTaken if the claim file is no longer ours."""
    fd, claim_path = claim
    ours = os.fstat(fd)
    size = 0
    try:
        with open(src, "rb") as f:
            f.seek(_result_start(f.read(1024), src))  # a claim member it begins with stays
            while chunk := f.read(_CHUNK):
                write_all(fd, chunk)
                size += len(chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, ours.st_size)
        raise
    _replace_if_ours(ours, claim_path, path)
    return size


def _replace_if_ours(ours: os.stat_result, claim_path: str, path: str) -> None:
    """Rename our claim file (`ours`: its stat) to `path`, unless another runner took the
    claim meanwhile (the file at `claim_path` is gone or another): then ClaimTaken."""
    try:
        now = os.stat(claim_path)
    except FileNotFoundError:
        raise ClaimTaken(claim_path) from None
    if (now.st_ino, now.st_dev) != (ours.st_ino, ours.st_dev):
        raise ClaimTaken(claim_path)
    os.replace(claim_path, path)


def rewrite_record(
    path: str, expect: Record, record: Record, note: dict[str, Any], claim: tuple[int, str]
) -> bool:
    """Give the result file at `path` the record `record` in place of `expect`: a new first
    header (with `note` added to the run facts), then the file's members byte for byte from
    the first member's data on. Written after the claim member of our claim file (`claim`:
    its open descriptor and path), which is then renamed to `path`, as `write_result` does.

    False if the file is gone or its record is not `expect` (nothing written: the claim is
    still ours). ClaimTaken if our claim file was replaced. Raises CorruptResultError if the
    file is damaged.
    """
    fd, claim_path = claim
    try:
        src = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    claim_size = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        head = os.read(src, 1 << 16)
        member, found, info = _first_member(head, path)
        if found != expect:
            return False
        try:
            facts = json.loads(info) if info else {}
        except ValueError:
            facts = {}
        facts = {**(facts if isinstance(facts, dict) else {}), **note}
        write_all(
            fd, _member_header(member.bsize, member.mode, _comment(record, json.dumps(facts)))
        )
        os.lseek(src, member.body, os.SEEK_SET)
        while chunk := os.read(src, _CHUNK):
            write_all(fd, chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, claim_size)
            os.lseek(fd, claim_size, os.SEEK_SET)
        raise
    finally:
        os.close(src)
    _replace_if_ours(os.fstat(fd), claim_path, path)
    return True
