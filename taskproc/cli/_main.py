"""The command line: ``taskproc FILE.py -o CACHE [options]``, ``Main.cli()``, and the
subcommands (`_commands.py`).

Exit status: 0 success, 1 a task failed, 2 bad usage or input, 130 Ctrl-C, 143 SIGTERM.
With ``--watch`` the command runs until Ctrl-C (130) or SIGTERM (143).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from taskproc.cli._commands import (
    accept_command,
    cache_command,
    gc_command,
    graph_command,
    serve_command,
    transfer_command,
    why_command,
)
from taskproc.cli._defaults import _DEFAULTS, DefaultCliArguments
from taskproc.cli._parse import (
    EXIT_FAILED,
    EXIT_INTERRUPT,
    EXIT_OK,
    EXIT_TERM,
    EXIT_USAGE,
    merge,
    run_parser,
)
from taskproc.cli._pipeline import (
    build_main,
    load_main,
    note_missing_cache,
    print_user_traceback,
    raised_inside,
)
from taskproc.cli._watch import Changes
from taskproc.errors import (
    PACKAGE_DIR,
    CodeChangedWarning,
    ConfigError,
    FailedTaskError,
    TaskprocError,
    UsageError,
)
from taskproc.model import TaskBase
from taskproc.run import ProgressBars, RunOptions, executor_kind, make_executor, run
from taskproc.views import dry_run_report

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "status": cache_command,
    "ls": cache_command,
    "clear": cache_command,
    "graph": graph_command,
    "why": why_command,
    "accept": accept_command,
    "gc": gc_command,
    "serve": serve_command,
    "push": transfer_command,
    "pull": transfer_command,
}
# How the command line spells each option of `RunOptions`, for its messages.
FLAGS = {
    "rate_limits": "--rate-limits",
    "prefixes": "--prefixes",
    "batch_sizes": "--batch-sizes",
    "batch_seconds": "--batch-seconds",
    "max_workers": "-n/--num-workers",
    "log_level": "-l/--loglevel",
    "error_handling": "-e/--error-handling",
    "exec_type": "-t/--exec-type",
}


def _show_output(task: TaskBase) -> None:
    """Print what the entry task printed (it was captured into its folder)."""
    store, loc = task._tp.store, task._tp_loc()
    for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
        text = store.read_output(loc, name, 0, 1 << 30).decode("utf-8", "replace")
        if text:
            stream.write(text if text.endswith("\n") else text + "\n")
            stream.flush()


def _report_failures(group: BaseExceptionGroup[Any]) -> None:
    for exc in group.exceptions:
        if isinstance(exc, FailedTaskError):
            print(f"\nFAILED {exc}", file=sys.stderr)
        else:
            print(f"\nFAILED {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"\ntaskproc: {len(group.exceptions)} task(s) failed", file=sys.stderr)


def run_options(opts: DefaultCliArguments) -> tuple[RunOptions, str]:
    """The options of a run from the command line, and the executor kind; checked before
    anything is built, each under its command-line name."""
    try:
        kind = executor_kind(opts.exec_type or "process")
        options = RunOptions(
            rate_limits=opts.rate_limits,
            prefixes=opts.prefixes,
            batch_sizes=opts.batch_sizes,
            batch_seconds=opts.batch_seconds,
            error_handling=opts.error_handling or "eager",
            show_progress=not opts.dont_show_progress,
            # without bars, the summary line still ends the run
            hooks=(ProgressBars(bars=False),) if opts.dont_show_progress else (),
            detect_source_change=not opts.disable_detect_source_change,
            force_entrypoint=not opts.dont_force_entrypoint,
            max_workers=opts.num_workers,
            log_level=opts.loglevel,
        )
    except ConfigError as exc:
        flag = FLAGS.get(exc.option)
        raise UsageError(f"{flag}{exc.rule}" if flag else str(exc)) from None
    if opts.scheduler and kind != "dask":
        raise UsageError("--scheduler goes with -t dask; add -t dask or drop --scheduler")
    return options, kind


def run_main(cls: type[TaskBase], opts: DefaultCliArguments) -> int:
    """Build `cls(**kwargs)` in a graph on the cache folder and run it."""
    options, kind = run_options(opts)
    task = build_main(cls, opts)
    if opts.dry_run:
        note_missing_cache(opts.cache_dir)
        report, caught = dry_run_report(
            task,
            detect_source_change=options.detect_source_change,
            force_entrypoint=options.force_entrypoint,
            labelled=options.labelled,
        )
        for message in caught:
            print(f"taskproc: warning: {message}", file=sys.stderr)
        print(report)
        return EXIT_OK
    if options.worker_log_level is not None:
        logging.basicConfig(
            level=options.worker_log_level, format="%(levelname)s %(name)s: %(message)s"
        )
    # The process pool is left to the run, which owns it and can stop its workers (and what
    # their tasks started) on Ctrl-C.
    executor = None if kind == "process" else make_executor(kind, opts.num_workers, opts.scheduler)
    try:
        run(task, options if executor is None else replace(options, executor=executor))
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    _show_output(task)
    return EXIT_OK


def watch_main(path: str, ns: argparse.Namespace, args: Sequence[str]) -> int:
    """``taskproc FILE.py --watch PATH ...``: run Main, then run again after each change under
    the paths, until Ctrl-C. Each run is a new process (``python -m taskproc`` with the same
    arguments but ``--watch``), so it runs the code as the files are now, every module of it,
    and the code identities it stores are those of that code (docs/design.md says why not
    reloading). Bad input in the first run is an error (exit 2); later, a failed run or a
    broken file is reported and watching goes on. Ctrl-C from the terminal reaches the run
    too (it keeps what finished); SIGTERM is passed on to it."""
    from taskproc.run import sigterm_as_exit  # here: the run layer's, as the run uses it

    cache_dir = ns.cache_dir
    if not cache_dir:  # set by the file itself (DefaultCliArguments): import it to know
        _, opts = load_main(path, ns)
        run_options(opts)
        cache_dir = opts.cache_dir
    command = [sys.executable, "-m", "taskproc", *_without_watch(args)]
    with sigterm_as_exit():
        changes = Changes(ns.watch, ignore=[cache_dir] if cache_dir else [])
        try:
            status = _watch_round(command)
            if status in (EXIT_USAGE, EXIT_INTERRUPT, EXIT_TERM):
                return status
            while True:
                shown = " ".join(ns.watch)
                print(f"taskproc: watching {shown} for changes (Ctrl-C to stop)", file=sys.stderr)
                changed = changes.wait()
                print(f"taskproc: {len(changed)} changed; running again", file=sys.stderr)
                status = _watch_round(command)
                if status in (EXIT_INTERRUPT, EXIT_TERM):
                    return status
        finally:
            changes.close()


def _watch_round(command: list[str]) -> int:
    """One run of ``--watch`` in a process of its own; its exit status. Ctrl-C of the
    terminal reaches it as well (same process group): it stops and keeps what finished, and
    its status says so. A SIGTERM of this process is passed on to it."""
    import subprocess

    proc = subprocess.Popen(command)
    stopped: BaseException | None = None
    try:
        while True:
            try:
                status = proc.wait()
                break
            except KeyboardInterrupt as exc:
                stopped = exc  # the run heard it too; its exit status tells how it ended
            except SystemExit as exc:
                if exc.code != EXIT_TERM:
                    raise
                stopped = exc
                proc.terminate()  # the run says it was terminated, and keeps what finished
    finally:
        if proc.poll() is None:  # an error here: the run stops the same way
            proc.terminate()
            proc.wait()
    if stopped is not None and status not in (EXIT_INTERRUPT, EXIT_TERM):
        raise stopped  # the run ended before it could hear it (still starting, or done)
    return status


def _without_watch(args: Sequence[str]) -> list[str]:
    """The command-line arguments without ``--watch PATH ...`` (as argparse takes them:
    ``--watch`` or an abbreviation of it, then every argument up to the next option)."""
    out: list[str] = []
    skipping = False
    for arg in args:
        if skipping and not arg.startswith("-"):
            continue
        skipping = False
        flag, eq, _ = arg.partition("=")
        if len(flag) > 4 and "--watch".startswith(flag):
            skipping = not eq
            continue
        out.append(arg)
    return out


def _guard(body: Callable[[], int]) -> int:
    """Map outcomes to exit statuses, with one-line messages for bad input; taskproc's own
    warnings are one line too (others show as Python shows them)."""
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def one_line(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Any = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, CodeChangedWarning) or filename.startswith(PACKAGE_DIR):
                print(f"taskproc: warning: {message}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        return _outcome(body)


def _outcome(body: Callable[[], int]) -> int:
    try:
        return _report(body)
    except KeyboardInterrupt:
        print("\ntaskproc: interrupted; finished results are kept", file=sys.stderr)
        return EXIT_INTERRUPT
    except SystemExit as exc:
        if exc.code == EXIT_TERM:
            print("\ntaskproc: terminated; finished results are kept", file=sys.stderr)
        raise


def _report(body: Callable[[], int]) -> int:
    """Map outcomes other than interrupts to exit statuses, with one-line messages."""
    try:
        return body()
    except BrokenPipeError:
        # The reader went away (`taskproc status CACHE | head`): stop quietly, like ls does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except BaseExceptionGroup as group:
        _report_failures(group)
        return EXIT_FAILED
    except TaskprocError as exc:
        print(f"taskproc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if raised_inside(exc):  # a bug of ours: the whole traceback helps
            import traceback

            traceback.print_exception(exc)
            print(f"taskproc: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:  # raised by the pipeline's own code while building the graph
            print_user_traceback(exc)
            print(f"taskproc: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def run_task_cli(
    cls: type[TaskBase],
    args: Sequence[str] | None = None,
    defaults: DefaultCliArguments | None = None,
) -> None:
    """`Main.cli()`: parse the command line and run `cls`; exits the process."""
    parser = run_parser(os.path.basename(sys.argv[0]) or "taskproc", with_file=False)
    ns = parser.parse_args(args)
    opts = merge(ns, defaults or _DEFAULTS.get())
    sys.exit(_guard(lambda: run_main(cls, opts)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``taskproc`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS and not os.path.isfile(args[0]):
        sub = SUBCOMMANDS[args[0]]
        return _guard(lambda: sub(args))
    ns = run_parser("taskproc", with_file=True).parse_args(args)
    if ns.watch:
        return _guard(lambda: watch_main(ns.file, ns, args))
    return _guard(lambda: run_main(*load_main(ns.file, ns)))
