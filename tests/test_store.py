"""The store contract, checked on every store (the cache folder and the in-memory store), and
what only the folder does: liveness from heartbeats, claims of older versions, clearing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskproc.errors import CacheError
from taskproc.store import (
    Claim,
    ClaimTaken,
    CodeEntry,
    Liveness,
    LocalStore,
    MemoryStore,
    Record,
    RunSummary,
    Store,
    new_runner,
)

RECORD = Record("s1", "code", None, "deps")


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "local":
        yield LocalStore(tmp_path / "cache")
    else:
        yield MemoryStore()


def _claimed(store: Store, loc: str, me: Claim) -> int:
    ticket = store.claim(loc, me)
    assert isinstance(ticket, int), f"expected a ticket, the task is held by {ticket}"
    return ticket


def test_a_new_store_is_empty_until_ensured(store: Store) -> None:
    assert not store.is_cache()
    assert store.task_names() == []
    assert store.task_ids("m.T") == frozenset()
    store.ensure()
    assert store.is_cache()


def test_commit_then_read_and_load(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    assert store.read_record(loc) is None
    with pytest.raises(FileNotFoundError):
        store.load(loc, "m.T(n=1)")
    assert store.make_folder(loc)
    assert not store.make_folder(loc)
    store.start_attempt(loc, '{"n":1}', [("up", "m.U", "u1")], fresh=True, keep_output=False)
    ticket = _claimed(store, loc, Claim("me", "h", 1))
    assert store.commit(loc, {"x": [1, 2]}, RECORD, 9, "", ticket) > 0
    store.close_claim(loc, ticket, remove=False)
    assert store.read_claim(loc) is None  # the commit released the claim
    assert store.read_record(loc) == RECORD
    assert store.load(loc, "m.T(n=1)") == {"x": [1, 2]}
    assert store.read_stamp("m.T", "abc") == "s1"
    assert store.task_names() == ["m.T"]
    assert store.task_ids("m.T") == frozenset({"abc"})
    assert store.read_args(loc) == '{"n":1}'
    (found,) = store.scan(["m.T"], with_size=True)
    assert (found.task_name, found.task_id, found.location) == ("m.T", "abc", loc)
    assert found.record == RECORD and found.upstream == ("m.U/u1",)
    assert found.size is not None and found.size > 0
    store.discard_result(loc)
    assert store.read_record(loc) is None


def _committed(store: Store, value: object = 7, record: Record = RECORD) -> str:
    store.ensure()
    loc = store.locate("m.T", "abc")
    store.make_folder(loc)
    ticket = _claimed(store, loc, new_runner())
    store.commit(loc, value, record, 9, '{"duration": 1.5}', ticket)
    store.close_claim(loc, ticket, remove=False)
    return loc


def test_code_identities_are_kept_once(store: Store) -> None:
    store.ensure()
    entries = (CodeEntry("m.f", "function", "d1", "def f():\n    return 1"),)
    assert store.read_code("abcdef0123456789") is None
    store.write_code("abcdef0123456789", entries)
    store.write_code("abcdef0123456789", (CodeEntry("m.g", "function", "d2", ""),))  # no-op
    assert store.read_code("abcdef0123456789") == entries
    assert store.code_ids() == frozenset({"abcdef0123456789"})
    store.delete_code("abcdef0123456789")
    assert store.read_code("abcdef0123456789") is None and store.code_ids() == frozenset()


def test_rekey_changes_the_record_through_the_claim_and_keeps_the_result(store: Store) -> None:
    loc = _committed(store, {"big": list(range(1000))})
    new = Record("s1", "newcode", None, "deps")
    ticket = _claimed(store, loc, new_runner())
    assert not store.rekey(loc, new, new, ticket)  # the stored record is not `new`: no change
    assert store.read_record(loc) == RECORD and store.read_claim(loc) is not None
    assert store.rekey(loc, RECORD, new, ticket)
    store.close_claim(loc, ticket, remove=False)
    assert store.read_claim(loc) is None  # released by the rekey, as by a commit
    assert store.read_record(loc) == new
    assert store.load(loc, "m.T") == {"big": list(range(1000))}


def test_rekey_through_a_broken_claim_changes_nothing(store: Store) -> None:
    loc = _committed(store)
    us, them = Claim("us", "h", 1), Claim("them", "h", 2)
    ours = _claimed(store, loc, us)
    assert store.break_claim(loc, us, them)
    theirs = _claimed(store, loc, them)
    with pytest.raises(ClaimTaken):
        store.rekey(loc, RECORD, Record("s1", "x", None, "deps"), ours)
    store.close_claim(loc, ours, remove=False)
    assert store.read_record(loc) == RECORD and store.read_claim(loc) == them
    store.close_claim(loc, theirs, remove=True)


def test_delete_unchanged(store: Store) -> None:
    loc = _committed(store)
    me, other = new_runner(), Claim("other", "h", 2)
    assert store.delete_unchanged(loc, me, "another stamp") is None  # changed since seen
    ticket = _claimed(store, loc, other)
    assert store.delete_unchanged(loc, me, "s1") is None  # held
    store.close_claim(loc, ticket, remove=True)
    assert store.read_claim(loc) is None
    freed = store.delete_unchanged(loc, me, "s1")
    assert freed is not None and freed > 0
    assert store.task_ids("m.T") == frozenset() and store.read_record(loc) is None
    assert store.delete_unchanged(loc, me, "s1") is None  # gone already
    store.empty_trash()


def test_claim_is_exclusive(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    store.make_folder(loc)
    a, b = new_runner(), Claim("other", "h", 2)
    ticket = _claimed(store, loc, a)
    assert store.claim(loc, b) == a
    store.release(loc, b)  # not b's: stays
    assert store.read_claim(loc) == a
    store.close_claim(loc, ticket, remove=True)
    assert store.read_claim(loc) is None
    store.close_claim(loc, _claimed(store, loc, b), remove=True)


def test_a_broken_claim_is_not_committed(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    store.make_folder(loc)
    us, them = Claim("us", "h", 1), Claim("them", "h", 2)
    ours = _claimed(store, loc, us)
    assert store.break_claim(loc, us, them)  # they took us for dead
    theirs = _claimed(store, loc, them)
    with pytest.raises(ClaimTaken):
        store.commit(loc, 1, RECORD, 9, "", ours)
    store.close_claim(loc, ours, remove=False)
    assert store.read_claim(loc) == them
    assert store.read_record(loc) is None
    store.close_claim(loc, theirs, remove=True)


def test_break_claim_leaves_a_claim_that_is_not_the_dead_one(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    store.make_folder(loc)
    dead, new, me = Claim("d", "h", 1), Claim("n", "h", 2), Claim("m", "h", 3)
    ticket = _claimed(store, loc, new)
    assert not store.break_claim(loc, dead, me)
    assert store.read_claim(loc) == new
    store.close_claim(loc, ticket, remove=True)


def test_errors_and_clearing(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    store.make_folder(loc)
    assert store.read_error(loc) is None
    store.write_error(loc, "Traceback ...\nValueError: no")
    assert store.read_error(loc) == "Traceback ...\nValueError: no"
    store.start_attempt(loc, "{}", [], fresh=False, keep_output=False)
    assert store.read_error(loc) is None  # a new attempt forgets the last failure
    other = store.locate("m.T", "def")
    store.make_folder(other)
    store.commit(other, 2, RECORD, 0, "", None)
    store.clear_task("m.T", "abc")
    assert store.task_ids("m.T") == frozenset({"def"})
    store.clear_task_name("m.T")
    assert store.task_names() == []


def test_scan_tells_when_results_and_failures_were_recorded(store: Store) -> None:
    """On the store's one clock, so that views can order them (`status`: an old failure is
    one with a result of its task name written after it)."""
    store.ensure()
    failed, done = store.locate("m.T", "abc"), store.locate("m.T", "def")
    for loc in (failed, done):
        store.make_folder(loc)
    store.write_error(failed, "Traceback ...\nValueError: no")
    store.commit(done, 2, RECORD, 0, "", None)
    first, second = store.scan(["m.T"])
    assert first.result_time is None and second.error_time is None
    assert first.error_time is not None and second.result_time is not None
    assert first.error_time <= second.result_time


def test_the_last_run_to_finish_is_kept(store: Store) -> None:
    store.ensure()
    assert store.read_last_run() is None
    first = RunSummary(100.0, 102.5, "h", 1, ran=3, failed=0)
    store.write_last_run(first)
    assert store.read_last_run() == first and first.wall_time == 2.5
    earlier = RunSummary(90.0, 101.0, "h", 2, ran=1, failed=1)  # started first, ended first
    store.write_last_run(earlier)
    assert store.read_last_run() == first
    later = RunSummary(101.0, 103.0, "h", 3, ran=0, failed=0)
    store.write_last_run(later)
    assert store.read_last_run() == later


def test_heartbeats(store: Store) -> None:
    store.ensure()
    assert store.read_beat("r1") == ""
    store.write_beat("r1", '{"beat": 1}')
    assert store.read_beat("r1") == '{"beat": 1}'
    store.end_beat("r1")
    assert store.read_beat("r1") == ""


def test_metadata_is_kept_listed_replaced_and_deleted(store: Store) -> None:
    store.ensure()
    assert store.read_meta("runs/r1.json") is None and store.list_meta("runs") == []
    store.write_meta("runs/r1.json", b"one")
    store.write_meta("runs/r0.json", b"zero")
    store.write_meta("history/2/a.json", b"a")
    store.write_meta("runsx.json", b"not under runs")
    assert store.read_meta("runs/r1.json") == b"one"
    assert store.list_meta("runs") == ["runs/r0.json", "runs/r1.json"]
    assert store.list_meta("runs/") == store.list_meta("runs")
    assert store.list_meta("history") == ["history/2/a.json"]
    store.write_meta("runs/r1.json", b"uno")
    assert store.read_meta("runs/r1.json") == b"uno"
    store.delete_meta("runs/r1.json")
    store.delete_meta("runs/r1.json")  # nothing if missing
    assert store.read_meta("runs/r1.json") is None
    assert store.list_meta("runs") == ["runs/r0.json"]


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../x", "runs/../../x", "runs/./x", "a//b", ".hidden", "a/.tmp", "a b"],
)
def test_metadata_keys_are_checked(store: Store, key: str) -> None:
    for call in (
        lambda: store.write_meta(key, b"x"),
        lambda: store.read_meta(key),
        lambda: store.delete_meta(key),
        lambda: store.list_meta(key),
    ):
        with pytest.raises(ValueError, match="metadata key"):
            call()


def test_metadata_is_written_atomically_and_never_through_a_symlink(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "cache")
    store.ensure()
    store.write_meta("runs/r.json", b"x" * 100)
    meta = tmp_path / "cache" / ".taskproc"
    assert (meta / "runs" / "r.json").read_bytes() == b"x" * 100  # the documented place
    (meta / "runs" / ".r.json.1.2.3.tmp").write_bytes(b"half")  # a writer that died
    assert store.list_meta("runs") == ["runs/r.json"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text("secret")
    (meta / "history").symlink_to(outside)
    (meta / "runs" / "link.json").symlink_to(outside / "secret.json")
    assert store.read_meta("history/secret.json") is None
    assert store.read_meta("runs/link.json") is None
    assert store.list_meta("history") == [] and store.list_meta("runs") == ["runs/r.json"]
    with pytest.raises(OSError):
        store.write_meta("history/new.json", b"x")
    assert sorted(os.listdir(outside)) == ["secret.json"]


# -- the cache folder only ---------------------------------------------------------------------


def test_dead_pid_on_same_host_is_dead(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    me = new_runner()
    dead = Claim("r1", me.host, proc.pid)
    alive = Claim("r2", me.host, os.getpid())
    live = Liveness(store, me, stale_after=60)
    assert live.is_dead(dead)
    assert not live.is_dead(alive)


def test_other_host_dies_when_its_beat_stops(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.ensure()
    me = new_runner()
    other = Claim("far", "elsewhere", 12345)
    store.write_beat("far", "1")
    live = Liveness(store, me, stale_after=0.2)
    assert not live.is_dead(other)
    time.sleep(0.1)
    store.write_beat("far", "2")  # it beats: alive
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

    store = LocalStore(tmp_path)
    loc = str(tmp_path)
    dead, new, me = Claim("d", "h", 1), Claim("n", "h", 2), Claim("m", "h", 3)
    Path(tmp_path, "claim").write_bytes(claim_bytes(new))
    assert store.read_claim(loc) == new
    assert not store.break_claim(loc, dead, me)  # a different claim is in place
    assert store.read_claim(loc) == new
    Path(tmp_path, "claim").write_bytes(claim_bytes(dead))
    assert store.break_claim(loc, dead, me)
    assert store.read_claim(loc) is None


def test_the_layout_is_the_documented_one(tmp_path: Path) -> None:
    """Locations are ``<cache>/<task name>/results/<id>``, results ``result.pkl.gz`` in them,
    upstream links ``deps/<attr>`` relative to the cache (so the folder can be moved)."""
    store = LocalStore(tmp_path)
    loc = store.locate("m.T", "abc")
    assert loc == f"{tmp_path}/m.T/results/abc"
    store.make_folder(loc)
    store.start_attempt(loc, "{}", [("xs.0", "m.U", "u1")], fresh=True, keep_output=False)
    store.commit(loc, 5, RECORD, 9, "", None)
    assert store.result_file(loc) == f"{loc}/result.pkl.gz"
    assert os.readlink(f"{loc}/deps/xs.0") == "../../../../m.U/results/u1"
    assert Path(loc, "args.json").read_text() == "{}\n"
    assert store.data_folder(loc) == Path(loc, "data") and Path(loc, "data").is_dir()


def test_clearing_a_task_can_keep_its_data_folder_empty(tmp_path: Path) -> None:
    """`keep_data` (what `Task.clear_task` asks for) empties ``data/`` and keeps it; without
    it (`taskproc clear`), or when ``data/`` was never made, the whole folder goes."""
    store = LocalStore(tmp_path)
    store.ensure()
    loc = store.locate("m.T", "abc")
    data = store.data_folder(loc)
    (data / "model.bin").write_bytes(b"x")
    store.commit(loc, 5, RECORD, 9, "", None)
    store.clear_task("m.T", "abc", keep_data=True)
    assert os.listdir(loc) == ["data"] and os.listdir(data) == []
    store.clear_task("m.T", "abc")
    assert not os.path.exists(loc)
    store.clear_task("m.T", "abc", keep_data=True)
    assert not os.path.exists(loc)


def test_clear_all_refuses_a_folder_that_is_not_a_cache(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(CacheError, match="not a taskproc cache"):
        LocalStore(tmp_path).clear_all()
    assert (tmp_path / "precious.txt").exists()


def test_clear_all_empties_a_cache(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.ensure()
    (tmp_path / "mod.T" / "results" / "x").mkdir(parents=True)
    store.clear_all()
    assert [p.name for p in tmp_path.iterdir()] == [".taskproc"]


def test_make_empty_creates_replaces_and_never_follows_a_link(tmp_path: Path) -> None:
    """`make_empty` (the output files of a task whose folder is new): one new empty file with
    the cache's mode; a file already there is emptied, a link is replaced, not followed."""
    import stat

    from taskproc.store import FILE_MODE, make_empty

    path = tmp_path / "stdout.txt"
    make_empty(str(path))
    umask = os.umask(0)
    os.umask(umask)
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert stat.S_IMODE(st.st_mode) == FILE_MODE & ~umask
    path.write_text("old output\n")
    make_empty(str(path))
    assert path.read_text() == ""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    path.unlink()
    path.symlink_to(outside)
    make_empty(str(path))
    assert not path.is_symlink() and path.read_text() == ""
    assert outside.read_text() == "precious\n"
