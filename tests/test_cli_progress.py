"""Progress output of `taskproc FILE.py`: bars on a terminal, one summary line otherwise."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

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

    quiet = [*args, "--dont-show-progress"]
    proc = subprocess.run(quiet, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""


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
