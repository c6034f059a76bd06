"""The store contract, checked on every store (the cache folder, the in-memory store and, where
an S3 server runs, a bucket):
results and records read in batches, leases, meta entries, capabilities; and what only the
folder does: liveness from heartbeats, claims of older versions, its layout, clearing."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskproc.errors import CacheError, ConfigError, CorruptResultError
from taskproc.store import (
    CAPABILITIES,
    ClaimTaken,
    CodeEntry,
    DeadlineFiles,
    Holder,
    Lease,
    Liveness,
    LocalStore,
    MemoryStore,
    OutputFiles,
    Portable,
    PrefixJobs,
    Record,
    ResultReplaced,
    RunSummary,
    Store,
    TaskFolders,
    Unreadable,
    check_key,
    code_identities,
    delete_code_identity,
    new_runner,
    open_store,
    output_tail,
    read_beat,
    read_code_identity,
    read_last_run,
    read_record,
    require,
    write_code_identity,
    write_last_run,
)
from taskproc.store._claims import claim_bytes

RECORD = Record("s1", "code", None, "deps", "m.T/abc")


@pytest.fixture(params=["local", "memory", pytest.param("bucket", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "local":
        yield LocalStore(tmp_path / "cache")
    elif request.param == "bucket":
        yield request.getfixturevalue("bucket_store")
    else:
        yield MemoryStore()


def lease_on(store: Store, loc: str, me: Holder | None = None) -> Lease:
    got = store.claim(loc, me or new_runner())
    assert not isinstance(got, Holder), f"expected a lease, the task is held by {got}"
    return got


def committed(store: Store, value: object = 7, record: Record = RECORD) -> str:
    store.ensure()
    loc = store.locate("m.T", "abc")
    with lease_on(store, loc) as lease:
        lease.commit(value, record, 9, '{"duration": 1.5}')
    return loc


# -- the contract's size and shape -------------------------------------------------------------


def test_the_core_contract_is_small() -> None:
    """A second store (a bucket) must be able to honour it: 25 methods at most, and nothing
    of files in it (those are capabilities)."""
    methods = [n for n, _ in inspect.getmembers(Store) if not n.startswith("_")]
    assert len(methods) <= 25, methods
    for capability in CAPABILITIES:
        own = [n for n, _ in inspect.getmembers(capability) if not n.startswith("_")]
        assert not set(own) & set(methods), (capability, own)


def test_capabilities_are_told_up_front(tmp_path: Path) -> None:
    local, memory = LocalStore(tmp_path), MemoryStore()
    for capability in (OutputFiles, DeadlineFiles, PrefixJobs, TaskFolders, Portable):
        assert isinstance(local, capability)
        require(local, capability, "x", "y")  # no error
    assert isinstance(memory, OutputFiles) and isinstance(memory, TaskFolders)
    for capability in (DeadlineFiles, PrefixJobs, Portable):
        assert not isinstance(memory, capability)
    with pytest.raises(ConfigError, match=r"^prefix commands: the store <memory> cannot run"):
        require(memory, PrefixJobs, "prefix commands", "use a cache folder")


def test_stores_are_named_by_url(tmp_path: Path) -> None:
    assert open_store(tmp_path / "c") == LocalStore(str(tmp_path / "c"))
    assert open_store(f"file://{tmp_path}/c") == LocalStore(str(tmp_path / "c"))
    assert open_store("relative/c") == LocalStore(os.path.abspath("relative/c"))
    with pytest.raises(ConfigError, match=r"unknown kind of store ftp://.*\(file://"):
        open_store("ftp://host/c")


# -- results and records -----------------------------------------------------------------------


def test_a_new_store_is_empty_until_ensured(store: Store) -> None:
    assert not store.is_cache()
    assert store.task_names() == []
    assert store.task_ids("m.T") == frozenset()
    store.ensure()
    assert store.is_cache()


def test_commit_then_read_and_load(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    assert read_record(store, loc) is None
    with pytest.raises(FileNotFoundError):
        store.load(loc, "m.T(n=1)")
    lease = lease_on(store, loc, Holder("me", "h", 1))
    assert lease.fresh and lease.location == loc
    with lease:
        lease.start('{"n":1}', [("up", "m.U", "u1")], keep_output=False)
        assert lease.commit({"x": [1, 2]}, RECORD, 9, "") > 0
    assert store.read_claim(loc) is None  # the commit released the claim
    assert read_record(store, loc) == RECORD
    assert store.load(loc, "m.T(n=1)") == {"x": [1, 2]}
    assert store.task_names() == ["m.T"]
    assert store.task_ids("m.T") == frozenset({"abc"})
    assert store.read_args(loc) == '{"n":1}'
    (found,) = store.scan(["m.T"], with_size=True)
    assert (found.task_name, found.task_id, found.location) == ("m.T", "abc", loc)
    assert found.record == RECORD and found.upstream == ("m.U/u1",) and found.started
    assert found.size is not None and found.size > 0
    store.discard_result(loc)
    assert read_record(store, loc) is None
    again = lease_on(store, loc)
    assert not again.fresh  # its place was there already
    again.release()


def test_load_told_a_stamp_loads_only_the_result_with_that_stamp(store: Store) -> None:
    """A runner loads the result it planned for: a result another runner wrote in its place
    (another stamp) is never returned for it. The store raises ResultReplaced, carrying the
    record found, unless it keeps a copy of the very result with that stamp (a bucket's
    working copy), which it may return."""
    loc = committed(store, "first")
    assert store.load(loc, "m.T", RECORD.stamp) == "first"
    assert store.load(loc, "m.T", None) == "first"
    theirs = Record("s2", "other", None, "deps", "m.T/abc")
    with lease_on(store, loc) as lease:
        lease.commit("second", theirs, 9, "")
    try:
        planned = store.load(loc, "m.T", RECORD.stamp)
    except ResultReplaced as replaced:
        assert replaced.location == loc and replaced.record == theirs
    else:
        assert planned == "first"  # a kept copy of the result with that stamp, never theirs
    assert store.load(loc, "m.T", "s2") == "second"
    assert store.load(loc, "m.T") == "second"
    store.discard_result(loc)
    with pytest.raises(FileNotFoundError):
        store.load(loc, "m.T")


def test_records_are_read_in_batches(store: Store) -> None:
    """One call for many tasks, in order: a record, none, or why it cannot be read (a result
    of another task in the wrong place)."""
    store.ensure()
    locs = [store.locate("m.T", i) for i in ("a", "b", "c")]
    with lease_on(store, locs[0]) as lease:
        lease.commit(1, Record("s1", "c", None, "d", "m.T/a"), 9, "")
    with lease_on(store, locs[2]) as lease:
        lease.commit(1, Record("s2", "c", None, "d", "m.T/zzz"), 9, "")  # misplaced
    a, b, c = store.read_records(locs)
    assert a == Record("s1", "c", None, "d", "m.T/a") and b is None
    assert isinstance(c, Unreadable) and "m.T/zzz" in c.reason
    assert store.read_records([]) == []
    with pytest.raises(CorruptResultError):
        read_record(store, locs[2])


def test_output_is_read_by_byte_offset(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    assert store.read_output(loc, "stdout") == b""
    assert isinstance(store, OutputFiles)
    with lease_on(store, loc) as lease:
        lease.start("{}", [], keep_output=True)
        out, err = store.output_files(loc)
        Path(out).write_text("".join(f"line {i}\n" for i in range(100)))
        Path(err).write_text("oops\n")
    assert store.read_output(loc, "stdout", 0, 7) == b"line 0\n"
    assert store.read_output(loc, "stdout", 7, 7) == b"line 1\n"
    assert store.read_output(loc, "stdout", -8) == b"line 99\n"
    assert store.read_output(loc, "stderr") == b"oops\n"
    assert output_tail(store, loc, 2) == "[stdout]\nline 98\nline 99\n[stderr]\noops"


# -- leases ---------------------------------------------------------------------------------------


def test_a_claim_is_exclusive_and_leaving_its_block_releases_it(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    a, b = new_runner(), Holder("other", "h", 2)
    with lease_on(store, loc, a):
        assert store.claim(loc, b) == a
        assert store.read_claim(loc) == a
    assert store.read_claim(loc) is None  # not committed: released
    with lease_on(store, loc, b):
        pass


def test_rekey_changes_the_record_through_the_lease_and_keeps_the_result(store: Store) -> None:
    loc = committed(store, {"big": list(range(1000))})
    new = Record("s1", "newcode", None, "deps", "m.T/abc")
    with lease_on(store, loc) as lease:
        assert not lease.rekey(new, new)  # the stored record is not `new`: no change
        assert read_record(store, loc) == RECORD and store.read_claim(loc) is not None
        assert lease.rekey(RECORD, new)
        assert store.read_claim(loc) is None  # released by the rekey, as by a commit
    assert read_record(store, loc) == new
    assert store.load(loc, "m.T") == {"big": list(range(1000))}


def test_a_broken_lease_changes_nothing(store: Store) -> None:
    loc = committed(store)
    us, them = Holder("us", "h", 1), Holder("them", "h", 2)
    ours = lease_on(store, loc, us)
    assert store.break_claim(loc, us, them)  # they took us for dead
    theirs = lease_on(store, loc, them)
    with ours:
        with pytest.raises(ClaimTaken):
            ours.commit(2, Record("s2", "x", None, "deps", "m.T/abc"), 9, "")
        with pytest.raises(ClaimTaken):
            ours.rekey(RECORD, Record("s1", "x", None, "deps", "m.T/abc"))
    assert store.read_claim(loc) == them  # leaving our block did not release theirs
    assert read_record(store, loc) == RECORD
    theirs.release()


def test_break_claim_leaves_a_claim_that_is_not_the_dead_one(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    dead, new, me = Holder("d", "h", 1), Holder("n", "h", 2), Holder("m", "h", 3)
    with lease_on(store, loc, new):
        assert not store.break_claim(loc, dead, me)
        assert store.read_claim(loc) == new


def test_delete_through_a_lease_only_what_is_unchanged(store: Store) -> None:
    loc = committed(store)
    with lease_on(store, loc) as lease:
        assert lease.delete("another stamp") is None  # changed since it was looked at
    assert store.read_claim(loc) is None and read_record(store, loc) == RECORD  # kept, free
    with lease_on(store, loc) as lease:
        freed = lease.delete("s1")
    assert freed is not None and freed > 0
    assert store.task_ids("m.T") == frozenset() and read_record(store, loc) is None
    assert store.read_claim(loc) is None


def test_a_claim_handed_over_is_held_elsewhere_and_commits(store: Store) -> None:
    """A prefix command's worker takes up the claim its runner took: it commits through it;
    a claim that is no longer the one handed over cannot be taken up."""
    store.ensure()
    loc = store.locate("m.T", "abc")
    me = new_runner()
    taken = lease_on(store, loc, me)
    handover = taken.hand_over()
    assert handover.holder == me and handover.fresh
    worker = store.resume(handover)
    assert worker is not None and worker.fresh
    with worker:
        worker.start("{}", [], keep_output=False)
        worker.commit(3, RECORD, 9, "")
    taken.release()  # the runner gives back what it took: the commit did already
    assert store.read_claim(loc) is None and store.load(loc, "m.T") == 3
    assert store.resume(handover) is None  # committed: nothing to take up
    other = lease_on(store, loc)
    assert store.resume(handover) is None  # another claim now
    other.release()


# -- errors, clearing, meta ----------------------------------------------------------------------


def test_errors_and_clearing(store: Store) -> None:
    store.ensure()
    loc = store.locate("m.T", "abc")
    with lease_on(store, loc) as lease:
        lease.start("{}", [], keep_output=False)
    assert store.read_error(loc) is None
    store.write_error(loc, "Traceback ...\nValueError: no")
    assert store.read_error(loc) == "Traceback ...\nValueError: no"
    with lease_on(store, loc) as lease:
        lease.start("{}", [], keep_output=False)
    assert store.read_error(loc) is None  # a new attempt forgets the last failure
    with lease_on(store, store.locate("m.T", "def")) as lease:
        lease.commit(2, Record("s", "c", None, "d", "m.T/def"), 0, "")
    store.clear("m.T", "abc")
    assert store.task_ids("m.T") == frozenset({"def"})
    store.clear("m.T")
    assert store.task_names() == []


def test_scan_tells_when_results_and_failures_were_recorded(store: Store) -> None:
    """On the store's one clock, so that views can order them (`status`: an old failure is
    one with a result of its task name written after it)."""
    store.ensure()
    failed, done = store.locate("m.T", "abc"), store.locate("m.T", "def")
    with lease_on(store, failed) as lease:
        lease.start("{}", [], keep_output=False)
    store.write_error(failed, "Traceback ...\nValueError: no")
    with lease_on(store, done) as lease:
        lease.commit(2, Record("s", "c", None, "d", "m.T/def"), 0, "")
    first, second = store.scan(["m.T"])
    assert first.result_time is None and second.error_time is None
    assert first.error_time is not None and second.result_time is not None
    assert first.error_time <= second.result_time


def test_meta_entries(store: Store) -> None:
    store.ensure()
    assert store.read_meta("runs/a.json") is None
    store.write_meta("runs/a.json", b"1")
    store.write_meta("runs/b.json", b"2")
    store.write_meta("runs/a.json", b"3")  # replaces
    store.write_meta("runs/b.json", b"4", replace=False)  # kept as it was
    assert store.read_meta("runs/a.json") == b"3" and store.read_meta("runs/b.json") == b"2"
    assert store.list_meta("runs/") == ["runs/a.json", "runs/b.json"]
    store.delete_meta("runs/a.json")
    store.delete_meta("runs/a.json")  # nothing to forget: no error
    assert store.list_meta("runs") == ["runs/b.json"]
    for bad in ("../x", "/abs", "a//b", ".hidden", ""):
        with pytest.raises(ValueError, match="bad meta key"):
            check_key(bad)
        with pytest.raises(ValueError):
            store.write_meta(bad, b"x")


def test_code_identities_are_kept_once(store: Store) -> None:
    store.ensure()
    entries = (CodeEntry("m.f", "function", "d1", "def f():\n    return 1"),)
    assert read_code_identity(store, "abcdef0123456789") is None
    write_code_identity(store, "abcdef0123456789", entries)
    write_code_identity(store, "abcdef0123456789", (CodeEntry("m.g", "function", "d2", ""),))
    assert read_code_identity(store, "abcdef0123456789") == entries
    assert code_identities(store) == frozenset({"abcdef0123456789"})
    delete_code_identity(store, "abcdef0123456789")
    assert read_code_identity(store, "abcdef0123456789") is None
    assert code_identities(store) == frozenset()


def test_the_last_run_to_finish_is_kept(store: Store) -> None:
    store.ensure()
    assert read_last_run(store) is None
    first = RunSummary(100.0, 102.5, "h", 1, ran=3, failed=0)
    write_last_run(store, first)
    assert read_last_run(store) == first and first.wall_time == 2.5
    earlier = RunSummary(90.0, 101.0, "h", 2, ran=1, failed=1)  # started first, ended first
    write_last_run(store, earlier)
    assert read_last_run(store) == first
    later = RunSummary(101.0, 103.0, "h", 3, ran=0, failed=0)
    write_last_run(store, later)
    assert read_last_run(store) == later


# -- the cache folder only ---------------------------------------------------------------------


def test_dead_pid_on_same_host_is_dead(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    me = new_runner()
    dead = Holder("r1", me.host, proc.pid)
    alive = Holder("r2", me.host, os.getpid())
    live = Liveness(store, me, stale_after=60)
    assert live.is_dead(dead)
    assert not live.is_dead(alive)


def test_other_host_dies_when_its_beat_stops(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.ensure()
    me = new_runner()
    other = Holder("far", "elsewhere", 12345)
    store.write_meta("runners/far.json", b"1")
    assert read_beat(store, "far") == "1"
    live = Liveness(store, me, stale_after=0.2)
    assert not live.is_dead(other)
    time.sleep(0.1)
    store.write_meta("runners/far.json", b"2")  # it beats: alive
    assert not live.is_dead(other)
    time.sleep(0.3)
    assert live.is_dead(other)  # no beat for longer than stale_after


@pytest.mark.parametrize("form", ["member", "json"])
def test_break_claim_only_breaks_the_dead_one(tmp_path: Path, form: str) -> None:
    """Claims as this version writes them (a gzip member, maybe followed by part of a result)
    and as older ones did (plain JSON)."""

    def claim_file(holder: Holder) -> bytes:
        if form == "json":
            return holder.to_json().encode()
        return claim_bytes(holder) + b"part of a result being written"

    store = LocalStore(tmp_path)
    loc = str(tmp_path)
    dead, new, me = Holder("d", "h", 1), Holder("n", "h", 2), Holder("m", "h", 3)
    Path(tmp_path, "claim").write_bytes(claim_file(new))
    assert store.read_claim(loc) == new
    assert not store.break_claim(loc, dead, me)  # a different claim is in place
    assert store.read_claim(loc) == new
    Path(tmp_path, "claim").write_bytes(claim_file(dead))
    assert store.break_claim(loc, dead, me)
    assert store.read_claim(loc) is None


def test_the_layout_is_the_documented_one(tmp_path: Path) -> None:
    """Locations are ``<cache>/<task name>/results/<id>``, results ``result.pkl.gz`` in them,
    upstream links ``deps/<attr>`` relative to the cache (so the folder can be moved), meta
    entries under ``.taskproc``."""
    store = LocalStore(tmp_path)
    loc = store.locate("m.T", "abc")
    assert loc == f"{tmp_path}/m.T/results/abc"
    with lease_on(store, loc) as lease:
        lease.start("{}", [("xs.0", "m.U", "u1")], keep_output=False)
        lease.commit(5, RECORD, 9, "")
    assert store.result_file(loc) == f"{loc}/result.pkl.gz"
    assert os.readlink(f"{loc}/deps/xs.0") == "../../../../m.U/results/u1"
    assert Path(loc, "args.json").read_text() == "{}\n"
    assert store.data_folder(loc) == Path(loc, "data") and Path(loc, "data").is_dir()
    store.write_meta("runners/r.json", b"{}")
    assert Path(tmp_path, ".taskproc", "runners", "r.json").read_bytes() == b"{}"


def test_a_meta_entry_is_never_read_through_a_link(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "cache")
    store.ensure()
    secret = tmp_path / "secret.txt"
    secret.write_text("not the cache's")
    (tmp_path / "cache" / ".taskproc" / "runners" / "r.json").symlink_to(secret)
    assert store.read_meta("runners/r.json") is None


def test_links_follow_the_run_that_made_the_result(tmp_path: Path) -> None:
    """A task that keeps its id while its upstream tasks change (one that globs a folder):
    its links are those of its last run; links of upstream tasks it no longer has go."""
    store = LocalStore(tmp_path)
    loc = store.locate("m.T", "abc")
    with lease_on(store, loc) as lease:
        lease.start("{}", [("a", "m.U", "u1"), ("b", "m.U", "u2")], keep_output=False)
    with lease_on(store, loc) as lease:
        lease.start("{}", [("a", "m.U", "u3"), ("c", "m.U", "u4")], keep_output=False)
    links = {name: os.readlink(f"{loc}/deps/{name}") for name in os.listdir(f"{loc}/deps")}
    assert links == {"a": "../../../../m.U/results/u3", "c": "../../../../m.U/results/u4"}
    with lease_on(store, loc) as lease:
        lease.start("{}", [], keep_output=False)
    assert not os.path.exists(f"{loc}/deps")  # no upstream tasks now: no links


def test_a_folder_deleted_while_it_is_claimed_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gc`` or ``clear`` may delete a task's folder between its making and the claim's
    creation: the claim makes it again, as a new task's, never reporting a race as a
    permission problem."""
    import taskproc.store._local as local

    store = LocalStore(tmp_path)
    loc = store.locate("m.T", "abc")
    real = local.ensure_dir
    deletions = [2]

    def racing(path: str) -> bool:
        made = real(path)
        if path == loc and deletions[0]:
            deletions[0] -= 1
            os.rmdir(path)  # what a clear from another shell does, just then
        return made

    monkeypatch.setattr(local, "ensure_dir", racing)
    with lease_on(store, loc) as lease:
        assert lease.fresh
        lease.commit(1, Record("s", "c", None, "d", "m.T/abc"), 0, "")
    assert deletions == [0] and read_record(store, loc) is not None


