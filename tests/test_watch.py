"""``taskproc FILE.py -o CACHE --watch PATH``: run, then run again as files change, until Ctrl-C.

Each test runs the command in a subprocess of its own session and kills that session in a
`finally`, whatever happens; conditions are polled with a deadline, never slept on.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from taskproc.cli._watch import Changes

TASKPROC = str(Path(sys.executable).with_name("taskproc"))

PIPE = """
import os
import time
from pathlib import Path

from taskproc import FutureDict, Task


class Job(Task):
    def __init__(self, name: str, content: str) -> None:
        self.name = name
        self.content = content

    def run_task(self) -> str:
        with open(os.environ["RUNS_LOG"], "a") as log:  # one line per run of a job
            log.write(self.name + "\\n")
        if self.content == "slow":
            Path(os.environ["STARTED"]).touch()
            time.sleep(120)
        return self.content.upper()


class Main(Task):
    def __init__(self, folder: str = "inbox") -> None:
        files = sorted(Path(folder).glob("*.job"))
        self.jobs = FutureDict({f.name: Job(f.name, f.read_text()) for f in files})

    def run_task(self) -> dict[str, str]:
        return self.jobs.get_result()
"""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> float:
    """Poll `condition` until it holds; the seconds it took. Fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


class Watch:
    """A running ``taskproc pipe.py -o cache --watch ...`` and what it wrote."""

    def __init__(self, folder: Path, proc: subprocess.Popen[bytes]) -> None:
        self.folder = folder
        self.proc = proc

    def runs(self) -> list[str]:
        log = self.folder / "runs.log"
        return log.read_text().split() if log.exists() else []

    def stderr(self) -> str:
        return (self.folder / "stderr.txt").read_text(errors="replace")

    def watching(self) -> int:
        """How many times it has said it is waiting for changes."""
        return self.stderr().count("for changes (Ctrl-C to stop)")

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it (to the process group); the exit status."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=60)


