"""Running tasks through a prefix command (``srun ...``, ``jbsub -wait ...``, ``env X=1``).

The runner writes each task's job to its job file (`Store.prefix_files`) and starts
``<prefix argv> <python> -m taskproc.run.worker <job file>...`` itself, without a shell, in a
new session (so the whole process group can be stopped), with stdin from /dev/null and the
prefix's own output in the first task's prefix output files. A thread per running command
waits for it, so prefixed tasks take no executor slot.

A command runs one task, or a batch of them (`batch_sizes`) one after another in one worker
process, each still its own task::

    runner                                        worker (python -m taskproc.run.worker)
      claim task 1, hand the claim over ─ job 1 ─> take the claim up, run, commit, outcome 1
      job 2 .. job n (not claimed) ─────────────> claim task k in the runner's name when it
                                                  gets there, run, commit, outcome k
      waiter thread: each outcome file, as it <── one outcome file per task, in order
      appears ──> the round (at once: downstream tasks, `status`, other runners see it)
      command ends ──> the tasks left: the one running failed (its claim broken), the
                       rest not started (`NotStarted`: back to the queue, no attempt)

Only the first task is claimed before the launch, so that a command that cannot start or dies
at once fails that task, as a command of one task does; the others are claimed by the worker as
it reaches them, so a batch that waits in a queue or dies holds no claim on work it has not
begun, and another runner may take that work meanwhile (the worker then finds it held, or
done). Tasks run in order and each outcome is written before the next task starts, so when a
command ends, the first task without an outcome is the one that was running if its claim is
still the runner's, and every later one never started.

Placeholders ``{task_name}``, ``{task_id}``, ``{task_dir}``, ``{log_dir}`` and the task's
`task_resources` keys (``{mem}``) are replaced by shell-quoted values before the prefix is split
into words; ``${NAME}`` is left to the shell.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast

from taskproc.errors import ConfigError
from taskproc.model import PREFIX_PLACEHOLDERS, TaskBase
from taskproc.run._job import (
    Done,
    JobSpec,
    Outcome,
    deadline_file,
    load_outcome,
    outside_failure,
    timed_out,
)
from taskproc.run._timeout import overran
from taskproc.store import (
    Holder,
    Portable,
    PrefixFiles,
    PrefixJobs,
    Store,
    make_dirs,
    open_write,
    tail,
    write_atomic,
)

PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")
PER_TASK = frozenset({"task_id", "task_dir", "log_dir"})  # differ for every task
FIRST_POLL = 0.01  # seconds: how soon a batch's waiter first looks for an outcome file
LAST_POLL = 0.5  # seconds: the longest it waits between looks


def prefix_of(labels: Sequence[str], commands: Mapping[str, str]) -> str | None:
    """The prefix command of a task with these labels: that of the first of them that has
    one; an empty command means none, also over a command of a label further right."""
    first = next((commands[lb] for lb in labels if lb in commands), "")
    return first or None


def first_of(labels: Sequence[str], values: Mapping[str, float]) -> float | None:
    """The value of the first of `labels` that has one in `values` (batch sizes, budgets)."""
    return next((values[lb] for lb in labels if lb in values), None)


def placeholders(template: str) -> list[str]:
    """The names of the placeholders in a prefix template, in order."""
    return PLACEHOLDER.findall(template)


def render(template: str, values: Mapping[str, str]) -> list[str]:
    """The prefix's words with placeholders replaced by shell-quoted values."""
    text = PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)]), template)
    return shlex.split(text)


def missing_resource(template: str, resources: Iterable[tuple[str, str]]) -> str | None:
    """The first placeholder of `template` that neither taskproc nor `resources` fills."""
    known = {*PREFIX_PLACEHOLDERS, *(key for key, _ in resources)}
    return next((name for name in placeholders(template) if name not in known), None)


def check_prefixes(classes: Iterable[type[TaskBase]], commands: Mapping[str, str]) -> None:
    """ConfigError naming the task and the key if a task's prefix template uses a placeholder
    its `task_resources` does not define: before anything is submitted."""
    for cls in sorted(classes, key=lambda c: c.task_name):
        template = prefix_of(cls._tp_labels, commands)
        if template is None:
            continue
        key = missing_resource(template, cls._tp_resources)
        if key is not None:
            raise ConfigError.bad(
                "prefixes",
                f": the prefix {template!r} of {cls.task_name} uses {{{key}}}, which the task "
                f"does not define; add {key!r} to its task_resources (e.g. task_resources = "
                f"{{{key!r}: ...}}) or take it out of the prefix",
            )


def batchable(template: str) -> bool:
    """Whether tasks may share a command of this template: it names nothing that differs
    from task to task (``{task_id}``, ``{task_dir}``, ``{log_dir}``)."""
    return PER_TASK.isdisjoint(placeholders(template))


def child_env() -> dict[str, str]:
    """The environment for the worker: this process's import path on PYTHONPATH."""
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


@dataclass(frozen=True, slots=True)
class NotStarted:
    """A task of a batch whose command ended before the task started: it goes back to the
    queue, and no attempt counts."""


Report: TypeAlias = Outcome | NotStarted


