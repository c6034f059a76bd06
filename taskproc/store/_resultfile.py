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
import secrets
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from taskproc._compact import Compact
from taskproc.errors import CacheError, CorruptResultError
from taskproc.store._files import EXCL, FILE_MODE, temp_path, write_all

_MAGIC = b"\x1f\x8b\x08"
_FHCRC = 0x02
_FCOMMENT = 0x10
_COMMENT_PREFIX = b"taskproc "
_CLAIM_PREFIX = b"taskproc-claim "
_EMPTY_BODY = b"\x03\x00" + bytes(8)  # an empty final deflate block, CRC32 0, ISIZE 0
_CHUNK = 1 << 20
_PROBE = 1 << 16
_SMALL_FILE = 8 << 20
_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None)})


@dataclass(frozen=True, slots=True)
class Record(Compact):
    """What a result was computed from. `stamp` is new for every write of the result."""

    stamp: str
    code: str
    version: str | int | None
    deps: str

    def to_text(self) -> str:
        """``1 <stamp> <code> <deps> <version as JSON>``: quick to parse, still readable."""
        return f"1 {self.stamp} {self.code} {self.deps} {json.dumps(self.version)}"

    @staticmethod
    def parse(text: str) -> Record:
        """The record in `text`; ValueError if it is not one."""
        fmt, stamp, code, deps, version = text.split(" ", 4)
        if fmt != "1":
            raise ValueError(f"unknown record format {fmt!r}")
        value = None if version == "null" else json.loads(version)
        if value is not None and type(value) not in (str, int):
            raise ValueError(f"bad version {version!r}")
        return Record(stamp, code, value, deps)


def new_stamp() -> str:
    """A fresh random stamp: downstream tasks record it to notice an upstream rerun."""
    return secrets.token_hex(8)


class StampMaker:
    """Unique stamps without a system call each: a random prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(5)
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


class ClaimTaken(Exception):
    """Internal: our claim file was replaced (another runner took us for dead and broke our
    claim); the result was not committed."""


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
        comp = zlib.compressobj(level, zlib.DEFLATED, -15)
        body = comp.compress(chunk) + comp.flush()
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
        claim_size = os.lseek(fd, 0, os.SEEK_CUR)
        try:
            size = claim_size + _write_members(fd, value, record, level, info)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, claim_size)  # keep the claim, give back the space at once
            raise
        ours = os.fstat(fd)
        try:
            now = os.stat(claim_path)
        except FileNotFoundError:
            raise ClaimTaken(claim_path) from None
        if (now.st_ino, now.st_dev) != (ours.st_ino, ours.st_dev):
            raise ClaimTaken(claim_path)
        os.replace(claim_path, path)
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


@dataclass(frozen=True, slots=True)
class _Member:
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


def read_record(path: str) -> Record | None:
    """The record of the result file at `path`; None if there is no file.

    Reads only the header. Raises CorruptResultError if the header is garbled.
    """
    head = _read_head(path)
    if head is None:
        return None
    _, _, end = _check_header(head, path, True)
    return _record_in(head, end, path)[0]


def _read_head(path: str) -> bytes | None:
    """The first bytes of the result in the file at `path`, past a claim member if there is
    one, and enough for its first header; None if there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
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


def _first_member(head: bytes, path: str) -> tuple[_Member, Record, str]:
    """The result's first member, record and run facts; `head` starts at the file's start."""
    start = _result_start(head, path)
    member, record, info = _parse_member(head[start:], start, path, first=True)
    if record is None:  # the first member always has one: this cannot happen
        raise _bad(path, "no taskproc record in the header")
    return member, record, info


def read_header(path: str) -> tuple[Record, dict[str, Any]] | None:
    """The record and the run's facts (duration, attempts, host, pid, finish time) of the
    result file at `path`; None if there is no file. Raises CorruptResultError."""
    head = _read_head(path)
    if head is None:
        return None
    _, _, end = _check_header(head, path, True)
    record, info = _record_in(head, end, path)
    try:
        details = json.loads(info.decode("ascii", "replace")) if info else {}
    except ValueError:
        details = {}
    return record, details if isinstance(details, dict) else {}


