"""`taskproc serve`: the dashboard's HTTP endpoints, its safety, and its cost (no browser)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from taskproc import Graph, Task
from taskproc.cli._main import main
from taskproc.store import LocalStore, Store, StoredTask
from taskproc.views import DashboardServer, serve
from taskproc.views import _board as board_module
from taskproc.views._serve import LOG_CHUNK, load_page

TASKPROC = str(Path(sys.executable).with_name("taskproc"))


class Load(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        print(f"load {self.i}")
        return self.i


class Fail(Task):
    def __init__(self) -> None:
        self.up = Load(0)

    def run_task(self) -> int:
        raise ValueError("<b>boom</b>")


class Sum(Task):
    def __init__(self) -> None:
        self.parts = [Load(i) for i in range(3)]

    def run_task(self) -> int:
        return sum(p.get_result() for p in self.parts)


class Main(Task):
    def __init__(self) -> None:
        self.parts = [Load(i) for i in range(3)]
        self.sum = Sum()
        self.bad = Fail()

    def run_task(self) -> int:
        return sum(p.get_result() for p in self.parts)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache where three Loads and their Sum succeeded and Fail failed (Main never ran)."""
    cache = tmp_path_factory.mktemp("served") / "cache"
    with Graph(str(cache)), ThreadPoolExecutor(2) as ex:
        with pytest.raises(Exception, match="1 task failed"):
            Main().run_graph(executor=ex, error_handling="lazy")
    return cache


@contextlib.contextmanager
def serving(store: Store) -> Iterator[DashboardServer]:
    """A dashboard server on a free loopback port, stopped however the test ends."""
    server = serve(store)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.board.snapshot.complete:
            assert time.monotonic() < deadline, "the first scan did not end"
            time.sleep(0.01)
        yield server
    finally:
        server.shutdown()
        server.stop()
        thread.join(10)


