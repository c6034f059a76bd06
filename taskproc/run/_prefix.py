"""Running a task through a prefix command (``srun ...``, ``jbsub -wait ...``, ``env X=1``).

The runner writes the job to the task's job file (`Store.prefix_files`) and starts
``<prefix argv> <python> -m taskproc.run.worker <job file>`` itself, without a shell, in a new
session (so the whole process group can be stopped), with stdin from /dev/null and the prefix's
own output in the store's prefix output files. The worker writes the outcome file. A thread per
running command waits for it, so prefixed tasks take no executor slot. Placeholders
``{task_name}``, ``{task_id}``, ``{task_dir}`` and ``{log_dir}`` are replaced by shell-quoted
values before the prefix is split into words.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from taskproc.run._job import Done, JobSpec, Outcome, deadline_file, outside_failure, timed_out
from taskproc.run._timeout import overran
from taskproc.store import Holder, Portable, PrefixJobs, Store, open_write, tail, write_atomic

PLACEHOLDER = re.compile(r"\{(task_name|task_id|task_dir|log_dir)\}")


def prefix_of(labels: Sequence[str], commands: Mapping[str, str]) -> str | None:
    """The prefix command of a task with these labels: that of the first of them that has
    one; an empty command means none, also over a command of a label further right."""
    first = next((commands[lb] for lb in labels if lb in commands), "")
    return first or None


def render(template: str, values: Mapping[str, str]) -> list[str]:
    """The prefix's words with placeholders replaced by shell-quoted values."""
    text = PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)]), template)
    return shlex.split(text)


def child_env() -> dict[str, str]:
    """The environment for the worker: this process's import path on PYTHONPATH."""
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class PrefixRun:
    """One task running through a prefix command."""

    def __init__(
        self,
        argv: list[str],
        spec: JobSpec,
        payload: tuple[tuple[bytes, ...], bytes],
        store: PrefixJobs,
        runner: tuple[Holder, float],
        on_done: Callable[[Outcome], None],
    ) -> None:
        """`runner`: the runner's claim and how long a silent heartbeat means it is dead, for
        the worker to watch (see `_watch.py`)."""
        self.spec = spec
        self._store = cast(Store, store)
        self._on_done = on_done
        files = store.prefix_files(spec.location)
        job_path = self._job_path = files.job
        self._outcome_path = files.outcome
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._outcome_path)  # left by an earlier run of this task
        job = (spec, *payload, cast(Portable, store).portable(), *runner)
        write_atomic(job_path, pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        self._err_path = files.stderr
        cmd = [*argv, sys.executable, "-m", "taskproc.run.worker", job_path]
        self._command = argv[0] if argv else ""
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            with (
                open_write(files.stdout, text=False) as out,
                open_write(self._err_path, text=False) as err,
            ):
                self.proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    env=child_env(),
                )
        except OSError as exc:
            on_done(
                outside_failure(
                    "PrefixError",
                    f"prefix command {argv[0]!r} cannot be started "
                    f"({exc.strerror or exc}); install it or fix the prefixes option",
                )
            )
            return
        threading.Thread(target=self._wait, name="taskproc-prefix", daemon=True).start()

    def _wait(self) -> None:
        if self.proc is None:
            return
        status = self.proc.wait()
        self._on_done(self._outcome(status))

    def _outcome(self, status: int) -> Outcome:
        try:
            with open(self._outcome_path, "rb") as f:
                outcome: Outcome = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass
        else:
            if isinstance(outcome, Done):  # a failed job's files stay, to rerun it by hand
                for path in (self._outcome_path, self._job_path):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            return outcome
        if overran(deadline_file(self._store, self.spec.location)):
            return timed_out(self.spec, self._store)
        if status < 0:
            what = f"was killed by signal {signal.Signals(-status).name}"
        elif status == 127:
            what = "exited with status 127 (command not found?)"
        else:
            what = f"exited with status {status}"
        message = (
            f"prefix command {self._command!r} {what} before the task finished; see "
            f"{self._err_path}"
        )
        return outside_failure("PrefixError", message, "", tail(self._err_path))

    def signal(self, signum: int) -> None:
        """Send `signum` to the command's process group (if it still runs)."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)

    def wait(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds for the command to end; True if it has."""
        proc = self.proc
        if proc is None:
            return True
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


def stop_all(runs: Sequence[PrefixRun], grace: float = 2.0) -> None:
    """Stop every run at once: SIGTERM their process groups, wait once (up to `grace` seconds)
    for all of them, then SIGKILL what is left and wait until it is gone. An interrupt while
    waiting (a second Ctrl-C) kills what is left at once; it is raised again once every
    command is gone."""
    for run in runs:
        run.signal(signal.SIGTERM)
    interrupted: BaseException | None = None
    deadline = time.monotonic() + grace
    try:
        for run in runs:
            run.wait(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt as exc:
        interrupted = exc
    for run in runs:
        run.signal(signal.SIGKILL)
    for run in runs:
        run.wait(None)
    if interrupted is not None:
        raise interrupted
