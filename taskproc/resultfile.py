"""The result file: a standard gzip file whose header carries the task's freshness record.

Layout (RFC 1952)::

    1f 8b 08 FLG=FCOMMENT|FHCRC  MTIME=0  XFL  OS      fixed 10 bytes
    "taskproc " + record JSON + NUL                    the comment field
    CRC16 of the header                                 so a garbled record is detected
    raw deflate blocks                                  the cloudpickled result
    CRC32, ISIZE                                        so a garbled or cut body is detected

One file holds both the result and the record that says what it was computed from, so a
single rename commits both, and checking freshness reads only the first few hundred bytes.
`gzip -t`, `zcat` and ``cloudpickle.load(gzip.open(path))`` read it as usual.

Large results are compressed in 1 MiB chunks, each by its own deflate stream ended with a
sync flush (valid deflate: later blocks simply do not refer back). A chunk that does not
compress (a 64 KiB probe at level 1 saves under 3%) is stored instead, so incompressible data
is saved at copy speed even at level 9. The pickler streams into the compressor, so the
pickled bytes are never held whole in memory.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import secrets
import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

import cloudpickle

from .errors import CacheError, CorruptResultError
from .files import EXCL, FILE_MODE, temp_path

_MAGIC = b"\x1f\x8b\x08"
_FHCRC = 0x02
_FCOMMENT = 0x10
_COMMENT_PREFIX = b"taskproc "
_CHUNK = 1 << 20
_PROBE = 1 << 16
_SMALL_FILE = 8 << 20


@dataclass(frozen=True, slots=True)
class Record:
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
        value = json.loads(version)
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


def _header(record: Record, info: str = "") -> bytes:
    comment = record.to_text() + (f"\n{info}" if info else "")
    head = (
        _MAGIC
        + bytes([_FCOMMENT | _FHCRC])
        + b"\0\0\0\0\0\xff"
        + _COMMENT_PREFIX
        + comment.encode("ascii", "backslashreplace")
        + b"\0"
    )
    return head + struct.pack("<H", zlib.crc32(head) & 0xFFFF)


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _DeflateWriter:
    """A write-only file object that gzips what the pickler writes into the file `fd`.

    Output is collected until the end or until it exceeds a chunk, so a small result is
    written with a single system call.
    """

    def __init__(self, fd: int, level: int, header: bytes) -> None:
        self._fd = fd
        self._level = level
        self._buf = bytearray()
        self._out: list[bytes] = [header]
        self._pending = len(header)
        self._crc = 0
        self._size = 0
        self.written = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        self._crc = zlib.crc32(view, self._crc)
        self._size += n
        if n >= _CHUNK:
            if self._buf:
                self._emit(bytes(self._buf), final=False)
                self._buf.clear()
            for start in range(0, n, _CHUNK):
                self._emit(view[start : start + _CHUNK], final=False)
        else:
            self._buf += view
            if len(self._buf) >= _CHUNK:
                self._emit(bytes(self._buf), final=False)
                self._buf.clear()
        return n

    def _level_for(self, chunk: Any) -> int:
        if self._level == 0 or len(chunk) < 4 * _PROBE:
            return self._level
        probe = chunk[:_PROBE]
        return 0 if len(zlib.compress(probe, 1)) > 0.97 * len(probe) else self._level

    def _emit(self, chunk: Any, *, final: bool) -> None:
        comp = zlib.compressobj(self._level_for(chunk), zlib.DEFLATED, -15)
        self._put(comp.compress(chunk))
        self._put(comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH))

    def _put(self, data: bytes) -> None:
        self._out.append(data)
        self._pending += len(data)
        if self._pending >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        data = b"".join(self._out)
        _write_all(self._fd, data)
        self.written += len(data)
        self._out.clear()
        self._pending = 0

    def close(self) -> int:
        """Finish the stream; return the file's size."""
        self._emit(bytes(self._buf), final=True)
        self._buf.clear()
        self._put(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self._flush()
        return self.written


def write_result(path: str, value: Any, record: Record, level: int, info: str = "") -> int:
    """Pickle `value` into the result file at `path` atomically; return its size in bytes.

    `info` is a line of JSON kept in the header beside the record, for people and tools.

    Raises whatever pickling raises (the caller names the task); no file is left behind.
    """
    tmp = temp_path(path)
    fd = os.open(tmp, EXCL, FILE_MODE)
    try:
        writer = _DeflateWriter(fd, level, _header(record, info))
        cloudpickle.dump(value, writer, protocol=pickle.HIGHEST_PROTOCOL)
        size = writer.close()
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    return size


def _parse_header(head: bytes, path: str) -> tuple[Record, str, int]:
    """The record, the informational line and the header length, or CorruptResultError."""
    if len(head) < 12 or head[:3] != _MAGIC or head[3] != (_FCOMMENT | _FHCRC):
        raise CorruptResultError(f"{path}: not a taskproc result file (bad gzip header)", path)
    end = head.find(b"\0", 10)
    if end < 0 or len(head) < end + 3:
        raise CorruptResultError(f"{path}: truncated header", path)
    (hcrc,) = struct.unpack_from("<H", head, end + 1)
    if zlib.crc32(head[: end + 1]) & 0xFFFF != hcrc:
        raise CorruptResultError(f"{path}: header checksum mismatch", path)
    comment = head[10:end]
    if not comment.startswith(_COMMENT_PREFIX):
        raise CorruptResultError(f"{path}: no taskproc record in the header", path)
    text, _, info = comment[len(_COMMENT_PREFIX) :].partition(b"\n")
    try:
        record = Record.parse(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptResultError(f"{path}: unreadable record ({exc})", path) from None
    return record, info.decode("ascii", "replace"), end + 3


def read_record(path: str) -> Record | None:
    """The record of the result file at `path`; None if there is no file.

    Reads only the header. Raises CorruptResultError if the header is garbled.
    """
    header = read_header(path)
    return None if header is None else header[0]


def read_header(path: str) -> tuple[Record, dict[str, Any]] | None:
    """The record and the information (duration, attempts, host, pid, finish time) of the
    result file at `path`; None if there is no file. Raises CorruptResultError."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        head = os.read(fd, 1024)
        if b"\0" not in head[10:]:
            head += os.read(fd, 1 << 16)
    except IsADirectoryError:  # Linux opens a folder for reading; reading it fails
        raise CacheError(f"{path} is a folder where taskproc needs a file; remove it") from None
    finally:
        os.close(fd)
    record, info, _ = _parse_header(head, path)
    try:
        details = json.loads(info) if info else {}
    except ValueError:
        details = {}
    return record, details if isinstance(details, dict) else {}


class _InflateReader:
    """A read-only file object over the deflate body of a result file, checking CRC32."""

    def __init__(self, raw: BinaryIO, path: str) -> None:
        self._raw = raw
        self._path = path
        self._inflate = zlib.decompressobj(-15)
        self._out = bytearray()
        self._pos = 0
        self._crc = 0
        self._size = 0
        self._eof = False

    def _fill(self, want: int) -> None:
        while len(self._out) - self._pos < want and not self._eof:
            chunk = self._raw.read(_CHUNK)
            if not chunk:
                raise CorruptResultError(f"{self._path}: truncated result file", self._path)
            try:
                data = self._inflate.decompress(chunk)
            except zlib.error as exc:
                msg = f"{self._path}: corrupt data ({exc})"
                raise CorruptResultError(msg, self._path) from None
            if self._pos:
                del self._out[: self._pos]
                self._pos = 0
            self._out += data
            self._crc = zlib.crc32(data, self._crc)
            self._size += len(data)
            if self._inflate.eof:
                self._eof = True
                self._check_trailer(self._inflate.unused_data + self._raw.read())

    def _check_trailer(self, trailer: bytes) -> None:
        if len(trailer) != 8:
            raise CorruptResultError(f"{self._path}: bad gzip trailer", self._path)
        crc, size = struct.unpack("<II", trailer)
        if crc != self._crc or size != self._size & 0xFFFFFFFF:
            raise CorruptResultError(f"{self._path}: checksum mismatch", self._path)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            self._fill(1 << 62)
            n = len(self._out) - self._pos
        self._fill(n)
        out = bytes(self._out[self._pos : self._pos + n])
        self._pos += len(out)
        return out

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        done = 0
        while done < len(view):
            if self._pos >= len(self._out):
                if self._eof:
                    break
                self._fill(1)
                continue
            n = min(len(view) - done, len(self._out) - self._pos)
            view[done : done + n] = self._out[self._pos : self._pos + n]
            self._pos += n
            done += n
        return done

    def readline(self) -> bytes:
        while True:
            idx = self._out.find(b"\n", self._pos)
            if idx >= 0 or self._eof:
                end = idx + 1 if idx >= 0 else len(self._out)
                out = bytes(self._out[self._pos : end])
                self._pos = end
                return out
            self._fill(len(self._out) - self._pos + 1)

    def finish(self) -> None:
        """Read to the end so the CRC is checked."""
        self._fill(1 << 62)


def load_result(path: str, task: str = "") -> Any:
    """Load the result at `path`, checking its checksums.

    Raises FileNotFoundError if there is none, CorruptResultError if it is truncated, garbled
    or cannot be unpickled.
    """
    who = f"{task}: " if task else ""
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        head = raw.read(min(size, 1024))
        if b"\0" not in head[10:]:
            head += raw.read(1 << 16)
        try:
            _, _, body_start = _parse_header(head, path)
            raw.seek(body_start)
            if size <= _SMALL_FILE:
                return _load_small(raw.read(), path)
            reader = _InflateReader(raw, path)
            value = pickle.load(reader)
            reader.finish()
            return value
        except CorruptResultError as exc:
            raise CorruptResultError(f"{who}{exc}", path) from None
        except Exception as exc:
            raise CorruptResultError(
                f"{who}{path}: cannot unpickle the result ({type(exc).__name__}: {exc})", path
            ) from exc


def _load_small(body: bytes, path: str) -> Any:
    inflate = zlib.decompressobj(-15)
    try:
        data = inflate.decompress(body)
    except zlib.error as exc:
        raise CorruptResultError(f"{path}: corrupt data ({exc})", path) from None
    if not inflate.eof:
        raise CorruptResultError(f"{path}: truncated result file", path)
    trailer = inflate.unused_data
    if len(trailer) != 8:
        raise CorruptResultError(f"{path}: bad gzip trailer", path)
    crc, size = struct.unpack("<II", trailer)
    if crc != zlib.crc32(data) or size != len(data) & 0xFFFFFFFF:
        raise CorruptResultError(f"{path}: checksum mismatch", path)
    return pickle.loads(data)
