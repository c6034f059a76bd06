"""The store in a bucket (``s3://``) against a real S3 server (SeaweedFS): what only it does.

The contract's own tests run on it in tests/test_store.py, and the run loop's in
tests/test_driver.py. Here: the commit point under broken claims, big results, the working
copy, task folders and output across machines, the run on every executor, races of many
claimers, credentials kept out of everything taskproc writes, and the one-line errors.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from taskproc import FailedTaskError, Graph, InlineExecutor, Task
from taskproc.errors import CacheError
from taskproc.store import BucketStore, ClaimTaken, Holder, Lease, Record, open_store, read_record

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.s3

RECORD = Record("s1", "code", None, "deps", "m.T/abc")
TASKPROC = str(Path(sys.executable).with_name("taskproc"))


def spawned_pool(workers: int = 2) -> ProcessPoolExecutor:
    """A process pool for this test process, which has used the bucket client already: its
    workers cannot be forks of it (obstore), so they are new interpreters."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def lease_on(store: BucketStore, loc: str, me: Holder) -> Lease:
    got = store.claim(loc, me)
    assert not isinstance(got, Holder), f"expected a lease, the task is held by {got}"
    return got


def committed(store: BucketStore, value: object = 7, record: Record = RECORD) -> str:
    store.ensure()
    loc = store.locate("m.T", "abc")
    with lease_on(store, loc, Holder("first", "h", 1)) as lease:
        lease.commit(value, record, 9, '{"duration": 1.5}')
    return loc


@pytest.fixture
def other_copy(bucket_store: BucketStore, tmp_path: Path) -> BucketStore:
    """The same bucket as another machine sees it: a working copy of its own."""
    return BucketStore(bucket_store.root, working_copy=tmp_path / "elsewhere")


# -- the commit point ------------------------------------------------------------------------


def test_a_lease_found_broken_at_commit_commits_nothing(bucket_store: BucketStore) -> None:
    """On a task without a result (the claim is on the result object: the commit itself is
    the check) and on a rerun (the side claim is read back before the result is written)."""
    store = bucket_store
    store.ensure()
    us, them = Holder("us", "h", 1), Holder("them", "h", 2)
    loc = store.locate("m.T", "new")
    ours = lease_on(store, loc, us)
    assert ours.fresh
    assert store.break_claim(loc, us, them)
    theirs = lease_on(store, loc, them)
    with pytest.raises(ClaimTaken):
        ours.commit(1, Record("s1", "c", None, "d", "m.T/new"), 9, "")
    assert read_record(store, loc) is None and store.read_claim(loc) == them
    with theirs:
        theirs.commit(2, Record("s2", "c", None, "d", "m.T/new"), 9, "")
    assert store.load(loc, "m.T") == 2

    loc = committed(store)
    ours = lease_on(store, loc, us)
    assert not ours.fresh
    assert store.break_claim(loc, us, them)
    theirs = lease_on(store, loc, them)
    with pytest.raises(ClaimTaken):
        ours.commit(3, Record("s3", "c", None, "d", "m.T/abc"), 9, "")
    assert read_record(store, loc) == RECORD and store.read_claim(loc) == them
    theirs.release()