def get(
    server: DashboardServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET (also for 3xx/4xx answers)."""
    request = urllib.request.Request(server.url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(server: DashboardServer, path: str) -> Any:
    status, _, body = get(server, path)
    assert status == 200, (path, status, body)
    return json.loads(body)


def key_of(server: DashboardServer, task: str) -> str:
    snap = server.board.snapshot
    for e in snap.entries:
        if server.board.task(e.key)["task"] == task:  # type: ignore[index]
            return e.key
    raise AssertionError(f"{task} not in the scan")


def test_api_status_is_what_status_json_prints(
    ran: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(ran), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    with serving(LocalStore(ran)) as server:
        served = get_json(server, "/api/status")
    assert printed.pop("time") <= served.pop("time")
    assert served == printed
    assert served["totals"]["failed"] == 1 and served["runs"] == []


def test_board_answers_304_until_something_changes(ran: Path) -> None:
    store = LocalStore(ran)
    with serving(store) as server:
        status, headers, body = get(server, "/api/board")
        etag = headers["ETag"]
        doc = json.loads(body)
        assert status == 200 and doc["overview"]["failure_count"] == 1
        names = [n["name"] for n in doc["overview"]["names"]]
        assert names == ["test_serve.Fail", "test_serve.Load", "test_serve.Sum"]
        assert doc["overview"]["edges"] == [["test_serve.Load", "test_serve.Sum"]]
        assert len(doc["live"]["history"]) == 1
        status, _, body = get(server, "/api/board", {"If-None-Match": etag})
        assert (status, body) == (304, b"")
        # A run appears (its runner has no heartbeat: a run that was killed).
        record = {"runner": "r1", "host": "h", "pid": 1, "started": 1.0, "updated": 2.0,
                  "finished": None, "task_names": {"m.A": {"to_run": 3, "done": 1}}}  # fmt: skip
        store.write_meta("runs/r1.json", json.dumps(record).encode())
        time.sleep(board_module.LIVE_TTL + 0.05)
        status, headers, body = get(server, "/api/board", {"If-None-Match": etag})
        assert status == 200 and headers["ETag"] != etag
        (run,) = json.loads(body)["live"]["runs"]
        assert (run["runner"], run["in_progress"], run["left"], run["total"]) == ("r1", False, 2, 3)
        store.delete_meta("runs/r1.json")


def test_tasks_come_in_pages_failures_first(ran: Path) -> None:
    with serving(LocalStore(ran)) as server:
        page = get_json(server, "/api/tasks?name=test_serve.Load&page=0")
        assert page["count"] == 3 and page["pages"] == 1
        assert {r["task"] for r in page["rows"]} == {f"test_serve.Load(i={i})" for i in range(3)}
        assert get_json(server, "/api/tasks?name=test_serve.Load&state=failed")["count"] == 0
        assert get(server, "/api/tasks?name=nope")[0] == 404


def test_a_task_page_has_its_traceback_and_links(ran: Path) -> None:
    with serving(LocalStore(ran)) as server:
        fail = key_of(server, "test_serve.Fail()")
        total = key_of(server, "test_serve.Sum()")
        loads = sorted(key_of(server, f"test_serve.Load(i={i})") for i in range(3))
        task = get_json(server, "/api/task?key=" + fail)
        assert task["state"] == "failed" and "<b>boom</b>" in task["traceback"]
        assert task["why"] == "it failed: ValueError: <b>boom</b>"
        assert not task["upstream_known"]  # the store keeps the links of results only
        task = get_json(server, "/api/task?key=" + total)
        assert [u["key"] for u in task["upstream"]] == loads and task["upstream_known"]
        assert task["upstream"][0]["state"] == "done"
        up = get_json(server, "/api/task?key=" + loads[0])
        assert [d["key"] for d in up["downstream"]] == [total]
        assert json.loads(up["args"]) == {"i": 0} and up["state"] == "done"
        assert "fresh" in up["why"]


def test_logs_are_text_read_by_byte_offset(ran: Path, tmp_path: Path) -> None:
    store = LocalStore(ran)
    with serving(store) as server:
        key = key_of(server, "test_serve.Load(i=1)")
        status, headers, body = get(server, f"/api/log?key={key}&stream=stdout&offset=0")
        assert status == 200 and body == b"load 1\n"
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Next-Offset"] == "7" and headers["X-Log-Size"] == "7"
        stdout = Path(store.output_files(store.locate(*key.split("/")))[0])
        with stdout.open("a") as f:
            f.write("more <script>x</script>\n")
        _, headers, body = get(server, f"/api/log?key={key}&stream=stdout&offset=7")
        assert body == b"more <script>x</script>\n" and headers["X-Log-Offset"] == "7"
        with stdout.open("a") as f:
            f.write("x" * (3 * LOG_CHUNK))
        _, headers, body = get(server, f"/api/log?key={key}&stream=stdout&offset=-1")
        size = int(headers["X-Log-Size"])
        assert len(body) == LOG_CHUNK and int(headers["X-Log-Offset"]) == size - LOG_CHUNK
        _, headers, body = get(server, f"/api/log?key={key}&stream=stdout&offset=0")
        assert len(body) == LOG_CHUNK  # a piece at a time, never the whole file
        assert get(server, f"/api/log?key={key}&stream=stdout&offset={size + 5}")[2][:7] == (
            b"load 1\n"  # past the end: the file was rewritten, so from its start
        )


def test_nothing_outside_the_cache_is_served(ran: Path, tmp_path: Path) -> None:
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(ran, cache, symlinks=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET\n")
    store = LocalStore(cache)
    loads = sorted((cache / "test_serve.Load" / "results").iterdir())
    (loads[0] / "stdout.txt").unlink()
    (loads[0] / "stdout.txt").symlink_to(secret)  # a log that is a link out of the cache
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stdout.txt").write_text("SECRET\n")
    linked = cache / "test_serve.Load" / "results" / ("f" * 32)
    linked.symlink_to(elsewhere, target_is_directory=True)  # a task folder that is a link out
    with serving(store) as server:
        assert "test_serve.Load/" + "f" * 32 in server.board.snapshot.index
        bad = [
            f"/api/log?key=test_serve.Load/{loads[0].name}&stream=stdout",
            f"/api/log?key=test_serve.Load/{'f' * 32}&stream=stdout",
            f"/api/log?key=test_serve.Load/{loads[1].name}&stream=../../../secret.txt",
            "/api/log?key=../../secret.txt&stream=stdout",
            "/api/log?key=test_serve.Load%2F..%2F..%2F..%2Fsecret.txt&stream=stdout",
            "/api/log?key=..%2F..&stream=stdout",
            f"/api/log?key=test_serve.Load/{loads[1].name}&stream=stdout&offset=x",
            "/api/task?key=..%2F..%2Fsecret.txt",
            "/api/task?key=test_serve.Load/..",
            "/api/tasks?name=..",
            "/api/tasks?name=..%2F..%2F",
            "/../secret.txt",
            "/%2e%2e/%2e%2e/secret.txt",
            "/..%2f..%2fsecret.txt",
            "//etc/passwd",
            "/api/../../secret.txt",
            "/dashboard.html",
        ]
        for path in bad:
            status, _, body = get(server, path)
            assert status == 404, path
            assert b"SECRET" not in body and b"root:" not in body, path
        ok = get(server, f"/api/log?key=test_serve.Load/{loads[1].name}&stream=stdout")
        assert ok[0] == 200 and ok[2] == b"load 1\n" or ok[2].startswith(b"load ")


def test_every_answer_is_guarded(ran: Path) -> None:
    with serving(LocalStore(ran)) as server:
        for path in ("/", "/api/board", "/api/status", "/nope"):
            _, headers, _ = get(server, path)
            policy = headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "connect-src 'self'" in policy, path
            assert "http" not in policy and "*" not in policy and "unsafe" not in policy, path
            assert headers["X-Content-Type-Options"] == "nosniff"
        host = server.url.split("//")[1].rstrip("/")
        assert get(server, "/", {"Host": "evil.example"})[0] == 403  # DNS rebinding
        assert get(server, "/", {"Host": host})[0] == 200
        request = urllib.request.Request(server.url + "api/board", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 405


def test_the_page_builds_no_markup_from_data_and_calls_no_one() -> None:
    page = load_page()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in page, sink
    urls = re.findall(r"https?://[^\s\"'`]+", page)
    assert urls == ["http://www.w3.org/2000/svg"]  # a namespace name, never fetched
    assert page.count("<script>") == 1 and page.count("<style>") == 1  # what the CSP allows


class CountingStore(LocalStore):
    """A cache folder that counts scans and metadata listings (and can make scans slow)."""

    __slots__ = ("scans", "listings", "busy")

    def __init__(self, root: Path, busy: float = 0.0) -> None:
        super().__init__(root)
        self.scans = 0
        self.listings = 0
        self.busy = busy

    def scan(self, names: Any, *, with_size: bool = False) -> list[StoredTask]:
        self.scans += 1
        end = time.thread_time() + self.busy
        while time.thread_time() < end:  # CPU time, as a large cache costs
            pass
        return super().scan(names, with_size=with_size)

    def list_meta(self, prefix: str) -> list[str]:
        self.listings += 1
        return super().list_meta(prefix)


def test_many_pages_cost_one_scan(ran: Path) -> None:
    store = CountingStore(ran)
    with serving(store) as server:
        scans, listings = store.scans, store.listings
        begin = time.monotonic()

        def page() -> None:
            for _ in range(10):
                assert get(server, "/api/board")[0] == 200

        threads = [threading.Thread(target=page) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spent = time.monotonic() - begin
        # 80 polls: the store's runs are read once per LIVE_TTL (two listings each: runs,
        # history), and nothing changed, so no scan.
        assert store.scans - scans <= 2  # the upstream names of a scan are a second call
        assert store.listings - listings <= 2 * (spent / board_module.LIVE_TTL + 2)


def test_scans_keep_to_their_share_of_the_cpu(ran: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With something changing all the time, a scan of S seconds of CPU is followed by 20 S
    without one."""
    monkeypatch.setattr(board_module, "MIN_GAP", 0.0)
    store = CountingStore(ran, busy=0.05)  # each scan: >= 50 ms of CPU
    board = board_module.Board(store)
    board.start()
    try:
        begin = time.monotonic()
        while time.monotonic() - begin < 2.5:
            board.looked_at()
            board._wake.set()  # as a live record that changes does
            time.sleep(0.01)
        scans = board.scans
    finally:
        board.stop()
    # 2.5 s at >= 1 s between scans: at most 3 (unthrottled, about 40)
    assert 1 <= scans <= 3, scans


# -- the command ---------------------------------------------------------------------------


def _tree(root: Path) -> list[tuple[str, int, float]]:
    return sorted(
        (str(p.relative_to(root)), p.lstat().st_size, p.lstat().st_mtime) for p in root.rglob("*")
    )


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TASKPROC, "serve", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stopped(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str, str]:
    try:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, out, err


def test_serve_prints_its_url_and_ctrl_c_leaves_nothing_behind(ran: Path) -> None:
    before = _tree(ran)
    proc = _start(str(ran), cwd=ran.parent)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:(\d+)/)", line)
        assert url, line
        with urllib.request.urlopen(url[1], timeout=10) as r:
            assert b"<title>taskproc</title>" in r.read()
        with urllib.request.urlopen(url[1] + "api/board", timeout=10) as r:
            assert json.loads(r.read())["live"]["history"]
    finally:
        status, _, err = _stopped(proc)
    assert status == 130, err
    assert _tree(ran) == before  # read-only: not a file written, not a time changed
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(url[2])), 2):
        pass  # the port is closed


