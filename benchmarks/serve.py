"""What `taskproc serve` costs: the server's CPU while a page polls a 100,000-task cache, and
the fan-in benchmark with a dashboard page open on its cache against without, A/B in one run.

    python benchmarks/serve.py [--tasks 100000] [--seconds 240] [--fanin 10000] [--rounds 5]

Needs Debian's chromium and playwright (the dev extra). Prints its figures; writes nothing
outside a temporary folder. The goals (issue #22): server CPU <= 5% of a core while a page
polls; the fan-in with a page open within 5% of without.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' cache filler and chromium launcher

from bigcache import fill_cache  # noqa: E402
from headless import CHROMIUM, launch  # noqa: E402

TASKPROC = str(Path(sys.executable).with_name("taskproc"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@contextmanager
def server(cache: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [TASKPROC, "serve", str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" at ")[1].split()[0]
        yield proc, url
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)


@contextmanager
def page_on(url: str, profile: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, profile)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            begin = time.monotonic()
            page.goto(url)
            page.wait_for_selector("body[data-ready]", timeout=600_000)
            page.opened = time.monotonic() - begin
            yield page
        finally:
            browser.close()


def cpu_while_polling(work: Path, tasks: int, seconds: float) -> None:
    cache = work / "big"
    begin = time.monotonic()
    fill_cache(cache, tasks, failed=5)
    print(f"made a cache of {tasks} tasks in {time.monotonic() - begin:.1f} s")
    with server(cache) as (proc, url):
        begin = time.monotonic()
        with urllib.request.urlopen(url + "api/status", timeout=600) as r:
            json.loads(r.read())  # answered once the first scan is in
        print(f"first scan done {time.monotonic() - begin:.1f} s after start")
        with page_on(url, work / "profile") as page:
            page.wait_for_selector("body[data-ready=scanned]")
            print(f"the page opened in {page.opened:.2f} s (server warm)")
            start, at = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            used = cpu_seconds(proc.pid) - start
            spent = time.monotonic() - at
            scans = page.evaluate("document.getElementById('scan').textContent")
    print(
        f"server CPU while a page polled the {tasks}-task cache for {spent:.0f} s: "
        f"{used:.2f} s = {100 * used / spent:.1f}% of a core (goal <= 5%); last: {scans}"
    )


def fanin_once(work: Path, n: int) -> float:
    """Seconds of one fan-in of `n` tasks on 2 threads (the suite's workload), fresh cache."""
    script = ROOT / "benchmarks" / "workloads" / "wl_taskproc.py"
    params = json.dumps({"n": n, "executor": "thread", "workers": 2})
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{script.parent}")
    out = subprocess.run(
        [sys.executable, str(script), "fanin", "--params", params, "--work", str(work)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    line = [x for x in out.splitlines() if x.startswith("BENCH_RESULT ")][-1]
    return float(json.loads(line.split(" ", 1)[1])["time_s"])


def fanin_ab(work: Path, n: int, rounds: int) -> None:
    from taskproc.store import LocalStore

    times: dict[str, list[float]] = {"without": [], "with page": []}
    for r in range(rounds):
        for mode in ("without", "with page") if r % 2 == 0 else ("with page", "without"):
            run = work / f"fanin-{r}-{mode.replace(' ', '')}"
            LocalStore(run / "cache").ensure()
            if mode == "without":
                times[mode].append(fanin_once(run, n))
                continue
            with server(run / "cache") as (_, url), page_on(url, work / "profile"):
                times[mode].append(fanin_once(run, n))
    a, b = statistics.median(times["without"]), statistics.median(times["with page"])
    print(
        f"fan-in of {n} tasks on 2 threads, median of {rounds}: without a page {a:.2f} s "
        f"({n / a:.0f} tasks/s), with a dashboard page open {b:.2f} s ({n / b:.0f} tasks/s): "
        f"{100 * (b / a - 1):+.1f}% (goal within 5%)"
    )
    print("  runs:", {k: [round(x, 2) for x in v] for k, v in times.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--fanin", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-fanin", action="store_true")
    args = parser.parse_args()
    if CHROMIUM is None:
        raise SystemExit("needs chromium: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_fanin:
            fanin_ab(work, args.fanin, args.rounds)
        if not args.skip_cpu:
            cpu_while_polling(work, args.tasks, args.seconds)


if __name__ == "__main__":
    main()
