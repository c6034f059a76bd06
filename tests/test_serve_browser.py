"""`taskproc serve` in a real browser (Debian's chromium through playwright): the page follows
runs that other processes make, as a person watching it would see it.

Runs here are `taskproc gated.py` processes whose tasks wait for a file (their gate) and
print a line every 50 ms while they wait: the test opens gates and watches the page, so
nothing depends on how fast the machine is, except the page's own promise to show a change
within 2 s while a run is live.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bigcache import fill_cache, put_task
from headless import CHROMIUM, NEEDS_CHROMIUM, launch

from taskproc.store import LocalStore
from taskproc.views import DashboardServer, serve

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NEEDS_CHROMIUM)

TASKPROC = str(Path(sys.executable).with_name("taskproc"))
LIVE = 2.0  # seconds within which the page shows a change while a run is live
SLACK = 1.5  # what a loaded 2-core CI machine may add to that

GATED = """
import os
import time
from taskproc import Task

GATES = os.environ["GATES"]

class Step(Task):
    def __init__(self, i: int, tag: str = ""):
        self.i = i
        self.tag = tag

    def run_task(self) -> int:
        gate = os.path.join(GATES, f"{self.tag}{self.i}")
        n = 0
        while not os.path.exists(gate):
            print(f"tick {n} <b>not bold</b>", flush=True)
            n += 1
            time.sleep(0.05)
        if os.path.exists(gate + ".fail"):
            raise ValueError(f"step {self.i} was told to fail")
        return self.i

class Main(Task):
    def __init__(self, n: int = 4, tag: str = ""):
        self.steps = [Step(i, tag) for i in range(n)]

    def run_task(self) -> int:
        return sum(s.get_result() for s in self.steps)
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p, tmp_path_factory.mktemp("profile"))
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    try:
        yield pg
    finally:
        context.close()
    assert not errors, errors  # no script error on any page


@contextlib.contextmanager
def serving(cache: Path) -> Iterator[DashboardServer]:
    import threading

    server = serve(LocalStore(cache))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.stop()
        thread.join(10)


@pytest.fixture
def gated(tmp_path: Path) -> Path:
    (tmp_path / "gated.py").write_text(textwrap.dedent(GATED))
    (tmp_path / "gates").mkdir()
    return tmp_path


