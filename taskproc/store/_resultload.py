"""Loading a result file: checksums verified as the pickled value streams into the unpickler.

Small files are read whole and inflated at once. In a large one, stored (incompressible)
chunks are read straight from the file into the unpickler's buffer with their CRC32 summed on a
thread of its own, and deflate chunks are inflated ahead on two threads. See `_resultfile.py`
for the format.
"""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from collections import deque
from typing import TYPE_CHECKING, Any

from taskproc.errors import CorruptResultError
from taskproc.store._contract import ResultReplaced
from taskproc.store._resultfile import (
    _CHUNK,
    _DEFLATE,
    _SMALL_FILE,
    _bad,
    _first_member,
    _Member,
    _parse_member,
    _result_start,
    unreadable,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor


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
            from concurrent.futures import ThreadPoolExecutor  # large results only

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
            from concurrent.futures import ThreadPoolExecutor  # large results only

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


def load_result(path: str, task: str = "", owner: str = "", stamp: str | None = None) -> Any:
    """Load the result at `path`, checking its checksums.

    Raises FileNotFoundError if there is none, and CorruptResultError if the file format says
    it is damaged (bad gzip, checksums, truncation) or if it is not a result of the task
    `owner` (``name/id``), when given; `ResultReplaced` if `stamp` is given and the result's
    record has another (its header is read first). An exception raised while unpickling a
    well-formed file (a module missing here, a class whose ``__reduce__`` fails, memory) is
    not damage: it is raised as it is, with a note naming the result, and the file stays.
    """
    who = f"{task}: " if task else ""
    try:
        raw = open(path, "rb", buffering=0)  # closed by the with below
    except PermissionError:
        raise unreadable(path) from None
    with raw:
        size = os.fstat(raw.fileno()).st_size
        head = raw.read(min(size, 1024))
        try:
            if b"\0" not in head[_result_start(head, path) + 21 :]:
                head += raw.read(1 << 16)
            first, record, _ = _first_member(head, path, owner)
            if stamp is not None and record.stamp != stamp:
                raise ResultReplaced(path, record)
            if size <= _SMALL_FILE:
                data = _inflate_all(head + raw.readall(), first, path)  # checksums verified
                try:
                    return pickle.loads(data)
                except Exception as exc:
                    raise _unloadable(exc, who, path) from None
            reader = _MemberReader(raw, size, first, path)
            try:
                try:
                    value = pickle.load(reader)
                except CorruptResultError:
                    raise
                except Exception as exc:
                    # Damage not yet reached by the checksums would also make unpickling fail:
                    # only a file whose every checksum holds makes this the unpickler's error.
                    reader.finish()
                    raise _unloadable(exc, who, path) from None
                reader.finish()
            finally:
                reader.close()
            return value
        except CorruptResultError as exc:
            raise CorruptResultError(f"{who}{exc}", path) from None


def _unloadable(exc: Exception, who: str, path: str) -> Exception:
    """`exc`, raised while unpickling the well-formed result at `path`, with a note."""
    if hasattr(exc, "add_note"):
        exc.add_note(f"{who}while loading the result {path} (the file is intact; it is kept)")
    return exc
