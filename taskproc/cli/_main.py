"""The command line: ``taskproc FILE.py -o CACHE [options]``, ``Main.cli()``, and subcommands.

Exit status: 0 success, 1 a task failed, 2 bad usage or input, 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import contextvars
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

from taskproc.cli._defaults import _DEFAULTS, DefaultCliArguments
from taskproc.errors import PACKAGE_DIR, TaskprocError, UsageError

if TYPE_CHECKING:
    from taskproc.model._task import Task

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPT, EXIT_TERM = 0, 1, 2, 130, 143
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SUBCOMMANDS: dict[str, str] = {
    "status": "taskproc.views._status",
    "ls": "taskproc.views._status",
    "clear": "taskproc.views._status",
    "graph": "taskproc.views._graph",
}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2), not the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def json_option(expect: type) -> Callable[[str], Any]:
    """An argparse type that parses JSON of type `expect` (argparse names the option)."""
    kind = "a JSON object" if expect is dict else f"JSON of type {expect.__name__}"

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(
                f"must be JSON ({exc.msg} at column {exc.colno}), got {text!r}"
            ) from None
        if not isinstance(value, expect):
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}")
        return value

    return parse


EPILOG = """\
other commands:
  taskproc status CACHE [--json]           per task name: done, running, failed, time
  taskproc ls CACHE [TASK_NAME] [--json]   task names, or one name's tasks (id, args, size)
  taskproc clear CACHE [TASK_NAME ...]     delete cached tasks (NAME, 'pipe.*' or NAME/ID)
  taskproc graph FILE.py -o CACHE [--format dot|mermaid|html] [--expand]

exit status: 0 ok, 1 a task failed, 2 bad input, 130 interrupted (Ctrl-C), 143 terminated
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _parser(prog: str, with_file: bool) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog,
        description="Run the Main task of a taskproc pipeline file, caching every task's result.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if with_file:
        p.add_argument("file", metavar="FILE.py", help="pipeline file defining a Task named Main")
    p.add_argument(
        "-o",
        "--cache-dir",
        "--output",  # its name in taskproc 0.25
        dest="cache_dir",
        metavar="CACHE",
        help="cache folder (required unless the file sets it)",
    )
    p.add_argument(
        "-l",
        "--loglevel",
        metavar="LEVEL",
        choices=LOG_LEVELS,
        type=str.upper,
        help=f"logging level: {', '.join(LOG_LEVELS)} (default WARNING)",
    )
    p.add_argument(
        "-n",
        "--num-workers",
        metavar="N",
        type=_positive_int,
        help="number of workers (default: cores)",
    )
    p.add_argument(
        "--kwargs",
        metavar="JSON",
        type=json_option(dict),
        help="JSON object of Main's parameters, e.g. '{\"n\": 3}'",
    )
    p.add_argument(
        "--prefixes",
        metavar="JSON",
        type=json_option(dict),
        help='JSON object label -> prefix command, e.g. \'{"gpu": "srun -p gpu"}\'',
    )
    p.add_argument(
        "--rate-limits",
        metavar="JSON",
        type=json_option(dict),
        help="JSON object label -> max running tasks, e.g. '{\"gpu\": 2}'",
    )
    p.add_argument(
        "-D",
        "--disable-detect-source-change",
        action="store_true",
        default=None,
        help="do not rerun tasks whose source code changed",
    )
    p.add_argument(
        "-t",
        "--exec-type",
        metavar="TYPE",
        choices=["process", "thread", "local", "dask"],
        help="executor: process (a process pool, default), thread (a thread pool), local "
        "(inline, for pdb; output not captured), or dask (see --scheduler)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with -t dask: the dask scheduler to use (e.g. tcp://host:8786); default: a new "
        "local cluster of -n worker processes",
    )
    p.add_argument(
        "-e",
        "--error-handling",
        metavar="POLICY",
        choices=["immediate", "eager", "lazy"],
        help="on a failure: immediate (stop at once), eager (start nothing new, default), or "
        "lazy (run all that does not depend on the failure)",
    )
    p.add_argument(
        "--dont-force-entrypoint",
        action="store_true",
        default=None,
        help="do not rerun Main itself when it is cached",
    )
    p.add_argument(
        "--dont-show-progress", action="store_true", default=None, help="no progress bars"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="show what would run and why, without running anything",
    )
    return p


def _merge(ns: argparse.Namespace, defaults: DefaultCliArguments | None) -> DefaultCliArguments:
    """Command-line values over the file's defaults over the built-in ones."""
    base = defaults or DefaultCliArguments()
    given = {
        f.name: getattr(ns, f.name)
        for f in fields(DefaultCliArguments)
        if getattr(ns, f.name, None) is not None
    }
    return replace(base, **given)