@contextmanager
def watching(
    tmp_path: Path, *watch: str, args: tuple[str, ...] = (), pipe: str = PIPE
) -> Iterator[Watch]:
    (tmp_path / "pipe.py").write_text(textwrap.dedent(pipe))
    (tmp_path / "inbox").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "RUNS_LOG": str(tmp_path / "runs.log"),
        "STARTED": str(tmp_path / "started"),
    }
    command = [TASKPROC, "pipe.py", "-o", "cache", "-n", "2", *args, "--watch", *watch]
    with open(tmp_path / "stdout.txt", "wb") as out, open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=out, stderr=err, start_new_session=True
        )
    try:
        yield Watch(tmp_path, proc)
    finally:
        # Ctrl-C first, so that the runner stops its workers (they lead process groups of
        # their own); then SIGKILL whatever is left of the session.
        for sig, grace in ((signal.SIGINT, 30.0), (signal.SIGKILL, None)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


def test_a_file_dropped_while_watching_runs_within_seconds(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.job").write_text("first")
    with watching(tmp_path, "inbox") as w:
        wait_for(lambda: w.watching() == 1, "the first run")
        assert w.runs() == ["a.job"]
        (tmp_path / "inbox" / "b.job").write_text("second")
        took = wait_for(lambda: "b.job" in w.runs(), "the dropped file to run", timeout=10)
        wait_for(lambda: w.watching() == 2, "the second run to end")
        assert w.interrupt() == 130
    assert took < 10
    assert w.runs() == ["a.job", "b.job"]  # a.job came from the cache
    assert "1 changed; running again" in w.stderr()


def test_a_burst_of_files_runs_each_once(tmp_path: Path) -> None:
    names = [f"{i:03d}.job" for i in range(100)]
    with watching(tmp_path, "inbox") as w:
        wait_for(lambda: w.watching() == 1, "the first run")
        for name in names:
            (tmp_path / "inbox" / name).write_text(name)
        wait_for(lambda: set(w.runs()) == set(names), "every file to run", timeout=120)
        assert w.interrupt() == 130
    counts = collections.Counter(w.runs())
    assert counts == collections.Counter(names)  # each file ran once, none twice
    results = list((tmp_path / "cache" / "pipe.Job").glob("results/*/result.pkl.gz"))
    assert len(results) == 100


@pytest.mark.parametrize("when", ["waiting", "running"])
def test_ctrl_c_exits_130_and_keeps_every_finished_result(tmp_path: Path, when: str) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.job").write_text("first")
    with watching(tmp_path, "inbox") as w:
        wait_for(lambda: w.watching() == 1, "the first run")
        if when == "running":
            (tmp_path / "inbox" / "slow.job").write_text("slow")
            wait_for((tmp_path / "started").exists, "the slow job to start")
        assert w.interrupt() == 130
    assert "interrupted; finished results are kept" in w.stderr()
    assert not list((tmp_path / "cache").glob("*/results/*/claim"))  # claims released
    dry = subprocess.run(
        [TASKPROC, "pipe.py", "-o", "cache", "--dry-run", "--dont-force-entrypoint"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Nothing finished was lost: only the slow job that was stopped (and Main) would run.
    first = dry.stdout.splitlines()[0]
    if when == "waiting":
        assert first == "dry run: nothing to run; all 2 tasks are cached and fresh", dry.stdout
    else:
        assert first.startswith("dry run: 2 of 3 tasks would run (1 cached)"), dry.stdout


def test_sigterm_while_watching_exits_143(tmp_path: Path) -> None:
    with watching(tmp_path, "inbox") as w:
        wait_for(lambda: w.watching() == 1, "the first run")
        w.proc.terminate()
        assert w.proc.wait(timeout=60) == 143
    assert w.stderr().count("terminated; finished results are kept") == 1


def test_the_pipeline_file_is_imported_anew(tmp_path: Path) -> None:
    """Watching the pipeline file too: an edit runs the new code (a new task_version reruns
    every job)."""
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.job").write_text("first")
    with watching(tmp_path, "inbox", "pipe.py") as w:
        wait_for(lambda: w.watching() == 1, "the first run")
        source = (tmp_path / "pipe.py").read_text()
        edited = source.replace("class Job(Task):\n", "class Job(Task):\n    task_version = 2\n")
        (tmp_path / "pipe.py").write_text(edited)
        wait_for(lambda: w.runs() == ["a.job", "a.job"], "the job to run with the new code")
        wait_for(lambda: w.watching() == 2, "the second run to end")
        assert w.interrupt() == 130


def test_a_broken_edit_is_reported_and_watching_goes_on(tmp_path: Path) -> None:
    with watching(tmp_path, "inbox", "pipe.py") as w:
        wait_for(lambda: w.watching() == 1, "the first run")
        source = (tmp_path / "pipe.py").read_text()
        (tmp_path / "pipe.py").write_text(source + "\nraise RuntimeError('half-edited')\n")
        wait_for(lambda: w.watching() == 2, "the failed import to be reported")
        assert "pipe.py: importing it failed (RuntimeError: half-edited)" in w.stderr()
        (tmp_path / "pipe.py").write_text(source)
        (tmp_path / "inbox" / "a.job").write_text("first")
        wait_for(lambda: w.runs() == ["a.job"], "the fixed pipeline to run")
        assert w.interrupt() == 130


def test_changes_ignore_the_cache_folder(tmp_path: Path) -> None:
    """Every run writes into the cache: when it is inside a watched folder, that must not start
    another run."""
    changes = Changes([str(tmp_path)], ignore=[str(tmp_path / "cache")])
    try:
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "result.pkl.gz").write_bytes(b"x")
        (tmp_path / "cache2").mkdir()  # not the cache folder
        assert changes.wait() == {str(tmp_path / "cache2")}
    finally:
        changes.close()


def test_without_watchfiles_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskproc.errors import UsageError

    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles fails
    with pytest.raises(UsageError, match=r"pip install 'taskproc\[watch\]'"):
        Changes([str(tmp_path)])


WATCHED_PIPE = """
from taskproc import Task

import helpers


class Scaled(Task):
    def __init__(self, x: int) -> None:
        self.x = x

    def run_task(self) -> int:
        return helpers.scale(self.x)


class Main(Task):
    def __init__(self) -> None:
        self.scaled = Scaled(10)

    def run_task(self) -> int:
        print("RESULT", self.scaled.get_result())
        return self.scaled.get_result()
"""


def test_an_edited_helper_module_runs_as_edited_and_its_identity_is_its_own(
    tmp_path: Path,
) -> None:
    """``FACTOR = 2`` -> ``3`` in a watched helper module: the next round runs the new code
    (30, not 20), and what it stored is what a fresh process expects (nothing to rerun)."""
    (tmp_path / "helpers.py").write_text("FACTOR = 2\n\n\ndef scale(x):\n    return x * FACTOR\n")
    with watching(tmp_path, "helpers.py", args=("--dont-show-progress",), pipe=WATCHED_PIPE) as w:
        out = tmp_path / "stdout.txt"
        wait_for(lambda: "RESULT 20" in out.read_text(), "the first run")
        wait_for(lambda: w.watching() == 1, "the first run to end")
        (tmp_path / "helpers.py").write_text(
            "FACTOR = 3\n\n\ndef scale(x):\n    return x * FACTOR\n"
        )
        wait_for(lambda: "RESULT 30" in out.read_text(), "the edited helper to run")
        wait_for(lambda: w.watching() == 2, "the second run to end")
        assert w.interrupt() == 130
    assert "RESULT 20" not in out.read_text().split("RESULT 30")[1]
    dry = subprocess.run(
        [TASKPROC, "pipe.py", "-o", "cache", "--dry-run", "--dont-force-entrypoint"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.stdout.splitlines()[0].startswith("dry run: nothing to run"), dry.stdout


def test_the_watch_arguments_are_left_out_of_each_run() -> None:
    from taskproc.cli._main import _without_watch

    assert _without_watch(["p.py", "--watch", "a", "b", "-o", "c"]) == ["p.py", "-o", "c"]
    assert _without_watch(["p.py", "-o", "c", "--wat", "a"]) == ["p.py", "-o", "c"]
    assert _without_watch(["--watch=a", "p.py", "-n", "2"]) == ["p.py", "-n", "2"]
