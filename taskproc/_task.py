"""`Task`, the class users subclass: the engine's `TaskBase` plus the entry points that run it.

`run_graph` and `cli` reach the run loop and the command line, which sit above the task model;
defining them here keeps every import pointing down (see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from taskproc.model import HasRunTask, TaskBase

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from taskproc.cli import DefaultCliArguments
    from taskproc.run import ErrorHandling, RunHooks
    from taskproc.upkeep import AcceptReport, GcReport
    from taskproc.views import Why

R = TypeVar("R")


class Task(TaskBase):
    """Base class of tasks. Subclasses declare upstream tasks as attributes in ``__init__``
    and compute their result in ``run_task``.

    Class options: ``task_label`` (str or sequence of str), ``task_compress_level`` (0-9,
    default 9), ``task_version`` (change it to invalidate cached results), ``task_retries``,
    ``task_retry_delay`` (seconds), ``task_timeout`` (seconds), ``task_requires`` (the
    installed distributions whose version is part of the task's code identity, e.g.
    ``('numpy',)``; see docs/freshness.md) and ``task_resources`` (values for ``{key}`` in
    prefix templates, e.g. ``{'mem': '4G', 'cpus': 2}``; see docs/cluster.md).
    """

    task_name: ClassVar[str] = "taskproc.Task"

    def run_graph(
        self: HasRunTask[R],
        *,
        executor: Executor | None = None,
        rate_limits: Mapping[str, int] | None = None,
        prefixes: Mapping[str, str] | None = None,
        batch_sizes: Mapping[str, int] | None = None,
        batch_seconds: Mapping[str, float] | None = None,
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
        the prefixes of the task's labels further right). `batch_sizes` lets one prefix
        command run up to that many ready tasks of a label, one after another, each still its
        own task (the label's rate limit then counts commands); `batch_seconds` stops filling
        a batch once its tasks' recorded times would pass that many seconds (see
        docs/cluster.md). `error_handling`:
        ``'immediate'`` stops at the first failure, ``'eager'`` starts nothing new after one,
        ``'lazy'`` runs everything that does not depend on a failed task (and the tasks that
        tolerate the failure, with `allow_failed`). Failures are raised
        as an ``ExceptionGroup`` of `FailedTaskError`. ``stats['stats']`` maps each task name
        to the number of its tasks executed in this run.
        """
        from taskproc.run import RunOptions, run  # here: `import taskproc` stays light

        options = RunOptions(
            executor=executor,
            rate_limits=rate_limits,
            prefixes=prefixes,
            batch_sizes=batch_sizes,
            batch_seconds=batch_seconds,
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

    def why(
        self,
        *tasks: str,
        detect_source_change: bool = True,
        force_entrypoint: bool = False,
    ) -> list[Why]:
        """Why each task of this task's graph would run in a run with these options, the first
        reason of each (see docs/freshness.md); nothing runs, nothing is written. `tasks` are
        task names, globs (``'pipe.*'``) or ``NAME/ID``; default: every task. Each `Why` has a
        one-line `summary`, a `kind` and the facts behind it (for code: what changed and a
        unified `diff`)."""
        from taskproc.views import why_report  # here: `import taskproc` stays light

        report = why_report(
            cast(TaskBase, self),
            tasks,
            detect_source_change=detect_source_change,
            force_entrypoint=force_entrypoint,
        )
        return list(report.whys)

    @classmethod
    def cli(
        cls, args: Sequence[str] | None = None, defaults: DefaultCliArguments | None = None
    ) -> None:
        """Run this task from the command line (see ``taskproc --help``)."""
        from taskproc.cli import run_task_cli  # here: argparse only when the CLI is used

        run_task_cli(cls, args, defaults)


def accept_code(root: Task, *tasks: str, dry_run: bool = False) -> AcceptReport:
    """``taskproc accept`` in Python: take the current code as matching the stored results of
    the tasks of `root`'s graph that `tasks` select (names, globs, NAME/ID; default: all),
    without running anything. Tasks whose arguments, upstream results or task_version changed
    are refused, with the reason. See docs/freshness.md."""
    from taskproc.upkeep import accept_code as accept

    return accept(root, tasks, dry_run=dry_run)


def gc_cache(*roots: Task, keep_recent: float | None = None, dry_run: bool = False) -> GcReport:
    """``taskproc gc`` in Python: delete every stored task of the roots' cache that none of
    the roots' graphs reaches (each root built in a `Graph` on that cache, with its own
    arguments), except tasks a live runner holds and, with `keep_recent`, tasks finished in
    the last that many days. Returns counts and bytes per task name. See docs/freshness.md."""
    from taskproc.upkeep import gc_cache as gc

    return gc(roots, keep_recent=keep_recent, dry_run=dry_run)