def _inflate(body: bytes, trailer: bytes, path: str) -> bytes:
    """A member's data, its CRC32 and length checked."""
    if len(trailer) != 8:
        raise _bad(path, "truncated result file")
    inflate = zlib.decompressobj(-15)
    try:
        data = inflate.decompress(body)
    except zlib.error as exc:
        raise _bad(path, f"corrupt data ({exc})") from None
    if not inflate.eof or inflate.unused_data:
        raise _bad(path, "corrupt or truncated data")
    crc, size = struct.unpack("<II", trailer)
    if crc != zlib.crc32(data) or size != len(data) & 0xFFFFFFFF:
        raise _bad(path, "checksum mismatch")
    return data


def _inflate_all(data: bytes, first: _Member, path: str) -> bytes:
    """The pickled bytes of a whole result file held in memory."""
    pieces = []
    member = first
    while True:
        end = member.body + member.bsize
        pieces.append(_inflate(data[member.body : end], data[end : end + 8], path))
        if member.end == len(data):
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if member.end > len(data):
            raise _bad(path, "truncated result file")
        member, _, _ = _parse_member(
            data[member.end : member.end + 64], member.end, path, first=False
        )


class _MemberReader:
    """A read-only file object over the members of a large result file, for the unpickler.

    A deflate member is inflated whole (1 MiB at most); the next deflate members are inflated
    ahead on two threads (zlib releases the GIL), while the caller copies the current one. A
    stored member is streamed: its blocks are read straight from the file into the caller's
    buffer, so a large incompressible result is loaded with one copy, while a thread of its
    own computes the CRC32 of what was read (a third of the time, done serially). Every
    member's CRC32 and length are checked before `readinto` returns.
    """

    AHEAD = 3

    def __init__(self, raw: Any, size: int, first: _Member, path: str) -> None:
        self._raw = raw
        self._size = size
        self._path = path
        self._next: _Member | None = first
        self._buf = b""
        self._pos = 0
        self._stored: _Member | None = None  # the stored member being streamed
        self._left = 0  # bytes left in its current block
        self._final = False  # the current block is its last
        self._crc = 0  # of the stored member being streamed: only CRC jobs touch it
        self._isize = 0
        self._unsummed: list[memoryview] = []  # read into the caller's buffer, not yet summed
        self._summing: list[Future[None]] = []  # CRC jobs, in order, on one thread
        self._crc_pool: ThreadPoolExecutor | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: deque[tuple[int, Future[bytes]]] = deque()  # (body offset, inflation)
        self._last: _Member | None = None  # the last member queued

    def _exact(self, n: int) -> bytes:
        data = self._raw.read(n)
        if len(data) != n:
            raise _bad(self._path, "truncated result file")
        return bytes(data)

    def _advance(self, offset: int) -> None:
        if offset == self._size:
            self._next = None
            return
        if offset > self._size:
            raise _bad(self._path, "truncated result file")
        self._raw.seek(offset)
        self._next, _, _ = _parse_member(self._raw.read(64), offset, self._path, first=False)

    def _block(self) -> None:
        head = self._exact(5)
        length, nlength = struct.unpack_from("<HH", head, 1)
        if (head[0] >> 1) & 3 != 0 or length ^ 0xFFFF != nlength:
            raise _bad(self._path, "corrupt stored block")
        self._left = length
        self._final = bool(head[0] & 1)

    def _open_next(self) -> bool:
        member = self._next
        if member is None:
            return False
        if member.mode == _DEFLATE:
            self._queue(member)
            body_at, inflation = self._ahead.popleft()
            if body_at != member.body:
                raise _bad(self._path, "corrupt member sequence")
            self._buf = inflation.result()
            self._pos = 0
            self._advance(member.end)
            if self._next is not None:
                self._queue(self._next)
        else:
            self._raw.seek(member.body)
            self._stored, self._isize = member, 0  # its CRC starts at 0: see _crc_job
            self._block()
        return True

    def _queue(self, member: _Member) -> None:
        """Have `member` and the deflate members after it inflating, up to AHEAD of them.
        Queuing stops at a stored member: those are streamed when their turn comes."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(2, thread_name_prefix="taskproc-inflate")
        if self._ahead and self._ahead[0][0] == member.body:
            if len(self._ahead) >= self.AHEAD or self._last is None:
                return
            current = self._after(self._last)
        else:
            self._ahead.clear()
            current = member
        while current is not None and current.mode == _DEFLATE and len(self._ahead) < self.AHEAD:
            self._raw.seek(current.body)
            body = self._exact(current.bsize + 8)
            inflation = self._pool.submit(_inflate, body[:-8], body[-8:], self._path)
            self._ahead.append((current.body, inflation))
            self._last = current
            current = self._after(current)

    def _after(self, member: _Member) -> _Member | None:
        if member.end >= self._size:
            return None
        self._raw.seek(member.end)
        return _parse_member(self._raw.read(64), member.end, self._path, first=False)[0]

    def close(self) -> None:
        for pool in (self._pool, self._crc_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _sum(self, check: tuple[int, int] | None = None) -> None:
        """Queue the CRC of the bytes read so far; with `check` (crc, size) from a member's
        trailer, also compare the member's sums when they are done."""
        parts, self._unsummed = self._unsummed, []
        if not parts and check is None:
            return
        if self._crc_pool is None:
            self._crc_pool = ThreadPoolExecutor(1, thread_name_prefix="taskproc-crc")
        self._summing.append(self._crc_pool.submit(self._crc_job, parts, check, self._isize))

    def _crc_job(self, parts: list[memoryview], check: tuple[int, int] | None, size: int) -> None:
        crc = self._crc
        for part in parts:
            crc = zlib.crc32(part, crc)  # releases the GIL: the reads go on meanwhile
        self._crc = crc
        if check is not None:
            self._crc = 0
            if check != (crc, size & 0xFFFFFFFF):
                raise _bad(self._path, "checksum mismatch")

    def _summed(self) -> None:
        """Wait for the CRC jobs: the caller's buffer must not change under them, and a
        mismatch must be raised before its bytes are used."""
        self._sum()
        jobs, self._summing = self._summing, []
        for job in jobs:
            job.result()

    def _close_stored(self) -> None:
        member = self._stored
        if member is None:
            return
        if self._raw.tell() != member.body + member.bsize:
            raise _bad(self._path, "corrupt stored member")
        crc, size = struct.unpack("<II", self._exact(8))
        self._sum((crc, size))
        self._stored = None
        self._advance(member.end)

    def readinto(self, target: Any) -> int:
        try:
            return self._readinto(memoryview(target).cast("B"))
        finally:
            self._summed()

    def _readinto(self, view: memoryview) -> int:
        done = 0
        while done < len(view):
            if self._pos < len(self._buf):
                n = min(len(view) - done, len(self._buf) - self._pos)
                view[done : done + n] = self._buf[self._pos : self._pos + n]
                self._pos += n
                done += n
            elif self._stored is not None:
                if not self._left:
                    if self._final:
                        self._close_stored()
                    else:
                        self._block()
                    continue
                n = min(self._left, len(view) - done)
                part = view[done : done + n]
                got = 0
                while got < n:
                    k = self._raw.readinto(part[got:])
                    if not k:
                        raise _bad(self._path, "truncated result file")
                    got += k
                self._unsummed.append(part)
                self._isize += n
                self._left -= n
                done += n
            elif not self._open_next():
                break
        return done

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            chunks = []
            while chunk := self.read(_CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
        buf = bytearray(n)
        return bytes(buf[: self.readinto(buf)])

    def readline(self) -> bytes:  # only protocol 0 pickles use it: byte by byte is enough
        out = bytearray()
        while not out.endswith(b"\n"):
            byte = self.read(1)
            if not byte:
                break
            out += byte
        return bytes(out)

    def finish(self) -> None:
        """Read to the end, so every checksum is checked and no junk follows."""
        scratch = bytearray(_CHUNK)
        while self.readinto(scratch):
            pass


def load_result(path: str, task: str = "") -> Any:
    """Load the result at `path`, checking its checksums.

    Raises FileNotFoundError if there is none, CorruptResultError if it is truncated, garbled
    or cannot be unpickled.
    """
    who = f"{task}: " if task else ""
    with open(path, "rb", buffering=0) as raw:
        size = os.fstat(raw.fileno()).st_size
        head = raw.read(min(size, 1024))
        try:
            if b"\0" not in head[_result_start(head, path) + 21 :]:
                head += raw.read(1 << 16)
            first, _, _ = _first_member(head, path)
            if size <= _SMALL_FILE:
                return pickle.loads(_inflate_all(head + raw.readall(), first, path))
            reader = _MemberReader(raw, size, first, path)
            try:
                value = pickle.load(reader)
                reader.finish()
            finally:
                reader.close()
            return value
        except CorruptResultError as exc:
            raise CorruptResultError(f"{who}{exc}", path) from None
        except Exception as exc:
            raise CorruptResultError(
                f"{who}{path}: cannot unpickle the result ({type(exc).__name__}: {exc})", path
            ) from exc