def load_file(path: str) -> ModuleType:
    """Import a pipeline file as a module named after it, without changing sys.path for good.

    Its classes are pickled by value, so process workers and prefix commands need not be able
    to import the file. An error raised by the file's own code is shown with its traceback and
    reported as a UsageError.
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such file; give the path of a pipeline .py file")
    name = file.stem
    if not name.isidentifier():
        raise UsageError(
            f"{path}: the file name must be a Python identifier to import it; rename the file"
        )
    taken = sys.modules.get(name)
    if name in sys.stdlib_module_names or (
        taken is not None and getattr(taken, "__file__", None) != str(file.resolve())
    ):
        raise UsageError(
            f"{path}: the file name {name!r} is also the name of a module Python already uses; "
            "rename the file"
        )
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: cannot be imported as a Python module; give a .py file")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    folder = str(file.resolve().parent)
    sys.path.insert(0, folder)  # for the file's own sibling imports, during the import only
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        if isinstance(exc, Exception) and not isinstance(exc, TaskprocError):
            print_user_traceback(exc)
            raise UsageError(
                f"{path}: importing it failed ({type(exc).__name__}: {exc}); "
                "fix the error shown above"
            ) from None
        raise
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    return module


def print_user_traceback(exc: BaseException) -> None:
    """Print `exc`'s traceback without the frames of taskproc and importlib, to stderr."""
    import traceback

    here = PACKAGE_DIR
    tb = traceback.TracebackException.from_exception(exc)
    frames = [
        f
        for f in tb.stack
        if not f.filename.startswith(here) and not f.filename.startswith("<frozen ")
    ]
    tb.stack = traceback.StackSummary.from_list(frames)
    sys.stderr.write("".join(tb.format()))


def _raised_inside_taskproc(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    here = PACKAGE_DIR
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(here)


def main_task_class(module: ModuleType, path: str) -> type[Task]:
    """The `Main` task of a loaded pipeline file, or UsageError."""
    from taskproc.model._task import Task

    cls = getattr(module, "Main", None)
    if cls is None:
        raise UsageError(f"{path}: no task named Main; define 'class Main(Task)' in the file")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        what = cls.__name__ if isinstance(cls, type) else type(cls).__name__
        raise UsageError(
            f"{path}: Main must be a Task subclass, got {what}; define 'class Main(Task)'"
        )
    return cls


def load_main(path: str, ns: argparse.Namespace) -> tuple[type[Task], DefaultCliArguments]:
    """The Main task of the file at `path`, and the options: `ns` over the file's defaults."""
    ctx = contextvars.copy_context()
    module = ctx.run(load_file, path)
    cls = main_task_class(module, path)
    return cls, _merge(ns, ctx.run(_DEFAULTS.get))


def check_cache_folder(path: str | None) -> str:
    """A run may use a new or empty folder, or a taskproc cache; nothing else."""
    from taskproc.store._local import MARKER_DIR, Store

    if not path:
        raise UsageError("no cache folder: pass -o/--cache-dir CACHE")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"-o {path}: not a folder; give a new folder or an existing cache")
    if os.path.isdir(path) and not Store(path).is_cache():
        with os.scandir(path) as it:
            # A folder holding only .taskproc is a cache another runner is creating now.
            if any(entry.name != MARKER_DIR for entry in it):
                raise UsageError(
                    f"-o {path}: not a taskproc cache (no {MARKER_DIR}/cache.json) and not "
                    "empty; give a new or empty folder, or the cache of an earlier run"
                )
    return path


def build_main(cls: type[Task], opts: DefaultCliArguments) -> Task:
    """`cls(**kwargs)` built in a graph on the checked cache folder."""
    from taskproc.errors import ArgumentError
    from taskproc.model._graph import Graph

    cache_dir = check_cache_folder(opts.cache_dir)
    kwargs = dict(opts.kwargs or {})
    with Graph(cache_dir):
        try:
            return cls(**kwargs)
        except ArgumentError as exc:
            if not str(exc).startswith(f"{cls.task_name}:"):
                raise
            raise UsageError(
                f"--kwargs {json.dumps(kwargs)}: {str(exc).partition(': ')[2]}; "
                f"{cls.task_name} takes {cls._tp_signature}"
            ) from None


def _show_output(task: Task) -> None:
    """Print what the entry task printed (it was captured into its folder)."""
    folder = task.task_worker.task_dir
    for name, stream in (("stdout.txt", sys.stdout), ("stderr.txt", sys.stderr)):
        try:
            text = (folder / name).read_text(errors="replace")
        except OSError:
            continue
        if text:
            stream.write(text if text.endswith("\n") else text + "\n")
            stream.flush()


