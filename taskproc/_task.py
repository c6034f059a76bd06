"""`Task`, the class users subclass: the engine's `TaskBase` plus the entry points that run it.

`run_graph` and `cli` reach the run loop and the command line, which sit above the task model;
defining them here keeps every import pointing down (see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from taskproc.model import HasRunTask, TaskBase

if TYPE_CHECKING:
    from taskproc.cli import DefaultCliArguments
    from taskproc.run import ErrorHandling, RunHooks

R = TypeVar("R")


class Task(TaskBase):
    """Base class of tasks. Subclasses declare upstream tasks as attributes in ``__init__``
    and compute their result in ``run_task``.

    Class options: ``task_label`` (str or sequence of str), ``task_compress_level`` (0-9,
    default 9), ``task_version`` (change it to invalidate cached results), ``task_retries``,
    ``task_retry_delay`` (seconds) and ``task_timeout`` (seconds).
    """

    task_name: ClassVar[str] = "taskproc.Task"

    def run_graph(
        self: HasRunTask[R],
        *,
        executor: Executor | None = None,
        rate_limits: Mapping[str, int] | None = None,
        prefixes: Mapping[str, str] | None = None,
        error_handling: ErrorHandling = "eager",
        show_progress: bool = False,
        detect_source_change: bool = False,
        force_entrypoint: bool = False,
        max_workers: int | None = None,
        log_level: int | str | None = None,
        hooks: Sequence[RunHooks] = (),
        verbose_stats: bool = False,
    ) -> tuple[R, dict[str, Any]]:
        """Run this task after every stale upstream task; return ``(result, stats)``.

        `executor` defaults to a process pool of `max_workers` (default: one per core).
        `log_level` sets the logging level in worker processes (e.g. ``'INFO'``); `hooks`
        receive progress events (see `RunHooks`); `verbose_stats` (from taskproc 0.25) prints
        a summary line at the end.
        `rate_limits` caps how many tasks carrying a label run at once; `prefixes` runs the
        tasks carrying a label through a command (``'srun -p gpu'``; ``''``: no prefix, over
        the prefixes of the task's labels further right). `error_handling`:
        ``'immediate'`` stops at the first failure, ``'eager'`` starts nothing new after one,
        ``'lazy'`` runs everything that does not depend on a failed task. Failures are raised
        as an ``ExceptionGroup`` of `FailedTaskError`. ``stats['stats']`` maps each task name
        to the number of its tasks executed in this run.
        """
        from taskproc.run import RunOptions, run  # here: `import taskproc` stays light

        options = RunOptions(
            executor=executor,
            rate_limits=rate_limits,
            prefixes=prefixes,
            error_handling=error_handling,
            show_progress=show_progress or verbose_stats,
            detect_source_change=detect_source_change,
            force_entrypoint=force_entrypoint,
            max_workers=max_workers,
            log_level=log_level,
            hooks=tuple(hooks),
        )
        result, stats = run(cast(TaskBase, self), options)
        return cast(R, result), stats

    @classmethod
    def cli(
        cls, args: Sequence[str] | None = None, defaults: DefaultCliArguments | None = None
    ) -> None:
        """Run this task from the command line (see ``taskproc --help``)."""
        from taskproc.cli import run_task_cli  # here: argparse only when the CLI is used

        run_task_cli(cls, args, defaults)
