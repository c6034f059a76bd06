"""Progress output of `taskproc FILE.py`: bars on a terminal, one summary line otherwise."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

from taskproc.run import ProgressBars, TaskState

TASKPROC = str(Path(sys.executable).with_name("taskproc"))

PIPE = """
from taskproc import Task

class Square(Task):
    def __init__(self, x: int):
        self.x = x

    def run_task(self) -> int:
        return self.x * self.x

class Fails(Task):
    def run_task(self) -> int:
        raise RuntimeError("no")

class Main(Task):
    def __init__(self, fail: bool = False):
        self.squares = [Square(i) for i in range(3)]
        self.fails = [Fails()] if fail else []

    def run_task(self) -> int:
        return sum(s.get_result() for s in self.squares)
"""


def run_on_pty(args: list[str], cwd: Path, rows: int, cols: int) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pseudo-terminal of the given size."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_not_a_terminal_gives_one_summary_line(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(textwrap.dedent(PIPE))
    args = [TASKPROC, "pipe.py", "-o", "cache"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("taskproc: 4 done, 0 cached, 0 failed in ")
    assert "\r" not in proc.stderr and "%|" not in proc.stderr

    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.stderr.startswith("taskproc: 1 done, 3 cached, 0 failed in ")

    quiet = [*args, "--dont-show-progress"]  # no bars; the summary line stays
    proc = subprocess.run(quiet, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stderr.startswith("taskproc: 1 done, 3 cached, 0 failed in "), proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_terminal_shows_a_bar_per_task_name(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(textwrap.dedent(PIPE))
    status, out = run_on_pty([TASKPROC, "pipe.py", "-o", "cache"], tmp_path, 30, 120)
    assert status == 0, out
    assert "pipe.Square: 100%|" in out and "3/3" in out
    assert "pipe.Main: 100%|" in out and "1/1" in out
    assert "taskproc: 4 done, 0 cached, 0 failed in " in out


def test_terminal_bars_count_cached_and_failed(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(textwrap.dedent(PIPE))
    assert run_on_pty([TASKPROC, "pipe.py", "-o", "cache"], tmp_path, 30, 120)[0] == 0
    args = [TASKPROC, "pipe.py", "-o", "cache", "--kwargs", '{"fail": true}', "-e", "lazy"]
    # A pty that reports no size (as under some CI runners) still shows the bars.
    status, out = run_on_pty(args, tmp_path, 0, 0)
    assert status == 1, out
    assert "pipe.Fails: 100%|" in out and "1 failed" in out
    assert "taskproc: 0 done, 3 cached, 1 failed, 1 not run in " in out


# -- the bars' words and numbers ------------------------------------------------------------------


class Terminal(io.StringIO):
    """What tqdm writes to a terminal, kept."""

    def isatty(self) -> bool:
        return True

    def last(self, name: str) -> str:
        """The last drawing of the bar of `name`."""
        return [part for part in self.getvalue().split("\r") if part.startswith(name)][-1]


def test_tasks_past_the_workers_are_queued_not_running() -> None:
    screen = Terminal()
    bars = ProgressBars(screen, workers=4)
    bars.run_started({"a": (7, 0), "b": (2, 0)})
    for name in ["a"] * 7 + ["b"] * 2:  # the run gives 9 tasks to 4 workers
        bars.task_started(name)
    assert "4 running, 3 queued" in screen.last("a") and "2 queued" in screen.last("b")
    for _ in range(6):
        bars.task_finished("a", TaskState.DONE)
    bars.run_finished()  # each bar's last drawing (tqdm draws updates at most 10 times a second)
    assert "6/7" in screen.last("a") and "1 running]" in screen.last("a")
    assert "2 running]" in screen.last("b")  # finishing tasks let another name's run


def test_a_bars_clock_starts_with_its_first_task() -> None:
    """A task name whose one task runs at the end of a long run: its bar shows that task's
    time and rate, not the time since the run began."""
    screen = Terminal()
    bars = ProgressBars(screen, workers=2)
    bars.run_started({"late.Main": (1, 0)})
    bars._bars["late.Main"].start_t -= 1000  # the bar was drawn 1000 s ago (16:40)
    bars.task_started("late.Main")
    bars.task_finished("late.Main", TaskState.DONE)
    bars.run_finished()
    shown = screen.last("late.Main")
    assert "1/1" in shown and "16:4" not in shown, shown


def test_without_bars_only_the_summary_line() -> None:
    screen = Terminal()
    bars = ProgressBars(screen, bars=False, workers=1)
    bars.run_started({"a": (2, 1)})
    bars.task_started("a")
    bars.task_finished("a", TaskState.DONE)
    bars.run_finished()
    lines = screen.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "taskproc: 1 done, 1 cached, 0 failed, 1 not run"
    )