class PrefixRun:
    """Tasks running through one prefix command, one after another (see the module note)."""

    def __init__(
        self,
        argv: list[str],
        jobs: Sequence[tuple[JobSpec, tuple[tuple[bytes, ...], bytes]]],
        store: PrefixJobs,
        runner: tuple[Holder, float],
        on_done: Callable[[int, Report, float], None],
        on_end: Callable[[], None],
    ) -> None:
        """`jobs`: each task's spec (the first with its claim handed over) and its pickled
        class and state. `runner`: the runner's claim and how long a silent heartbeat means it
        is dead, for the worker to watch (see `_watch.py`). `on_done(i, report, seconds)`
        hears of each task once, `on_end()` of the command's end after that."""
        self.specs = [spec for spec, _ in jobs]
        self._store = cast(Store, store)
        self._me = runner[0]
        self._on_done = on_done
        self._on_end = on_end
        self._files: list[PrefixFiles] = [store.prefix_files(s.location) for s in self.specs]
        self._reported = 0  # tasks reported, in order
        self._lock = threading.Lock()
        self._settled = False
        portable = cast(Portable, store).portable()
        for files, (spec, payload) in zip(self._files, jobs, strict=True):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(files.outcome)  # left by an earlier run of this task
            job = pickle.dumps((spec, *payload, portable, *runner), pickle.HIGHEST_PROTOCOL)
            try:
                write_atomic(files.job, job)
            except FileNotFoundError:  # a later task of a batch, not claimed: no folder yet
                make_dirs(os.path.dirname(files.job))
                write_atomic(files.job, job)
        self._err_path = self._files[0].stderr
        cmd = [*argv, sys.executable, "-m", "taskproc.run.worker", *(f.job for f in self._files)]
        self._command = argv[0] if argv else ""
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            with (
                open_write(self._files[0].stdout, text=False) as out,
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
            cause = outside_failure(
                "PrefixError",
                f"prefix command {argv[0]!r} cannot be started "
                f"({exc.strerror or exc}); install it or fix the prefixes option",
            )
            self._settle_with(cause)
            return
        threading.Thread(target=self._wait, name="taskproc-prefix", daemon=True).start()

    # -- the waiter thread ---------------------------------------------------------------

    def _wait(self) -> None:
        proc = cast(subprocess.Popen[bytes], self.proc)
        if len(self.specs) > 1:
            interval, last = FIRST_POLL, time.monotonic()
            while True:
                try:
                    proc.wait(interval)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if self._report_finished():
                    now = time.monotonic()  # the next task likely takes about as long
                    interval = min(max((now - last) / 4, FIRST_POLL), LAST_POLL)
                    last = now
                else:
                    interval = min(interval * 2, LAST_POLL)
        proc.wait()
        self.signal(signal.SIGKILL)  # a worker the command left behind must not go on
        self.settle()

    def _report_finished(self) -> bool:
        """Report the tasks whose outcome files have appeared, in order; True if any."""
        found = False
        with self._lock:
            while not self._settled and self._reported < len(self.specs):
                got = load_outcome(self._files[self._reported].outcome)
                if got is None:
                    break
                self._report(*got)
                found = True
        return found

    def _report(self, report: Report, seconds: float = 0.0) -> None:
        i = self._reported
        self._reported += 1
        files = self._files[i]
        if isinstance(report, Done):  # a failed job's files stay, to rerun it by hand
            for path in (files.outcome, files.job):
                with contextlib.suppress(OSError):
                    os.unlink(path)
        elif isinstance(report, NotStarted):
            with contextlib.suppress(OSError):
                os.unlink(files.job)
        self._on_done(i, report, seconds)

    def settle(self) -> None:
        """Once the command has ended: report every task not reported yet (see the module
        note), then the end. Called by the waiter thread, and by whoever stopped the command;
        only the first call does anything."""
        proc = self.proc
        status = proc.returncode if proc is not None else None
        if status is None:
            return
        self._report_finished()
        with self._lock:
            if self._settled:
                return
            if self._reported < len(self.specs):
                self._report(self._death(status))
            self._settle_with(None)

    def _settle_with(self, cause: Outcome | None) -> None:
        """Report the first task left as `cause` (if given) and the rest as not started."""
        self._settled = True
        if cause is not None and self._reported < len(self.specs):
            self._report(cause)
        while self._reported < len(self.specs):
            self._report(NotStarted())
        self._on_end()

    def _death(self, status: int) -> Report:
        """What came of the first task without an outcome, the command having ended."""
        i = self._reported
        spec = self.specs[i]
        if i > 0:  # the worker claims it in the runner's name once it gets there
            holder = self._store.read_claim(spec.location)
            if holder is None or not holder.same_runner(self._me):
                return NotStarted()
            self._store.break_claim(spec.location, holder, self._me)
        if overran(deadline_file(self._store, spec.location)):
            return timed_out(spec, self._store)
        if status < 0:
            what = f"was killed by signal {signal.Signals(-status).name}"
        elif status == 127:
            what = "exited with status 127 (command not found?)"
        else:
            what = f"exited with status {status}"
        left = len(self.specs) - i - 1
        batch = (
            f" (task {i + 1} of a batch of {len(self.specs)}; the {left} not started go back to "
            "the queue)"
            if len(self.specs) > 1
            else ""
        )
        message = (
            f"prefix command {self._command!r} {what} before the task finished{batch}; see "
            f"{self._err_path}"
        )
        return outside_failure("PrefixError", message, "", tail(self._err_path))

    # -- stopping ------------------------------------------------------------------------

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
    command is gone. Each run then settles (its tasks reported, the claims its worker left
    broken, the jobs of tasks not started removed)."""
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
    for run in runs:
        run.settle()
    if interrupted is not None:
        raise interrupted
