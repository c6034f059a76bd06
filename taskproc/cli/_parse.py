"""The parser of ``taskproc FILE.py -o CACHE [options]`` and of ``Main.cli()``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any, NoReturn

from taskproc._version import __version__
from taskproc.cli._defaults import DefaultCliArguments
from taskproc.model import WIDTH, clip
from taskproc.run import LOG_LEVELS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPT, EXIT_TERM = 0, 1, 2, 130, 143
# JSON options nest at most this deep: the same on every Python (whose parsers' own limits
# differ), and far from what a task's stack would meet building keys of the value.
MAX_DEPTH = 100


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2), not the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` deep in `value` (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend(
                (x, depth + 1) for x in (item.values() if isinstance(item, dict) else item)
            )
    return False


def json_option(expect: type) -> Callable[[str], Any]:
    """An argparse type that parses JSON of type `expect` (argparse names the option)."""
    kind = "a JSON object" if expect is dict else f"JSON of type {expect.__name__}"

    def parse(text: str) -> Any:
        shown = repr(clip(text, WIDTH))
        too_deep = argparse.ArgumentTypeError(
            f"must be JSON nested at most {MAX_DEPTH} deep, got {shown}"
        )
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(
                f"must be JSON ({exc.msg} at column {exc.colno}), got {shown}"
            ) from None
        except RecursionError:  # deeper than the parser's stack (before Python 3.13)
            raise too_deep from None
        except ValueError:  # int() refuses more than 4300 digits (sys.set_int_max_str_digits)
            raise argparse.ArgumentTypeError(
                f"must be JSON whose integers Python reads (one has too many digits), got {shown}"
            ) from None
        if _deeper_than(value, MAX_DEPTH):
            raise too_deep
        if not isinstance(value, expect):
            raise argparse.ArgumentTypeError(f"must be {kind}, got {shown}")
        return value

    return parse


EPILOG = """\
other commands:
  taskproc status CACHE [--json]           per task name: done, running, failed, time, size
  taskproc ls CACHE [TASK_NAME] [--json]   task names, or one name's tasks (id, args, size)
  taskproc clear CACHE [TASK_NAME ...]     delete cached tasks (NAME, 'pipe.*' or NAME/ID);
           [--failed] [--dry-run] [--yes]  only failed ones; list first; all without asking
  taskproc graph FILE.py -o CACHE [-w FILE.html|.dot|.mmd] [--expand]
  taskproc why FILE.py -o CACHE [TASK ...]     why each task would run (what code changed)
  taskproc accept FILE.py -o CACHE [TASK ...]  keep stored results for the current code
  taskproc gc FILE.py ... -o CACHE [--keep-recent DAYS] [--dry-run]
                                           delete what those pipelines no longer reach
  taskproc serve CACHE [--port N] [--host ADDR] [--open]
                                           a live dashboard of the cache in the browser

exit status: 0 ok, 1 a task failed, 2 bad input, 130 interrupted (Ctrl-C), 143 terminated
"""


def cache_option(p: argparse.ArgumentParser, help: str) -> None:
    """``-o/--cache-dir CACHE``: the cache folder, on every command that takes one. ``--output``
    is its name in taskproc 0.25, and means the cache on every command too."""
    p.add_argument(
        "-o",
        "--cache-dir",
        "--output",  # its name in taskproc 0.25
        dest="cache_dir",
        metavar="CACHE",
        help=help,
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


class _ShowVersion(argparse.Action):
    """``--version``: print taskproc's version and exit (whatever else is missing)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print taskproc's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"taskproc {__version__}")
        parser.exit()


def run_parser(prog: str, with_file: bool) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog,
        description="Run the Main task of a taskproc pipeline file, caching every task's result.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action=_ShowVersion)
    if with_file:
        p.add_argument("file", metavar="FILE.py", help="pipeline file defining a Task named Main")
        p.add_argument(
            "--watch",
            nargs="+",
            metavar="PATH",
            help="after the run, wait for changes under these files or folders and run again "
            "(FILE.py imported anew each time) until Ctrl-C; needs watchfiles",
        )
    cache_option(p, "cache folder (required unless the file sets it)")
    p.add_argument(
        "-l",
        "--loglevel",
        metavar="LEVEL",
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
        help="JSON object label -> max running tasks, e.g. '{\"gpu\": 2}' (with "
        "--batch-sizes: max running prefix commands)",
    )
    p.add_argument(
        "--batch-sizes",
        metavar="JSON",
        type=json_option(dict),
        help="JSON object label -> most tasks one prefix command runs, one after another in "
        "one worker, e.g. '{\"cpu\": 25}'",
    )
    p.add_argument(
        "--batch-seconds",
        metavar="JSON",
        type=json_option(dict),
        help="JSON object label -> time budget of one batch: stop filling it once the "
        "recorded times of its tasks would pass it, e.g. '{\"cpu\": 3000}'",
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
        help="on a failure: immediate (stop at once), eager (start nothing new, default), or "
        "lazy (run all that does not depend on the failure, and the tasks that allow it)",
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


def merge(ns: argparse.Namespace, defaults: DefaultCliArguments | None) -> DefaultCliArguments:
    """Command-line values over the file's defaults over the built-in ones."""
    base = defaults or DefaultCliArguments()
    given = {
        f.name: getattr(ns, f.name)
        for f in fields(DefaultCliArguments)
        if getattr(ns, f.name, None) is not None
    }
    return replace(base, **given)


def serve_parser() -> argparse.ArgumentParser:
    """``taskproc serve CACHE [--port N] [--host ADDR] [--open]``."""
    p = OneLineParser(
        prog="taskproc serve",
        description="Serve a live, read-only dashboard of the cache folder: runs in progress "
        "from every runner, failures with their tracebacks, the graph by task name, each "
        "task's arguments and output, the history of runs, sizes. Reads only the cache, so it "
        "can start at any time, beside any runs. Ctrl-C stops it.",
    )
    p.add_argument("cache", metavar="CACHE", help="the cache folder (-o CACHE of the run)")
    p.add_argument(
        "--port",
        type=_port,
        default=0,
        metavar="N",
        help="the port to listen on (default: a free one, printed)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDR",
        help="the address to listen on (default 127.0.0.1: this machine only; any other "
        "lets whoever can reach it read the cache)",
    )
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    return p


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}")
    return value