def test_serve_warns_off_loopback(ran: Path) -> None:
    proc = _start(str(ran), "--host", "0.0.0.0", cwd=ran.parent)
    try:
        assert proc.stdout is not None
        assert "serving" in proc.stdout.readline()
    finally:
        _, _, err = _stopped(proc)
    assert "anyone who can reach it can read the cache" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere"], "no such folder"),
        (["."], "not a taskproc cache"),
        (["CACHE", "--port", "70000"], "must be a port number"),
        (["CACHE", "--port", "x"], "must be a port number"),
    ],
)
def test_serve_refuses_bad_input_in_one_line(
    ran: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", *(str(ran) if a == "CACHE" else a for a in args)]
    with contextlib.suppress(SystemExit):
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_serve_refuses_a_port_in_use(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(ran), "--port", str(port)]) == 2
    assert "pick another --port" in capsys.readouterr().err


def test_output_is_served_through_the_store_where_it_is_no_local_file(tmp_path: Path) -> None:
    """A store whose output is not a file on this machine (a bucket's worker wrote it
    elsewhere): the log comes through `Store.read_output`, chunk by chunk from the start."""
    from taskproc.store import Holder, MemoryStore, new_runner
    from taskproc.views._serve import LOG_CHUNK, _store_piece

    store = MemoryStore()
    loc = store.locate("m.T", "abc")
    lease = store.claim(loc, new_runner())
    assert not isinstance(lease, Holder)
    with lease:
        lease.start("{}", [], keep_output=True)
        Path(store.output_files(loc)[0]).write_bytes(b"x" * (LOG_CHUNK + 10))
    data, start, end = _store_piece(store, loc, "stdout", "-1") or (b"", -1, -1)
    assert (len(data), start, end) == (LOG_CHUNK, 0, LOG_CHUNK)
    assert _store_piece(store, loc, "stdout", str(LOG_CHUNK)) == (
        b"x" * 10,
        LOG_CHUNK,
        LOG_CHUNK + 10,
    )
    assert _store_piece(store, loc, "stderr", "0") is None


def test_a_log_that_is_a_link_is_not_read(tmp_path: Path) -> None:
    from taskproc.store import LocalStore

    store = LocalStore(tmp_path / "cache")
    loc = store.locate("m.T", "abc")
    os.makedirs(loc)
    (tmp_path / "secret").write_text("private")
    os.symlink(tmp_path / "secret", f"{loc}/stdout.txt")
    assert store.read_output(loc, "stdout") == b""
