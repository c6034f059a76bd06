"""A folder of ``*.task`` files, each one a task (seed 001's file-drop task queue).

A task file holds ``message;seconds``: its task prints the message and works for that many
seconds. Drop files into a folder and run::

    mkdir -p /tmp/inbox
    echo "I am the first task;2" > /tmp/inbox/1.task
    echo "this task will finish quickly;0" > /tmp/inbox/2.task
    taskproc examples/task_files.py -o /tmp/taskproc-files --kwargs '{"folder": "/tmp/inbox"}'

Add files and run the same command again: only the new files, and the files whose content
changed, run. Each task file is an ``InputFile``: its task reruns when, and only when, the
file's bytes change (a ``touch`` reruns nothing). From another shell, ``taskproc status
/tmp/taskproc-files`` shows which task files are running, done and failed, with the error of
each failure.

To keep running as files arrive, the way the seed's endless loop does, add ``--watch``::

    taskproc examples/task_files.py -o /tmp/taskproc-files --kwargs '{"folder": "/tmp/inbox"}' \
        --watch /tmp/inbox

It runs the graph, then waits; when files under ``/tmp/inbox`` change (a burst of them counts
as one change) it imports this file anew, so ``Main`` sees the new files, and runs again: new
and edited files run, the others come from the cache. Ctrl-C stops it (exit status 130) with every
finished result kept. Write a task file elsewhere and move it into the folder, so that it is
never seen half-written.

A malformed file fails its own task only: the others still run (``error_handling='lazy'``) and
the report names the file. Fix it and run again: its task reruns, because its file changed.
"""

from __future__ import annotations

import time
from pathlib import Path

from taskproc import DefaultCliArguments, Future, FutureDict, InputFile, Task


class TaskFile(Task):
    """One task file, an input: editing the file reruns its task, and nothing else does."""

    def __init__(self, file: Future[Path]) -> None:
        self.file = file

    def run_task(self) -> str:
        path = self.file.get_result()
        content = path.read_text()
        message, sep, seconds = content.strip().rpartition(";")
        if not sep:
            raise ValueError(f"{path.name}: expected 'message;seconds', got {content!r}")
        print(message)
        time.sleep(float(seconds))
        return message


class Main(Task):
    """Every ``*.task`` file of `folder`, in name order (name them to set the order)."""

    def __init__(self, folder: str = ".") -> None:
        files = sorted(Path(folder).glob("*.task"))
        self.messages = FutureDict({f.name: TaskFile(InputFile(f)) for f in files})

    def run_task(self) -> dict[str, str]:
        messages = self.messages.get_result()
        print(f"{len(messages)} task files done")
        return messages


# Several task files at once, each in its own process; a bad file does not stop the others.
DefaultCliArguments(num_workers=4, error_handling="lazy").populate()
