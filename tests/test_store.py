"""Claims, liveness and clearing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskproc.errors import CacheError
from taskproc.store._local import Claim, Liveness, Store, new_runner


def test_claim_is_exclusive(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    a, b = new_runner(), new_runner()
    assert store.try_claim(str(tmp_path), a) is None
    assert store.try_claim(str(tmp_path), b) == a
    store.release(str(tmp_path), b)  # not b's: stays
    assert store.read_claim(str(tmp_path)) == a
    store.release(str(tmp_path), a)
    assert store.try_claim(str(tmp_path), b) is None


def test_dead_pid_on_same_host_is_dead(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    me = new_runner()
    dead = Claim("r1", me.host, proc.pid)
    alive = Claim("r2", me.host, os.getpid())
    live = Liveness(store, me, stale_after=60)
    assert live.is_dead(dead)
    assert not live.is_dead(alive)


def test_other_host_dies_when_its_beat_stops(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.ensure()
    me = new_runner()
    other = Claim("far", "elsewhere", 12345)
    beat = Path(store.runner_file("far"))
    beat.write_text("1")
    live = Liveness(store, me, stale_after=0.2)
    assert not live.is_dead(other)
    time.sleep(0.1)
    beat.write_text("2")  # it beats: alive
    assert not live.is_dead(other)
    time.sleep(0.3)
    assert live.is_dead(other)  # no beat for longer than stale_after


@pytest.mark.parametrize("form", ["member", "json"])
def test_break_claim_only_breaks_the_dead_one(tmp_path: Path, form: str) -> None:
    """Claims as this version writes them (a gzip member, maybe followed by part of a result)
    and as older ones did (plain JSON)."""

    def claim_bytes(claim: Claim) -> bytes:
        if form == "json":
            return claim.to_json().encode()
        return claim.text + b"part of a result being written"

    store = Store(str(tmp_path))
    dead, new, me = Claim("d", "h", 1), Claim("n", "h", 2), Claim("m", "h", 3)
    Path(tmp_path, "claim").write_bytes(claim_bytes(new))
    assert store.read_claim(str(tmp_path)) == new
    assert not store.break_claim(str(tmp_path), dead, me)  # a different claim is in place
    assert store.read_claim(str(tmp_path)) == new
    Path(tmp_path, "claim").write_bytes(claim_bytes(dead))
    assert store.break_claim(str(tmp_path), dead, me)
    assert store.read_claim(str(tmp_path)) is None


def test_clear_all_refuses_a_folder_that_is_not_a_cache(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(CacheError, match="not a taskproc cache"):
        Store(str(tmp_path)).clear_all()
    assert (tmp_path / "precious.txt").exists()


def test_clear_all_empties_a_cache(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.ensure()
    (tmp_path / "mod.T" / "results" / "x").mkdir(parents=True)
    store.clear_all()
    assert [p.name for p in tmp_path.iterdir()] == [".taskproc"]
