"""Conditional writes under races, and multipart uploads cut short, against SeaweedFS.

Writers start together at a barrier; each round's key is new. Threads share one client; each
process opens its own (spawned, as a worker on another machine would be).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.s3

WRITERS = 16
ROUNDS = 10


# -- the writers: module functions, so that spawned processes can run them -----------------------

_barrier: Any = None


def _init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _create(bucket: Any, key: str, body: bytes) -> str | None:
    _barrier.wait(timeout=60)
    return bucket.put_if_absent(key, body)  # type: ignore[no-any-return]


def _replace(bucket: Any, key: str, body: bytes, etag: str) -> str | None:
    _barrier.wait(timeout=60)
    return bucket.put_if_match(key, body, etag)  # type: ignore[no-any-return]


@pytest.fixture(params=["threads", "processes"])
def writers(request: pytest.FixtureRequest) -> Iterator[Callable[..., list[Any]]]:
    """`run(fn, args_per_writer)`: call `fn` in WRITERS threads or processes at once."""
    if request.param == "threads":
        barrier: Any = threading.Barrier(WRITERS)
        pool: concurrent.futures.Executor = concurrent.futures.ThreadPoolExecutor(WRITERS)
        _init(barrier)
    else:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(WRITERS)
        pool = concurrent.futures.ProcessPoolExecutor(
            WRITERS, mp_context=context, initializer=_init, initargs=(barrier,)
        )

    def run(fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
        assert len(calls) == WRITERS
        futures = [pool.submit(fn, *args) for args in calls]
        return [f.result(timeout=120) for f in futures]

    try:
        yield run
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def test_put_if_absent_race_has_one_winner(bucket: Any, writers: Any) -> None:
    for round_ in range(ROUNDS):
        key = f"claim/{round_}"
        bodies = [f"writer {i} of round {round_}".encode() * 64 for i in range(WRITERS)]
        etags = writers(_create, [(bucket, key, body) for body in bodies])
        winners = [i for i, etag in enumerate(etags) if etag is not None]
        assert len(winners) == 1, f"round {round_}: winners {winners}"
        stored = bucket.get(key)
        assert stored.data == bodies[winners[0]]
        assert stored.etag == etags[winners[0]]


def test_put_if_match_race_has_one_winner(bucket: Any, writers: Any) -> None:
    for round_ in range(ROUNDS):
        key = f"result/{round_}"
        old = bucket.put(key, b"the version every writer read")
        bodies = [f"writer {i} replaces, round {round_}".encode() * 64 for i in range(WRITERS)]
        etags = writers(_replace, [(bucket, key, body, old) for body in bodies])
        winners = [i for i, etag in enumerate(etags) if etag is not None]
        assert len(winners) == 1, f"round {round_}: winners {winners}"
        stored = bucket.get(key)
        assert (stored.data, stored.etag) == (bodies[winners[0]], etags[winners[0]])


def test_put_if_absent_race_with_big_bodies(bucket: Any, writers: Any) -> None:
    """1 MiB bodies: the winner is decided at the end of a long upload, not at its start."""
    key = "big-claim"
    bodies = [bytes([i]) * (1024 * 1024) for i in range(WRITERS)]
    etags = writers(_create, [(bucket, key, body) for body in bodies])
    winners = [i for i, etag in enumerate(etags) if etag is not None]
    assert len(winners) == 1, f"winners {winners}"
    assert bucket.get(key).data == bodies[winners[0]]


# -- multipart uploads cut short -----------------------------------------------------------------

MIB = 1024 * 1024


def test_an_upload_cut_by_an_exception_leaves_no_object(bucket: Any) -> None:
    chunk = os.urandom(MIB)
    with pytest.raises(RuntimeError, match="cut"):  # noqa: PT012
        with bucket.upload("cut") as up:
            for _ in range(40):  # 40 of 64 MiB: several parts already sent
                up.write(chunk)
            raise RuntimeError("cut")
    assert bucket.head("cut") is None
    assert [i for page in bucket.list_pages() for i in page] == []


UPLOADER = """
import os, sys
from taskproc.store._bucket import open_bucket
bucket, key, size_mib = open_bucket(sys.argv[1]), sys.argv[2], int(sys.argv[3])
with bucket.upload(key) as up:
    for i in range(size_mib):
        up.write(os.urandom(1024 * 1024))  # each chunk new: a writer that kept them would grow
        if i == 32:
            print("half", flush=True)  # the test kills us from here on
        if i == 32 and sys.argv[4] == "pause":
            sys.stdin.readline()
print("done", up.size, up.etag, flush=True)
"""


def _uploader(bucket: Any, key: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", UPLOADER, str(bucket.url), key, "64", mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_an_upload_killed_midway_leaves_no_object(bucket: Any) -> None:
    proc = _uploader(bucket, "killed", "pause")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "half"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert bucket.head("killed") is None
    assert bucket.get("killed") is None


def test_a_64_mib_upload_never_holds_the_value_in_memory(bucket: Any, tmp_path: Path) -> None:
    """The uploader's peak memory grows by less than the value: parts leave as they fill."""
    script = tmp_path / "peak.py"
    script.write_text(
        "import resource, runpy, sys\n"
        "from taskproc.store._bucket import open_bucket\n"
        "open_bucket(sys.argv[1]).put('warm', b'x')  # the client and its runtime, loaded\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "sys.argv = ['-c', *sys.argv[1:]]\n"
        f"exec({UPLOADER!r})\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print('grew', (after - before) * 1024, flush=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(bucket.url), "whole", "64", "go"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    done = next(line for line in lines if line.startswith("done")).split()
    assert int(done[1]) == 64 * MIB
    info = bucket.head("whole")
    assert (info.size, info.etag) == (64 * MIB, done[2])
    grew = int(next(line for line in lines if line.startswith("grew")).split()[1])
    assert grew < 32 * MIB, f"peak memory grew by {grew / MIB:.0f} MiB for a 64 MiB value"