def _report_failures(group: BaseExceptionGroup[Any]) -> None:
    from taskproc.errors import FailedTaskError

    for exc in group.exceptions:
        if isinstance(exc, FailedTaskError):
            print(f"\nFAILED {exc}", file=sys.stderr)
        else:
            print(f"\nFAILED {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"\ntaskproc: {len(group.exceptions)} task(s) failed", file=sys.stderr)


def _check_options(opts: DefaultCliArguments) -> str | None:
    """Validate what argparse cannot (values that come from DefaultCliArguments too)."""
    from taskproc.run._executors import EXEC_TYPES

    if opts.exec_type is not None and opts.exec_type not in EXEC_TYPES:
        raise UsageError(
            f"-t/--exec-type must be one of {', '.join(EXEC_TYPES)}, got {opts.exec_type!r}"
        )
    n = opts.num_workers
    if n is not None and (type(n) is not int or n < 1):
        raise UsageError(f"-n/--num-workers must be an integer >= 1, got {n!r}")
    _check_label_options(opts)
    if opts.loglevel is None:
        return None
    level = str(opts.loglevel).upper()
    if level not in LOG_LEVELS:
        raise UsageError(
            f"-l/--loglevel must be one of {', '.join(LOG_LEVELS)}, got {opts.loglevel!r}"
        )
    return level


def _check_label_options(opts: DefaultCliArguments) -> None:
    """Check --rate-limits and --prefixes before anything is built, naming the option."""
    from taskproc.errors import ConfigError
    from taskproc.run._limits import check_limits
    from taskproc.run._prefix import check_prefixes

    try:
        check_limits(opts.rate_limits)
        check_prefixes(opts.prefixes)
    except ConfigError as exc:
        message = str(exc)  # "rate_limits['a'] must be ...": name the option instead
        for param, option in (("rate_limits", "--rate-limits"), ("prefixes", "--prefixes")):
            if message.startswith(param):
                raise UsageError(f"{option}{message[len(param) :]}") from None
        raise UsageError(message) from None


def run_main(cls: type[Task], opts: DefaultCliArguments) -> int:
    """Build `cls(**kwargs)` in a graph on the cache folder and run it."""
    from taskproc.run._executors import make_executor
    from taskproc.run._driver import RunOptions, run

    level = _check_options(opts)
    task = build_main(cls, opts)
    if opts.dry_run:
        from taskproc.views._status import dry_run

        return dry_run(
            task,
            detect_source_change=not opts.disable_detect_source_change,
            force_entrypoint=not opts.dont_force_entrypoint,
        )
    if level:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    options = RunOptions.make(
        rate_limits=opts.rate_limits,
        prefixes=opts.prefixes,
        error_handling=opts.error_handling or "eager",
        show_progress=not opts.dont_show_progress,
        detect_source_change=not opts.disable_detect_source_change,
        force_entrypoint=not opts.dont_force_entrypoint,
        log_level=logging.getLevelName(level) if level else None,
    )
    # The process pool is left to the scheduler, which owns it and can stop its workers (and
    # what their tasks started) on Ctrl-C.
    exec_type = opts.exec_type or "process"
    if opts.scheduler and exec_type != "dask":
        raise UsageError("--scheduler goes with -t dask; add -t dask or drop --scheduler")
    executor = (
        None
        if exec_type == "process"
        else make_executor(exec_type, opts.num_workers, scheduler=opts.scheduler)
    )
    try:
        run(task, replace(options, executor=executor, max_workers=opts.num_workers))
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    _show_output(task)
    return EXIT_OK


def _guard(body: Callable[[], int]) -> int:
    """Map outcomes to exit statuses, with one-line messages for bad input."""
    try:
        return body()
    except BrokenPipeError:
        # The reader went away (`taskproc status CACHE | head`): stop quietly, like ls does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("\ntaskproc: interrupted; finished results are kept", file=sys.stderr)
        return EXIT_INTERRUPT
    except SystemExit as exc:
        if exc.code == EXIT_TERM:
            print("\ntaskproc: terminated; finished results are kept", file=sys.stderr)
        raise
    except BaseExceptionGroup as group:
        _report_failures(group)
        return EXIT_FAILED
    except TaskprocError as exc:
        print(f"taskproc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if _raised_inside_taskproc(exc):  # a bug of ours: the whole traceback helps
            import traceback

            traceback.print_exception(exc)
            print(f"taskproc: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:  # raised by the pipeline's own code while building the graph
            print_user_traceback(exc)
            print(f"taskproc: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def run_task_cli(
    cls: type[Task],
    args: Sequence[str] | None = None,
    defaults: DefaultCliArguments | None = None,
) -> None:
    """`Main.cli()`: parse the command line and run `cls`; exits the process."""
    parser = _parser(os.path.basename(sys.argv[0]) or "taskproc", with_file=False)
    ns = parser.parse_args(args)
    opts = _merge(ns, defaults or _DEFAULTS.get())
    sys.exit(_guard(lambda: run_main(cls, opts)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``taskproc`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS and not os.path.isfile(args[0]):
        module = importlib.import_module(SUBCOMMANDS[args[0]])
        sub: Callable[[list[str]], int] = module.main
        return _guard(lambda: sub(args))
    ns = _parser("taskproc", with_file=True).parse_args(args)
    return _guard(lambda: run_main(*load_main(ns.file, ns)))
