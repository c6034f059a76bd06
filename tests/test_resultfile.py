"""The result file: standard gzip, header record, checksums, streaming, incompressible data."""

from __future__ import annotations

import gzip
import os
import subprocess
import threading
from pathlib import Path

import cloudpickle
import pytest

from taskproc.errors import CorruptResultError
from taskproc.store import ClaimTaken, Holder, LocalStore, Record
from taskproc.store._resultfile import (
    StampMaker,
    _deflate,
    read_header,
    read_record,
    write_result,
)
from taskproc.store._resultload import load_result

RECORD = Record(StampMaker().new(), "code", "v1", "deps")
VALUES = [
    None,
    1,
    "text",
    {"a": [1, 2.5, (3,)]},
    os.urandom(3 << 20),
    b"z" * (9 << 20),
    list(range(200_000)),
    # over the 8 MiB read at once: streamed, with stored and deflate members interleaved
    [os.urandom(3 << 20), b"ab" * (3 << 20), os.urandom(2 << 20), b"q" * (4 << 20)],
]


@pytest.mark.parametrize("level", [0, 1, 9])
@pytest.mark.parametrize("index", range(len(VALUES)))
def test_round_trip_and_plain_gzip(tmp_path: Path, level: int, index: int) -> None:
    value = VALUES[index]
    path = tmp_path / "result.pkl.gz"
    size = write_result(str(path), value, RECORD, level)
    assert size == path.stat().st_size
    assert load_result(str(path)) == value
    assert read_record(str(path)) == RECORD
    with gzip.open(path) as f:  # readable by hand
        assert cloudpickle.load(f) == value
    assert subprocess.run(["gzip", "-t", str(path)]).returncode == 0


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("size", [0, 7, 4096, 65535, 1 << 16, (1 << 16) + 1, 1 << 20])
def test_members_are_deflated_to_the_same_bytes(size: int, level: int) -> None:
    """Small members are deflated in one call (one release of the interpreter lock instead of
    two): the bytes are those of the incremental compressor, so files do not change."""
    import zlib

    for data in (os.urandom(size), b"abcdefgh" * (size // 8)):
        comp = zlib.compressobj(level, zlib.DEFLATED, -15)
        assert _deflate(memoryview(data), level) == comp.compress(data) + comp.flush()


def test_incompressible_chunks_are_stored(tmp_path: Path) -> None:
    data = os.urandom(8 << 20)
    path = tmp_path / "r.pkl.gz"
    write_result(str(path), data, RECORD, 9)
    assert path.stat().st_size < len(data) * 1.01  # stored blocks: almost no overhead
    compressible = b"abc" * (3 << 20)
    write_result(str(path), compressible, RECORD, 9)
    assert path.stat().st_size < len(compressible) / 50


def test_no_temporary_files_left(tmp_path: Path) -> None:
    write_result(str(tmp_path / "r.pkl.gz"), 1, RECORD, 9)
    with pytest.raises(TypeError):
        write_result(str(tmp_path / "s.pkl.gz"), __import__("threading").Lock(), RECORD, 9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pkl.gz"]


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("damage", ["truncate", "flip_body", "flip_trailer", "append"])
def test_damage_is_detected(tmp_path: Path, damage: str, big: bool) -> None:
    path = tmp_path / "r.pkl.gz"
    value = os.urandom(10 << 20) + b"x" * (1 << 20) if big else {"k": list(range(1000))}
    write_result(str(path), value, RECORD, 1)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "flip_body":
        data[len(data) // 2] ^= 0x01
    elif damage == "flip_trailer":
        data[-6] ^= 0x01
    else:
        data += b"junk"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptResultError):
        load_result(str(path), task="mod.T()")


def test_garbled_header_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "r.pkl.gz"
    write_result(str(path), 1, RECORD, 9)
    data = bytearray(path.read_bytes())
    data[20] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptResultError, match="header checksum"):
        read_record(str(path))


def test_missing_file(tmp_path: Path) -> None:
    assert read_record(str(tmp_path / "nope")) is None
    with pytest.raises(FileNotFoundError):
        load_result(str(tmp_path / "nope"))


@pytest.mark.parametrize("where", [0.1, 0.5, 0.97])
def test_a_flipped_bit_in_streamed_stored_data_is_caught(tmp_path: Path, where: float) -> None:
    """Stored members are summed on a thread of their own while reading goes on: a bad sum
    must still fail the load, wherever the member lies in the unpickler's reads."""
    path = tmp_path / "r.pkl.gz"
    write_result(str(path), os.urandom(12 << 20), RECORD, 9)
    assert load_result(str(path)) is not None
    data = bytearray(path.read_bytes())
    at = int(len(data) * where)
    member = data.rfind(b"\x1f\x8b\x08", 0, at + 64)  # keep off a member's header and trailer
    if member >= 0 and at < member + 64:
        at = member + 64
    data[at] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptResultError, match="checksum mismatch|corrupt stored"):
        load_result(str(path))


@pytest.mark.parametrize("index", [1, 3, 7])
def test_a_result_written_into_its_claim_file(tmp_path: Path, index: int) -> None:
    """A claimed run writes its result after the claim member and renames the claim file
    into place: still plain gzip, the same record and value, and no claim left."""
    value = VALUES[index]
    me = Holder("runner", "host", 123)
    store = LocalStore(tmp_path)
    lease = store.claim(str(tmp_path), me)
    assert not isinstance(lease, Holder)
    assert store.read_claim(str(tmp_path)) == me
    path = tmp_path / "result.pkl.gz"
    with lease:
        size = lease.commit(value, RECORD, 9, "")
    assert size == path.stat().st_size and not (tmp_path / "claim").exists()
    assert read_record(str(path)) == RECORD
    assert read_header(str(path)) is not None
    assert load_result(str(path)) == value
    assert subprocess.run(["gzip", "-t", str(path)]).returncode == 0
    with gzip.open(path, "rb") as f:
        assert cloudpickle.load(f) == value
    data = bytearray(path.read_bytes())
    data[15] ^= 0x01  # inside the claim member's comment
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptResultError, match="header checksum"):
        read_record(str(path))