def test_a_claim_broken_between_the_check_and_the_write_still_commits_whole(
    bucket_store: BucketStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun's commit reads its side claim back, then writes the result: two requests. A
    claim broken between them still commits (the contract promises only "a lease found broken
    at commit commits nothing"), and harmlessly: the breaker's commit expects the same
    version of the result and loses, and readers get our whole result."""
    import taskproc.store._s3lease as s3lease

    store = bucket_store
    loc = committed(store)
    us, them = Holder("us", "h", 1), Holder("them", "h", 2)
    ours = lease_on(store, loc, us)
    real = s3lease.BucketLease._still_ours
    taken: list[Lease] = []

    def checked_then_broken(lease: s3lease.BucketLease) -> bool:
        ok = real(lease)
        if lease is ours and not taken:  # just after the check: they take us for dead
            assert store.break_claim(loc, us, them)
            taken.append(lease_on(store, loc, them))
        return ok

    monkeypatch.setattr(s3lease.BucketLease, "_still_ours", checked_then_broken)
    mine = Record("s-ours", "c", None, "d", "m.T/abc")
    ours.commit("ours", mine, 9, "")
    (theirs,) = taken
    with pytest.raises(ClaimTaken):
        theirs.commit("theirs", Record("s-theirs", "c", None, "d", "m.T/abc"), 9, "")
    assert read_record(store, loc) == mine and store.load(loc, "m.T") == "ours"
    assert store.read_claim(loc) is None  # both claims given back


def test_big_results_are_a_blob_and_a_pointer(
    bucket_store: BucketStore, other_copy: BucketStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result over INLINE bytes is uploaded in parts to a blob of its own and committed by
    a small pointer: loaded through it (from another working copy too), re-keyed without
    rewriting it, replaced and deleted with it."""
    import taskproc.store._s3lease as s3lease

    monkeypatch.setattr(s3lease, "INLINE", 1000)
    store = bucket_store
    value = os.urandom(5000)
    loc = committed(store, value)
    blobs = [i.key for p in store.bucket.list_pages("m.T/blobs") for i in p]
    assert len(blobs) == 1
    head = store.bucket.head("m.T/results/abc")
    assert head is not None and head.size < 1000  # the pointer
    assert other_copy.load(loc, "m.T") == value
    new = Record("s1", "newcode", None, "deps", "m.T/abc")
    with lease_on(store, loc, Holder("r", "h", 3)) as lease:
        assert lease.rekey(RECORD, new)
    assert read_record(other_copy, loc) == new and other_copy.load(loc, "m.T") == value
    assert [i.key for p in store.bucket.list_pages("m.T/blobs") for i in p] == blobs
    with lease_on(store, loc, Holder("r", "h", 3)) as lease:
        lease.commit(os.urandom(5000), Record("s2", "c", None, "d", "m.T/abc"), 0, "")
    after = [i.key for p in store.bucket.list_pages("m.T/blobs") for i in p]
    assert len(after) == 1 and after != blobs  # the replaced result's blob went
    with lease_on(store, loc, Holder("r", "h", 3)) as lease:
        assert lease.delete("s2") is not None
    assert not list(store.bucket.list_pages("m.T"))  # nothing of the task is left


# -- the working copy ---------------------------------------------------------------------------


def test_the_plan_reads_records_it_knows_from_one_listing(
    bucket_store: BucketStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cold, records are read (4 KiB each, in batches); warm, a listing tells which ETags the
    working copy knows, and nothing else is read. A result replaced since is read again: the
    index is named by ETag, so it is never out of date."""
    store = bucket_store
    store.ensure()
    locs = [store.locate("m.T", f"t{i}") for i in range(40)]
    for i, loc in enumerate(locs):
        with lease_on(store, loc, Holder("r", "h", 1)) as lease:
            lease.commit(i, Record(f"s{i}", "c", None, "d", f"m.T/t{i}"), 9, "")
    reads: list[int] = []
    real = type(store.bucket).get_many

    def counted(bucket: Any, keys: Any, **kw: Any) -> Any:
        reads.append(len(keys))
        return real(bucket, keys, **kw)

    monkeypatch.setattr(type(store.bucket), "get_many", counted)
    wc = tmp_path / "another machine"
    fresh = BucketStore(store.root, working_copy=wc)
    assert fresh.task_ids("m.T") == frozenset(f"t{i}" for i in range(40))
    cold = fresh.read_records(locs)
    assert [r.stamp for r in cold if isinstance(r, Record)] == [f"s{i}" for i in range(40)]
    assert sum(reads) == 40
    reads.clear()
    warm = BucketStore(store.root, working_copy=wc)
    warm.task_ids("m.T")
    assert warm.read_records(locs) == cold and reads == []
    with lease_on(store, locs[3], Holder("r", "h", 1)) as lease:
        lease.commit(99, Record("s99", "c", None, "d", "m.T/t3"), 9, "")
    reads.clear()
    again = BucketStore(store.root, working_copy=wc)
    again.task_ids("m.T")
    found = again.read_records(locs)
    assert reads == [1] and isinstance(found[3], Record) and found[3].stamp == "s99"


def test_a_torn_index_line_is_a_miss_never_a_wrong_record(tmp_path: Path) -> None:
    from taskproc.store._workcopy import Known, WorkingCopy

    wc = WorkingCopy(tmp_path)
    wc.remember("m.T", [("a", Known('"e1"', "result", "2 s1 c d m.T/a null", "{}"))])
    wc.remember("m.T", [("b", Known('"e2"', "result", "2 s2 c d m.T/b null", "{}"))])
    path = tmp_path / "records" / "m.T.tsv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0].replace("s1", "s9") + lines[1])  # a line garbled
    assert set(WorkingCopy(tmp_path).known("m.T")) == {"b"}


def test_a_result_is_downloaded_once_per_machine(
    bucket_store: BucketStore, other_copy: BucketStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded by its stamp, a result the working copy holds costs no request."""
    loc = committed(bucket_store, list(range(5000)))
    assert other_copy.load(loc, "m.T") == list(range(5000))
    monkeypatch.setattr(type(other_copy.bucket), "get_many", None)  # no request may be made
    assert other_copy.load(loc, "m.T", "s1") == list(range(5000))


# -- runs -------------------------------------------------------------------------------------


class Leaf(Task):
    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> int:
        print(f"leaf {self.n}")
        return self.n * 10


class Files(Task):
    """Writes its folder; its downstream task reads it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> str:
        (self.task_directory / "out.txt").write_text(f"file of {self.n}\n")
        (self.task_directory / "sub").mkdir(exist_ok=True)
        (self.task_directory / "sub" / "x").write_text("x")
        return "written"


class ReadFiles(Task):
    def __init__(self, n: int) -> None:
        self.files = Files(n)

    def run_task(self) -> str:
        self.files.get_result()
        return (self.files.task_directory / "out.txt").read_text()


class BadPrefixed(Task):
    task_label = "cpu"

    def run_task(self) -> int:
        raise ValueError("no luck")


class Sum(Task):
    def __init__(self, n: int, bad: bool = False) -> None:
        self.leaves = [Leaf(i) for i in range(n)]
        self.bad = bad

    def run_task(self) -> int:
        if self.bad:
            print("about to fail")
            raise ValueError("no")
        return sum(leaf.get_result() for leaf in self.leaves)


@pytest.mark.parametrize("kind", ["inline", "thread", "process"])
def test_a_graph_runs_and_caches_on_every_executor(
    bucket_store: BucketStore, tmp_path: Path, kind: str
) -> None:
    """Worker processes commit directly (a process pool here) and read their upstream
    results from the bucket; output is captured and kept as objects, failures too."""
    ex = {
        "inline": InlineExecutor,
        "thread": lambda: ThreadPoolExecutor(4),
        "process": spawned_pool,
    }[kind]()
    try:
        with Graph(bucket_store.root, store=bucket_store):
            assert Sum(6).run_graph(executor=ex)[0] == 150
            result, stats = Sum(6).run_graph(executor=ex)
            assert result == 150 and sum(stats["stats"].values()) == 0
            assert ReadFiles(1).run_graph(executor=ex)[0] == "file of 1\n"
            with pytest.raises(ExceptionGroup) as info:
                Sum(2, bad=True).run_graph(executor=ex)
            loc, leaf = Sum(2, bad=True)._tp_loc(), Leaf(3)._tp_loc()
    finally:
        ex.shutdown()
    (err,) = info.value.exceptions
    assert isinstance(err, FailedTaskError) and err.error_message == "no"
    assert "ValueError: no" in (bucket_store.read_error(loc) or "")
    if kind != "inline":  # the inline executor captures nothing
        assert "about to fail" in err.output_tail
        assert bucket_store.read_output(loc, "stdout") == b"about to fail\n"
        assert bucket_store.read_output(leaf, "stdout") == b"leaf 3\n"


def test_a_task_folder_travels_to_another_machine(
    bucket_store: BucketStore, other_copy: BucketStore
) -> None:
    """`task_directory` is packed as one archive per result before the commit and unpacked
    on demand where a downstream task (or a user) reads it."""
    with Graph(bucket_store.root, store=bucket_store):
        Files(2).run_graph(executor=ThreadPoolExecutor(2))
    with Graph(other_copy.root, store=other_copy):
        folder = Files(2).task_directory
        assert (folder / "out.txt").read_text() == "file of 2\n"
        assert (folder / "sub" / "x").read_text() == "x"
        assert folder.is_relative_to(other_copy.working_copy.folder)
        assert ReadFiles(2).run_graph(executor=InlineExecutor())[0] == "file of 2\n"


# -- races ---------------------------------------------------------------------------------------


ROUNDS = 3


def _claim_in_process(url: str, runner: str, env: dict[str, str], barrier: Any, out: Any) -> None:
    os.environ.update(env)
    store = BucketStore(url)
    for round_no in range(ROUNDS):
        loc = store.locate("m.T", f"race{round_no}")
        barrier.wait()
        got = store.claim(loc, Holder(runner, "h", os.getpid()))
        out.put((round_no, "won" if not isinstance(got, Holder) else f"held by {got.runner}"))


@pytest.mark.parametrize("where", ["threads", "processes"])
def test_sixteen_claimers_one_winner(bucket_store: BucketStore, where: str, s3_server: Any) -> None:
    """16 runners claim one task at once, 3 rounds: exactly one wins each round and the
    others are told who holds it."""
    store = bucket_store
    store.ensure()
    outcomes: dict[int, list[str]] = {i: [] for i in range(ROUNDS)}
    if where == "threads":
        barrier = threading.Barrier(16)

        def claim(i: int) -> None:
            for round_no in range(ROUNDS):
                loc = store.locate("m.T", f"race{round_no}")
                barrier.wait()
                got = store.claim(loc, Holder(f"r{i}", "h", i + 1))
                won = "won" if not isinstance(got, Holder) else f"held by {got.runner}"
                outcomes[round_no].append(won)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(claim, range(16)))
    else:
        ctx = multiprocessing.get_context("spawn")
        queue, procs = ctx.Queue(), []
        sync = ctx.Barrier(16)
        for i in range(16):
            args = (store.root, f"r{i}", s3_server.env(), sync, queue)
            procs.append(ctx.Process(target=_claim_in_process, args=args))
        try:
            for p in procs:
                p.start()
            for _ in range(16 * ROUNDS):
                round_no, won = queue.get(timeout=120)
                outcomes[round_no].append(won)
        finally:
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()
    for round_no, found in outcomes.items():
        assert len(found) == 16 and found.count("won") == 1, found
        holder = store.read_claim(store.locate("m.T", f"race{round_no}"))
        assert holder is not None
        assert set(found) == {"won", f"held by {holder.runner}"}


# -- credentials and errors -----------------------------------------------------------------------


def test_credentials_are_never_written(
    bucket_store: BucketStore, s3_server: Any, tmp_path: Path
) -> None:
    """Not in any object, any file of the working copy, job file, message or log."""
    ex = spawned_pool()
    try:
        with Graph(bucket_store.root, store=bucket_store):
            with pytest.raises(ExceptionGroup) as info:
                Sum(3, bad=True).run_graph(executor=ex)
            Files(1).run_graph(executor=ex)
            with pytest.raises(ExceptionGroup):  # a failed prefix run keeps its job file
                BadPrefixed().run_graph(executor=InlineExecutor(), prefixes={"cpu": "env"})
    finally:
        ex.shutdown()
    assert list(bucket_store.working_copy.folder.rglob("job.pkl"))
    secrets = [s3_server.secret_access_key.encode(), s3_server.access_key_id.encode()]
    everything = [i.key for p in bucket_store.bucket.list_pages() for i in p]
    for key in everything:
        got = bucket_store.bucket.get(key)
        assert got is not None and not any(s in got.data for s in secrets), key
    for path in bucket_store.working_copy.folder.rglob("*"):
        if path.is_file():
            assert not any(s in path.read_bytes() for s in secrets), path
    assert not any(s.decode() in str(e) for e in info.value.exceptions for s in secrets)
    import pickle

    blob = pickle.dumps(bucket_store)
    assert not any(s in blob for s in secrets)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKPROC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_a_bucket_that_does_not_exist_is_one_line_and_never_made(
    s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, **s3_server.env()}
    pipe = tmp_path / "pipe.py"
    pipe.write_text(
        "from taskproc import Task\n\n\nclass Main(Task):\n"
        "    def run_task(self) -> int:\n        return 1\n"
    )
    missing = f"taskproc-missing-{uuid.uuid4().hex[:8]}"
    for args in (
        [str(pipe), "-o", f"s3://{missing}/c"],
        ["status", f"s3://{missing}/c"],
    ):
        proc = _cli(*args, env=env, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"bucket '{missing}' does not exist" in lines[0], lines
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(f"s3://{missing}/c")
    with pytest.raises(CacheError, match="does not exist"):
        store.is_cache()  # still not there: nothing made it


@pytest.mark.parametrize("problem", ["endpoint", "credentials"])
def test_an_endpoint_or_credentials_that_fail_are_one_line(
    s3_server: Any, tmp_path: Path, problem: str
) -> None:
    import socket

    env = {**os.environ, **s3_server.env()}
    if problem == "endpoint":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed once the block ends: nobody listens
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        expect = "no answer from the endpoint"
    else:
        env["AWS_SECRET_ACCESS_KEY"] = "wrong" + s3_server.secret_access_key
        expect = "refused the credentials"
    started = time.monotonic()
    proc = _cli("status", f"s3://{s3_server.bucket}/c", env=env, cwd=tmp_path)
    assert time.monotonic() - started < 60
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and env["AWS_ENDPOINT_URL"] in lines[0], lines
    assert env["AWS_SECRET_ACCESS_KEY"] not in proc.stderr


# -- fork pools --------------------------------------------------------------------------------

TWO_RUNS = """
import sys
from taskproc import Graph, Task

class Leaf(Task):
    def __init__(self, i: int):
        self.i = i

    def run_task(self):
        return self.i + 1

class Main(Task):
    def __init__(self, n: int):
        self.leaves = [Leaf(i) for i in range(n)]

    def run_task(self):
        return sum(x.get_result() for x in self.leaves)

if __name__ == "__main__":
    with Graph(sys.argv[1]):
        print(Main(4).run_graph()[0], Main(6).run_graph()[0])
"""


ONE_RUN = (
    TWO_RUNS.split('if __name__ == "__main__":')[0]
    + """
with Graph(sys.argv[1]):  # no main guard: the pool's workers must be forks
    print(Main(4).run_graph()[0])
"""
)


def run_script(text: str, url: str, env: dict[str, str], folder: Path) -> list[str]:
    """Run `text` as a script on the bucket at `url`; the words it printed."""
    script = folder / "script.py"
    script.write_text(text)
    env = {**os.environ, **env, "TASKPROC_WORKING_COPY": str(folder / "wc")}
    proc = subprocess.run(
        [sys.executable, str(script), url], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_the_default_pool_forks_its_workers_before_the_first_request(
    bucket_store: BucketStore, s3_server: Any, tmp_path: Path
) -> None:
    """A script without a main guard, as the seed's examples are: its first run on a bucket
    forks the pool's workers before the bucket's first request (obstore cannot be used in a
    process forked after it was; new interpreters would run the script again)."""
    assert run_script(ONE_RUN, bucket_store.root, s3_server.env(), tmp_path) == ["10"]


def test_a_process_pool_forks_before_the_first_request_and_spawns_later(
    bucket_store: BucketStore, s3_server: Any, tmp_path: Path
) -> None:
    """The default process pool forks its workers before the store's first request (obstore
    cannot cross a fork); a second run in the same process, after the bucket was used, starts
    them as new interpreters."""
    printed = run_script(TWO_RUNS, bucket_store.root, s3_server.env(), tmp_path)
    assert printed == ["10", "21"]


def test_workers_of_other_machines_see_their_own_working_copy(
    bucket_store: BucketStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store travels to workers as its URL: each process opens its own working copy."""
    import pickle

    monkeypatch.setenv("TASKPROC_WORKING_COPY", str(tmp_path / "worker-wc"))
    there = pickle.loads(pickle.dumps(bucket_store))
    assert isinstance(there, BucketStore) and there == bucket_store
    assert there.working_copy.folder.is_relative_to(tmp_path / "worker-wc")


def test_the_store_is_named_by_url(bucket_store: BucketStore) -> None:
    store = open_store(bucket_store.root)
    assert isinstance(store, BucketStore) and store == bucket_store
    assert store.locate("m.T", "x") == f"{bucket_store.root}/m.T/results/x"
    assert json.loads(json.dumps(store.root)) == bucket_store.root


def test_batched_prefix_runs_commit_to_the_bucket(
    bucket_store: BucketStore, tmp_path: Path
) -> None:
    """Prefix commands that run many tasks each (`batch_sizes`): each task is claimed by
    the runner, taken up by the command's worker, and committed to the bucket by it."""
    from test_batch import Sum as Batched
    from test_batch import Tiny, counting_prefix, invocations

    prefix, log = counting_prefix(tmp_path)
    with Graph(bucket_store.root, store=bucket_store):
        total, stats = Batched(30).run_graph(
            executor=InlineExecutor(), prefixes={"cpu": prefix}, batch_sizes={"cpu": 10}
        )
        assert total == sum(i * i for i in range(30))
        assert stats["stats"] == {Tiny.task_name: 30, Batched.task_name: 1}
        calls = invocations(log)
        assert sum(k for k, _ in calls) == 30 and max(k for k, _ in calls) <= 10
        assert Tiny(17).get_result() == 289
        assert bucket_store.read_claim(Tiny(3)._tp_loc()) is None
    jobs = bucket_store.working_copy.folder / "jobs"
    assert not list(jobs.rglob("job.pkl")) and not list(jobs.rglob("outcome.pkl"))
