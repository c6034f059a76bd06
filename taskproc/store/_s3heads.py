"""A task's result object in a bucket, as read: a result, a claim, or a claim given back.

The result object (``<task_name>/results/<task_id>``) is one of:

- a **result**: exactly the bytes of a folder cache's ``result.pkl.gz`` (`_resultfile.py`),
  whose first gzip header carries the record and the run's facts, so that its first 4 KiB
  tell whether it is fresh. A result too big for one request is a **pointer**: the same first
  header, with ``blob`` in its facts naming the object that holds the whole result file, and no
  data of its own;
- a **claim** (held): an empty gzip member whose comment names the holder and a nonce, the
  claim of a runner on a task that has no result;
- a **free** claim: the same member saying ``free``, left by a runner that gave its claim back
  without a result (a failure), with the task's arguments and upstream links.

Each is a gzip file (``zcat`` reads a claim as empty), and each body says who wrote it (a nonce
or the record's stamp), so that a conditional write whose answer was lost, sent again and
refused, can tell it won after all.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskproc.errors import CorruptResultError
from taskproc.store._contract import Holder, Record
from taskproc.store._files import write_all
from taskproc.store._resultfile import (
    _CLAIM_FLAGS,
    _DEFLATE,
    _FIRST_FLAGS,
    _MAGIC,
    _SCALARS,
    _comment,
    _first_member,
    _member_header,
    _MemberWriter,
    _parse_member,
    _result_start,
    claim_member,
    claim_text,
)
from taskproc.store._resultload import _inflate_all
from taskproc.store._workcopy import Known

# A head is read this far: a result's record and facts, and all of a small result.
HEAD_READ = 4096
# A first header longer than this is damage, not a record.
MAX_HEAD = 1 << 16

RESULT, HELD, FREE, DAMAGED = "result", "held", "free", "damaged"
# Facts a result or a free claim carries for the store itself, not for people.
STORE_FACTS = ("args", "deps", "blob", "data")


# -- keys -----------------------------------------------------------------------------------


def head_key(task_name: str, task_id: str) -> str:
    return f"{task_name}/results/{task_id}"


def claim_key(task_name: str, task_id: str) -> str:
    return f"{task_name}/claims/{task_id}"


def side_key(task_name: str, task_id: str, name: str = "") -> str:
    return f"{task_name}/tasks/{task_id}" + (f"/{name}" if name else "")


def blob_key(task_name: str, task_id: str, name: str = "") -> str:
    return f"{task_name}/blobs/{task_id}" + (f"/{name}" if name else "")


def data_key(task_name: str, task_id: str, stamp: str) -> str:
    return side_key(task_name, task_id, f"data/{stamp}.tar")


@dataclass(frozen=True, slots=True)
class Head:
    """One version of a task's result object: its ETag, size and kind, with the record and
    facts of a result, the holder and nonce of a claim, why it cannot be read when damaged,
    and the bytes read (the object's start; all of it when `whole`)."""

    etag: str
    size: int
    kind: str
    record: Record | None = None
    facts_text: str = ""
    holder: Holder | None = None
    nonce: str = ""
    damage: str = ""
    data: bytes = b""
    modified: float = 0.0

    @property
    def whole(self) -> bool:
        return len(self.data) >= self.size

    def facts(self) -> dict[str, Any]:
        """The run's facts of a result, or the body of a claim (JSON)."""
        try:
            found = json.loads(self.facts_text) if self.facts_text else {}
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def people_facts(self) -> dict[str, Any]:
        """The facts of a result as views show them (duration, host, ...)."""
        return {k: v for k, v in self.facts().items() if k not in STORE_FACTS}

    def known(self) -> Known:
        """This head as the working copy's index keeps it."""
        record = self.record.to_text() if self.record is not None else ""
        return Known(self.etag, self.kind, record, self.facts_text)


def from_known(known: Known, size: int = 0, modified: float = 0.0) -> Head:
    """A head as the index knew it (`RESULT`, `HELD` or `FREE`)."""
    record = Record.parse(known.record) if known.kind == RESULT else None
    holder = None
    nonce = ""
    if known.kind == HELD:
        holder = Holder.parse(known.facts)
        nonce = _nonce(known.facts)
    return Head(known.etag, size, known.kind, record, known.facts, holder, nonce, "", b"", modified)


def _nonce(text: str) -> str:
    try:
        found = json.loads(text).get("nonce", "")
    except (ValueError, AttributeError):
        return ""
    return found if isinstance(found, str) else ""


def claim_body(holder: Holder, nonce: str) -> bytes:
    """The object of a claim held by `holder` (`nonce` tells our claim from another's)."""
    data = json.loads(holder.to_json())
    data["nonce"] = nonce
    return claim_member(json.dumps(data).encode())


def free_body(args: str | None, deps: list[str] | None) -> bytes:
    """The object of a claim given back without a result: the task's arguments and upstream
    links, when known."""
    data: dict[str, Any] = {"free": True}
    if args is not None:
        data["args"] = args
    if deps is not None:
        data["deps"] = deps
    return claim_member(json.dumps(data).encode())


def needs_more(data: bytes, size: int) -> bool:
    """Whether the start `data` of an object of `size` bytes ends inside a result's first
    header (a long comment): read more before parsing."""
    if len(data) >= size or len(data) >= MAX_HEAD or data[3:4] != bytes([_FIRST_FLAGS]):
        return False
    return b"\0" not in data[21:] or len(data) < data.find(b"\0", 21) + 3


def parse_head(
    data: bytes, etag: str, size: int, owner: str, where: str, modified: float = 0.0
) -> Head:
    """The head whose object starts with `data` (`owner`: the task's key ``name/id``, which a
    result must be of; `where`: the object, for messages)."""
    if data[:3] != _MAGIC or len(data) < 4:
        return Head(etag, size, DAMAGED, damage=f"{where}: not a taskproc result", data=data)
    if data[3] == _CLAIM_FLAGS:
        text = claim_text(data)
        if text is None:
            return Head(etag, size, DAMAGED, damage=f"{where}: a damaged claim", data=data)
        body = text.decode("utf-8", "replace")
        try:
            fields = json.loads(body)
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            return Head(etag, size, DAMAGED, damage=f"{where}: a damaged claim", data=data)
        if fields.get("free") is True:
            return Head(etag, size, FREE, facts_text=body, data=data, modified=modified)
        holder = Holder.parse(body)
        return Head(etag, size, HELD, None, body, holder, _nonce(body), "", data, modified)
    try:
        _, record, info = _first_member(data, where, owner)
    except CorruptResultError as exc:
        return Head(etag, size, DAMAGED, damage=str(exc), data=data, modified=modified)
    return Head(etag, size, RESULT, record, info, data=data, modified=modified)


def pointer_bytes(record: Record, info: str) -> bytes:
    """A result file with `record` and the facts `info` (naming the blob) and no data."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15)
    body = deflate.compress(b"") + deflate.flush()
    head = _member_header(len(body), _DEFLATE, _comment(record, info))
    return head + body + struct.pack("<II", 0, 0)


def rekeyed(data: bytes, where: str, record: Record, facts: dict[str, Any]) -> bytes:
    """The start of a result file `data` with a new first header (`record`, `facts`) and
    its members byte for byte from the first member's data on."""
    member, _, _ = _first_member(data, where)
    header = _member_header(member.bsize, member.mode, _comment(record, json.dumps(facts)))
    return header + data[member.body :]


class _SpillingWriter(_MemberWriter):
    """The result file's members, in memory until they pass `limit` bytes, then in a file
    (`spill` opens it): a small result is sent from memory, a big one never held whole."""

    def __init__(
        self, level: int, comment: bytes, limit: int, spill: Callable[[], tuple[str, int]]
    ) -> None:
        super().__init__(-1, level, comment)
        self.buffer = bytearray()
        self.path = ""
        self._limit = limit
        self._spill = spill

    def _flush(self) -> None:
        data = b"".join(self._out)
        if self._fd < 0 and len(self.buffer) + len(data) > self._limit:
            self.path, self._fd = self._spill()
            write_all(self._fd, self.buffer)
            self.buffer = bytearray()
        if self._fd >= 0:
            write_all(self._fd, data)
        else:
            self.buffer += data
        self.written += len(data)
        self._out.clear()
        self._pending = 0

    def close_file(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def write_result(
    value: Any,
    record: Record,
    level: int,
    info: str,
    limit: int,
    spill: Callable[[], tuple[str, int]],
) -> tuple[int, bytes | None, str]:
    """Pickle `value` as a result file with `record` and the facts `info`: its size, and its
    bytes when they are `limit` bytes or fewer, else the file `spill` made that holds them.
    Raises whatever pickling raises (the file, if any, is removed)."""
    writer = _SpillingWriter(level, _comment(record, info), limit, spill)
    try:
        if type(value) in _SCALARS:  # the same bytes; cloudpickle's set-up costs more
            pickle.dump(value, writer, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            import cloudpickle

            cloudpickle.dump(value, writer, protocol=pickle.HIGHEST_PROTOCOL)
        size = writer.close()
    except BaseException:
        writer.close_file()
        if writer.path:
            with contextlib.suppress(OSError):
                os.unlink(writer.path)
        raise
    writer.close_file()
    if writer.path:
        return size, None, writer.path
    return size, bytes(writer.buffer), ""


def load_bytes(data: bytes, task: str, owner: str, where: str) -> Any:
    """Load a whole result file held in memory (a small result: its head is all of it), its
    checksums verified, as `_resultload.load_result` loads a file."""
    first, _, _ = _first_member(data, where, owner)
    pickled = _inflate_all(data, first, where)
    try:
        return pickle.loads(pickled)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"{task}: while loading the result {where} (it is intact; it is kept)")
        raise


def parse_facts(data: bytes, where: str) -> dict[str, Any]:
    """The run facts in the first header of a result file that starts with `data`."""
    _, _, info = _first_member(data, where)
    try:
        facts = json.loads(info) if info else {}
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}


def result_data_sums(path: str) -> tuple[tuple[int, int], ...]:
    """The CRC32 and length of each data chunk of the result file at `path`, from the gzip
    trailers alone: two results with the same sums hold the same pickled bytes, whatever
    their records, facts or compression (``taskproc push`` and ``pull`` converge on them).
    Raises CorruptResultError if the file is damaged."""
    sums = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(MAX_HEAD)
        member, _, _ = _first_member(head, path)
        while True:
            f.seek(member.body + member.bsize)
            trailer = f.read(8)
            if len(trailer) != 8:
                raise CorruptResultError(f"{path}: truncated result file", path)
            sums.append(struct.unpack("<II", trailer))
            if member.end >= size:
                return tuple(sums)
            f.seek(member.end)
            member = _parse_member(f.read(64), member.end, path, first=False)[0]


def rekey_file(src: str, dst: int, record: Record) -> None:
    """Write the result file `src` to the descriptor `dst` with `record` in its first header
    (its facts kept) and its members byte for byte: a blob whose pointer was re-keyed."""
    with open(src, "rb") as f:
        head = f.read(MAX_HEAD)
        member, _, info = _first_member(head, src)
        write_all(dst, _member_header(member.bsize, member.mode, _comment(record, info)))
        f.seek(member.body)
        while chunk := f.read(1 << 20):
            write_all(dst, chunk)


def result_start(data: bytes, where: str) -> int:
    """Where the result begins in a file that starts with `data`: past a claim member."""
    return _result_start(data, where)