@pytest.mark.parametrize("other_run", ["committed", "failed"])
def test_a_folder_another_runner_used_before_our_claim_is_not_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_run: str
) -> None:
    """A runner makes the task's folder; before it creates its claim there, another runner
    claims, runs and commits (or fails) the task in that folder. The first runner's claim is
    then not `fresh`: a fresh claim skips looking for a result, and the task would run twice
    (seen with two runners on one cache under load)."""
    import taskproc.store._local as local

    store = LocalStore(tmp_path)
    loc = store.locate("m.T", "abc")
    real = local.ensure_dir
    other = LocalStore(tmp_path)
    raced = []

    def racing(path: str) -> bool:
        made = real(path)
        if path == loc and not raced:
            raced.append(path)
            with lease_on(other, loc) as theirs:  # the other runner, in the gap
                assert theirs.fresh is False  # it did not make the folder
                theirs.start("{}", [], keep_output=False)
                if other_run == "committed":
                    theirs.commit(1, RECORD, 0, "")
                else:
                    other.write_error(loc, "boom")
        return made

    monkeypatch.setattr(local, "ensure_dir", racing)
    with lease_on(store, loc) as lease:
        assert raced and not lease.fresh
    if other_run == "committed":
        assert read_record(store, loc) == RECORD


def test_a_task_committed_in_the_gap_before_our_claim_is_not_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race, one level up: the job that claims finds the other runner's result and
    reports it cached instead of running the task."""
    import taskproc.store._local as local
    from taskproc.run._job import Cached, JobSpec, claim

    store = LocalStore(tmp_path)
    store.ensure()
    loc = store.locate("m.T", "abc")
    spec = JobSpec("m.T", "abc", loc, "{}", RECORD, 0)
    real = local.ensure_dir
    raced = []

    def racing(path: str) -> bool:
        made = real(path)
        if path == loc and not raced:
            raced.append(path)
            with lease_on(store, loc) as theirs:
                theirs.commit(1, spec.record, 0, "")
        return made

    monkeypatch.setattr(local, "ensure_dir", racing)
    got = claim(spec, store, new_runner())
    assert raced and isinstance(got, Cached), got


def test_clearing_a_task_can_keep_its_data_folder_empty(tmp_path: Path) -> None:
    """`keep_data` (what `Task.clear_task` asks for) empties ``data/`` and keeps it; without
    it (`taskproc clear`), or when ``data/`` was never made, the whole folder goes."""
    store = LocalStore(tmp_path)
    store.ensure()
    loc = store.locate("m.T", "abc")
    data = store.data_folder(loc)
    (data / "model.bin").write_bytes(b"x")
    with lease_on(store, loc) as lease:
        lease.commit(5, RECORD, 9, "")
    store.clear("m.T", "abc", keep_data=True)
    assert os.listdir(loc) == ["data"] and os.listdir(data) == []
    store.clear("m.T", "abc")
    assert not os.path.exists(loc)
    store.clear("m.T", "abc", keep_data=True)
    assert not os.path.exists(loc)


def test_clearing_everything_refuses_a_folder_that_is_not_a_cache(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(CacheError, match="not a taskproc cache"):
        LocalStore(tmp_path).clear()
    assert (tmp_path / "precious.txt").exists()


def test_clearing_everything_empties_a_cache(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.ensure()
    (tmp_path / "mod.T" / "results" / "x").mkdir(parents=True)
    store.clear()
    assert [p.name for p in tmp_path.iterdir()] == [".taskproc"]


def test_a_trash_that_is_a_file_does_not_stop_deletions(tmp_path: Path) -> None:
    """A damaged cache (``.taskproc/trash`` a file): a task is deleted in place instead."""
    store = LocalStore(tmp_path)
    store.ensure()
    (tmp_path / ".taskproc" / "trash").write_text("not a folder")
    loc = committed(store)
    store.clear("m.T", "abc")
    assert not os.path.exists(loc)
    store.ensure()  # nothing to empty: no error


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


def test_a_folder_made_by_another_process_with_its_parent_is_not_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runners make a new task name's first folder at once: only the one whose mkdir made
    the task's own folder may call it made (both used to, when its parent was missing)."""
    import taskproc.store._files as files

    real = files.make_dirs
    target = str(tmp_path / "m.T" / "results" / "abc")

    def other_runner_too(path: str) -> None:
        real(path)
        os.mkdir(target)  # the other runner, which got there first

    monkeypatch.setattr(files, "make_dirs", other_runner_too)
    assert files.ensure_dir(target) is False
    assert files.ensure_dir(str(tmp_path / "elsewhere")) is True  # a parent that exists
