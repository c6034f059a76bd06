"""Run a list of shell commands as tasks, N at a time (seed 000's TaskManager).

Run it from the repository's root::

    taskproc examples/shell_jobs.py -o /tmp/taskproc-shell -n 3
    taskproc examples/shell_jobs.py -o /tmp/taskproc-shell -n 3 --kwargs '{"commands": "my.txt"}'

The list of commands (``examples/commands.txt`` unless ``commands`` names another file) is read
at start, one command a line; ``-n`` sets how many run at once; the run ends when every command
has finished. Each command's stdout and stderr are kept in its task's folder::

    /tmp/taskproc-shell/shell_jobs.Command/results/<task id>/stdout.txt, stderr.txt

A command that exits non-zero fails its task; the others still run (``error_handling='lazy'``),
the report shows the command's last lines of output, and the exit status is 1. Run the same list
again and only the commands that failed, and lines you added, run. ``taskproc status
/tmp/taskproc-shell`` shows what is done, running and failed, from any shell.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from taskproc import DefaultCliArguments, FutureDict, Task

EXAMPLE_COMMANDS = Path(__file__).with_name("commands.txt")


class Command(Task):
    """One shell command. Its identity is the command line itself."""

    def __init__(self, command: str) -> None:
        self.command = command

    def run_task(self) -> str:
        done = subprocess.run(self.command, shell=True, capture_output=True, text=True)
        # What a task prints lands in its folder's stdout.txt / stderr.txt, on every executor.
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        done.check_returncode()
        return done.stdout


def read_commands(path: str | Path) -> list[str]:
    """The commands of a list file: one a line, without blank lines and # comments."""
    lines = (line.strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class Main(Task):
    """Every command of the list; prints each one's first line of output."""

    def __init__(self, commands: str = str(EXAMPLE_COMMANDS)) -> None:
        self.outputs = FutureDict({c: Command(c) for c in read_commands(commands)})

    def run_task(self) -> int:
        outputs = self.outputs.get_result()
        for command, output in outputs.items():
            first = output.splitlines()[0] if output else ""
            print(f"{command!r:40} -> {first}")
        print(f"{len(outputs)} commands done")
        return len(outputs)


# Each task only waits for its command, so threads serve as well as processes, and cheaper.
DefaultCliArguments(exec_type="thread", num_workers=2, error_handling="lazy").populate()