@contextlib.contextmanager
def running(
    folder: Path, n: int, tag: str = "", workers: int = 2
) -> Iterator[subprocess.Popen[str]]:
    """`taskproc gated.py` on folder/cache in the background, stopped however the test ends."""
    kwargs = json.dumps({"n": n, "tag": tag})
    args = [TASKPROC, "gated.py", "-o", "cache", "-t", "thread", "-n", str(workers)]
    args += ["-e", "lazy", "--kwargs", kwargs, "--dont-show-progress"]
    env = dict(os.environ, GATES=str(folder / "gates"))
    proc = subprocess.Popen(
        args, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def open_gates(folder: Path, *names: str) -> None:
    for name in names:
        (folder / "gates" / name).touch()


def wait_cache(folder: Path) -> Path:
    cache = folder / "cache"
    deadline = time.monotonic() + 30
    while not (cache / ".taskproc" / "runs").is_dir() or not os.listdir(
        cache / ".taskproc" / "runs"
    ):
        assert time.monotonic() < deadline, "the run left no live record"
        time.sleep(0.05)
    return cache


def left_text(page: Any, runner: int = 0) -> str:
    return str(page.locator("#runs .run .left").nth(runner).inner_text())


def seconds_until(page: Any, expression: str, arg: Any = None, timeout: float = 15) -> float:
    """How long until `expression` holds in the page."""
    begin = time.monotonic()
    page.wait_for_function(expression, arg=arg, timeout=timeout * 1000, polling=50)
    return time.monotonic() - begin


def test_counts_move_while_a_run_goes_on(gated: Path, page: Any) -> None:
    with running(gated, 6) as proc:
        cache = wait_cache(gated)
        with serving(cache) as server:
            page.goto(server.url)
            page.wait_for_selector("#runs .run .left", timeout=15000)
            assert page.locator("#runs .run .left").inner_text() == "7 of 7 left"
            lags = []
            for i, left in ((0, 6), (1, 5), (2, 4)):
                time.sleep(1.2)  # the record was just written: the worst moment for a change
                open_gates(gated, str(i))
                lags.append(
                    seconds_until(
                        page,
                        "t => document.querySelector('#runs .run .left')?.textContent === t",
                        f"{left} of 7 left",
                    )
                )
            row = page.locator('#runs .run tr[data-name="gated.Step"] td')
            assert [row.nth(i).inner_text() for i in (1, 2)] == ["6", "3"]  # to run, done
            open_gates(gated, "3", "4", "5")
            assert proc.wait(60) == 0
            seconds_until(page, "() => document.querySelectorAll('#runs .run').length === 0")
            page.wait_for_selector("#history tr >> nth=1")
    print(f"page shows a change {', '.join(f'{s:.2f}' for s in lags)} s after it happens")
    assert max(lags) < LIVE + SLACK and sorted(lags)[1] < LIVE, lags


def test_a_failure_appears_with_its_traceback(gated: Path, page: Any) -> None:
    with running(gated, 2) as proc:
        cache = wait_cache(gated)
        with serving(cache) as server:
            page.goto(server.url)
            page.wait_for_selector("#runs .run", timeout=15000)
            assert page.locator("#failures .failure").count() == 0
            open_gates(gated, "1.fail", "1")
            seconds_until(page, "() => document.querySelectorAll('#failures .failure').length")
            failure = page.locator("#failures .failure").first
            assert "ValueError: step 1 was told to fail" in failure.inner_text()
            seconds_until(
                page,
                "() => document.querySelector('#failures .traceback')?.textContent"
                "?.includes('raise ValueError')",
            )
            assert str(cache) in failure.inner_text()  # its folder
            open_gates(gated, "0")
            assert proc.wait(60) == 1


def test_a_tasks_log_grows_on_its_page(gated: Path, page: Any) -> None:
    with running(gated, 1) as proc:
        cache = wait_cache(gated)
        with serving(cache) as server:
            # The overview open first, as a person gets to a task: its polls keep the board
            # scanning (with nobody looking, a scan that came before the task's claim is the
            # last for a minute).
            page.goto(server.url)
            deadline = time.monotonic() + 15
            while not (
                keys := [k for k in server.board.snapshot.index if k.startswith("gated.Step/")]
            ):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            offsets: list[int] = []
            page.on(
                "request",
                lambda r: (
                    offsets.append(int(r.url.rsplit("offset=", 1)[1]))
                    if "/api/log" in r.url and "stream=stdout" in r.url
                    else None
                ),
            )
            page.goto(server.url + "#/task/" + keys[0])
            seconds_until(
                page, "() => document.querySelector('#log-stdout')?.textContent?.includes('tick 3')"
            )
            first = len(page.locator("#log-stdout").inner_text())
            seconds_until(
                page,
                "n => document.querySelector('#log-stdout')?.textContent?.length > n + 200",
                first,
            )
            assert page.locator("#task-state .state").inner_text() == "running"
            # The log is read from where the page left off, never whole again.
            assert (
                offsets[0] == -1 and all(b > 0 for b in offsets[1:]) and offsets == sorted(offsets)
            ), offsets
            assert "<b>not bold</b>" in page.locator("#log-stdout").inner_text()
            open_gates(gated, "0")
            assert proc.wait(60) == 0


def test_two_runners_on_one_cache_are_shown_at_once(gated: Path, page: Any, tmp_path: Path) -> None:
    with running(gated, 3, tag="a") as first:
        wait_cache(gated)
        with running(gated, 2, tag="b") as second:
            with serving(gated / "cache") as server:
                page.goto(server.url)
                seconds_until(page, "() => document.querySelectorAll('#runs .run').length === 2")
                runners = page.locator("#runs .run")
                texts = sorted(runners.nth(i).inner_text() for i in range(2))
                assert "3 of 3 left" in texts[0] and "4 of 4 left" in texts[1], texts
                open_gates(gated, "a0", "b0")
                seconds_until(
                    page,
                    "() => [...document.querySelectorAll('#runs .run .left')]"
                    ".map(e => e.textContent).sort().join() === '2 of 3 left,3 of 4 left'",
                )
                page.wait_for_selector('#graph .node[data-name="gated.Step"]')
                shot = tmp_path / "dashboard.png"
                page.screenshot(path=str(shot), full_page=False)
                if os.environ.get("DASHBOARD_PNG"):  # to refresh the README's picture
                    shutil.copy(shot, os.environ["DASHBOARD_PNG"])
                open_gates(gated, "a1", "a2", "b1")
                assert second.wait(60) == 0
        assert first.wait(60) == 0


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    """A dashboard of a cache of 100,000 stored tasks (made through the store, not run),
    its first scan done."""
    cache = tmp_path_factory.mktemp("big") / "cache"
    fill_cache(cache, 100_000, failed=5)
    with serving(cache) as server:
        deadline = time.monotonic() + 300
        while not server.board.snapshot.complete:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield server


def test_a_cache_of_100000_tasks_opens_in_under_2_seconds(big: DashboardServer, page: Any) -> None:
    begin = time.monotonic()
    page.goto(big.url)
    page.wait_for_selector("body[data-ready=scanned]", timeout=10000)
    node = page.locator('#graph .node[data-name="big.Clean"]')
    opened = time.monotonic() - begin
    assert "big.Clean ×100000" in node.inner_text()
    assert "99995 done, 5 failed" in node.inner_text()
    print(f"the page of a 100,000-task cache opened in {opened:.2f} s")
    assert opened < 2.0
    assert page.locator("#failures .failure").count() == 5
    node.click()
    page.wait_for_selector("#tasks tr[data-key]")
    assert page.locator("#tasks tr[data-key]").count() == 50  # a page, never 100,000 rows
    assert "page 1 of 2000" in page.locator("#tasks .pager").inner_text()
    assert page.locator("#tasks tr[data-key] .state").first.inner_text().startswith("failed")
    page.locator("#tasks button", has_text="next").click()
    page.wait_for_function(
        "() => document.querySelector('#tasks .pager')?.textContent.includes('page 2 of')"
    )
    assert page.evaluate("document.getElementsByTagName('*').length") < 3000


def test_hostile_names_arguments_and_logs_are_shown_as_text(tmp_path: Path, page: Any) -> None:
    hostile = '<img src=x onerror="window.pwned=1">'
    cache = tmp_path / "cache"
    store = LocalStore(cache)
    store.ensure()
    name = f"evil.{hostile}"  # a folder name the cache lists, whoever made it
    traceback = f"Traceback (most recent call last):\nValueError: {hostile}\n"
    put_task(store, name, "a" * 32, "{}", error=traceback)
    put_task(store, name, "b" * 32, "{}", value=1)
    args = json.dumps({"s": f"</script><script>window.pwned=2</script>{hostile}"})
    error = "Traceback (most recent call last):\nValueError: x\n"
    loc = put_task(store, "evil.Args", "c" * 32, args, error=error)
    Path(store.output_files(loc)[0]).write_text(f"<script>window.pwned=3</script>{hostile}\n")
    with serving(cache) as server:
        page.goto(server.url)
        seconds_until(page, "() => document.querySelectorAll('#failures .traceback').length == 2")
        body = page.locator("body").inner_text()
        assert f"ValueError: {hostile}" in body and f"{name} ×2" in body
        page.goto(server.url + "#/task/" + urllib.parse.quote(f"evil.Args/{'c' * 32}", safe=""))
        seconds_until(
            page, "() => document.querySelector('#log-stdout')?.textContent?.includes('pwned=3')"
        )
        body = page.locator("body").inner_text()
        assert "</script><script>window.pwned=2</script>" in body  # the arguments, as text
        assert f"<script>window.pwned=3</script>{hostile}" in body  # the log, as text
        assert page.evaluate("window.pwned") is None
        assert page.evaluate("document.querySelectorAll('img, main script').length") == 0