def test_a_failed_write_into_a_claim_file_leaves_the_claim(tmp_path: Path) -> None:
    """A result that cannot be pickled: the claim file is cut back to its claim member (the
    runner still holds the task), nothing is renamed, and the claim reads as before."""
    me = Holder("runner", "host", 123)
    store = LocalStore(tmp_path)
    lease = store.claim(str(tmp_path), me)
    assert not isinstance(lease, Holder)
    claim_size = (tmp_path / "claim").stat().st_size
    with pytest.raises(Exception, match="pickle"):
        lease.commit(threading.Lock(), RECORD, 9, "")  # locks do not pickle
    assert (tmp_path / "claim").stat().st_size == claim_size
    assert store.read_claim(str(tmp_path)) == me
    assert not (tmp_path / "result.pkl.gz").exists()
    lease.release()
    assert store.read_claim(str(tmp_path)) is None


def test_a_broken_claim_is_not_committed(tmp_path: Path) -> None:
    """If another runner broke our claim and claimed the task, our result is not renamed
    over theirs: ClaimTaken, and their claim stays."""
    store = LocalStore(tmp_path)
    ours = store.claim(str(tmp_path), Holder("us", "host", 1))
    assert not isinstance(ours, Holder)
    os.rename(tmp_path / "claim", tmp_path / "aside")  # what break_claim does
    them = Holder("them", "host", 2)
    theirs = store.claim(str(tmp_path), them)
    assert not isinstance(theirs, Holder)
    with ours, pytest.raises(ClaimTaken):
        ours.commit(1, RECORD, 9, "")
    assert store.read_claim(str(tmp_path)) == them
    assert not (tmp_path / "result.pkl.gz").exists()
