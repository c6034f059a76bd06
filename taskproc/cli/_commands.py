"""The subcommands: ``taskproc status|ls|clear CACHE``, ``taskproc graph|why|accept FILE.py
-o CACHE``, ``taskproc gc FILE.py ... -o CACHE`` and ``taskproc push|pull FROM TO``. A CACHE
is a folder or a bucket's URL (``s3://BUCKET/PREFIX``).

Each parses its arguments, asks the views (or upkeep, for accept, gc, push and pull), and
prints. Exit status 0, 1 when accept refused a task, or a UsageError (2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence

from taskproc.cli._confirm import confirm, is_terminal
from taskproc.cli._defaults import DefaultCliArguments
from taskproc.cli._parse import (
    EXIT_FAILED,
    EXIT_INTERRUPT,
    EXIT_OK,
    OneLineParser,
    cache_option,
    json_option,
    serve_parser,
)
from taskproc.errors import CacheError, UsageError
from taskproc.model import TaskBase
from taskproc.run import TaskState
from taskproc.store import Store, folder_problem, open_store, read_last_run, scheme_of
from taskproc.upkeep import (
    Verdict,
    accept_code,
    clear_failed,
    format_accept,
    format_gc,
    format_transfer,
    gc_cache,
    transfer,
)
from taskproc.views import (
    FORMATS,
    RENDERERS,
    Selection,
    TaskEntry,
    build_view,
    format_clear_list,
    format_cleared,
    format_names,
    format_status,
    format_tasks,
    format_why,
    human_size,
    is_loopback,
    mean_times,
    open_cache,
    printable,
    read_runs,
    scan,
    select,
    serve,
    status_json,
    task_states,
    why_json,
    why_report,
    with_eta,
)

_DESCRIPTIONS = {
    "status": "Per task name: done, stale, running (host, pid), failed (error, log), task "
    "time (summed); the last run's wall time. "
    "Reads only the cache folder, so it works during a run and after a crash.",
    "ls": "List task names (or, given TASK_NAME, its tasks: id, arguments, state, size).",
    "clear": "Delete cached tasks: TASK_NAME is like Task.clear_all_tasks(), TASK_NAME/ID like "
    "task.clear_task(); with no TASK_NAME every task is deleted, after a question on a terminal "
    "(--yes answers it; not on a terminal, --yes is required). --failed deletes only failed "
    "tasks, --dry-run lists what would go.",
}


def _cache_parser(command: str) -> argparse.ArgumentParser:
    p = OneLineParser(prog=f"taskproc {command}", description=_DESCRIPTIONS[command])
    p.add_argument("cache", metavar="CACHE", help="the cache folder (-o CACHE of the run)")
    if command == "ls":
        p.add_argument("name", metavar="TASK_NAME", nargs="?", help="list this task's instances")
    if command == "clear":
        p.add_argument(
            "names",
            metavar="TASK_NAME",
            nargs="*",
            help="task names, globs ('pipe.*') or NAME/ID; none: every task",
        )
        p.add_argument("--force", action="store_true", help="also clear tasks that are running")
        p.add_argument(
            "--failed",
            action="store_true",
            help="only failed tasks (their error, output and files), of the TASK_NAMEs if given",
        )
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="list what would be deleted, with sizes; delete nothing, ask nothing",
        )
        p.add_argument(
            "-y",
            "--yes",
            action="store_true",
            help="with no TASK_NAME: delete every task without asking",
        )
    if command != "clear":
        p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def print_text(text: str) -> None:
    """Print a report for a terminal: text from the cache (errors, logs, arguments) may hold
    control bytes, which are shown escaped, never sent to the terminal."""
    print(printable(text))


@contextlib.contextmanager
def changing(store: Store) -> Iterator[None]:
    """What stops a change to the cache (read-only, full, not ours) is one line naming the
    path and the cause; a change interrupted this way leaves every task whole."""
    try:
        yield
    except OSError as exc:
        raise CacheError(f"cannot change the cache {store.root}: {folder_problem(exc)}") from None


def cache_command(argv: list[str]) -> int:
    """``taskproc status|ls|clear ...``; `argv` starts with the subcommand."""
    command, rest = argv[0], argv[1:]
    args = _cache_parser(command).parse_args(rest)
    store = open_cache(args.cache)
    if command == "status":
        return _status(store, args.json)
    if command == "ls":
        return _ls(store, args.name, args.json)
    return _clear(store, args)


def _status(store: Store, as_json: bool) -> int:
    entries = scan(store, with_size=True, describe_done=False)
    last_run = read_last_run(store)
    means = mean_times(entries)
    runs = [with_eta(run, means) for run in read_runs(store)]
    if as_json:
        print(json.dumps(status_json(store.root, entries, last_run, runs), indent=2))
    else:
        print_text(format_status(store.root, entries, last_run, runs))
    return 0


def _ls(store: Store, pattern: str | None, as_json: bool) -> int:
    names = select(store, [pattern]).names if pattern else store.task_names()
    entries = scan(store, names if pattern else None, with_size=True)
    if pattern:
        entries = [e for e in entries if e.task_name in names]
    if as_json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
    elif pattern:
        print_text(format_tasks(entries))
    else:
        print_text(format_names(entries))
    return 0


def _clear(store: Store, args: argparse.Namespace) -> int:
    patterns, failed = args.names, args.failed
    sel, entries = _chosen(store, patterns, failed=failed, force=args.force)
    if args.dry_run:
        print_text(format_clear_list(store.root, entries, dry_run=True, failed=failed))
        return EXIT_OK
    if failed:
        with changing(store):
            done = clear_failed(store, entries)
        kept = len(done.kept)
        removed = [*done.removed]
        print_text(format_clear_list(store.root, removed, dry_run=False, failed=True, kept=kept))
        return EXIT_OK
    everything = not patterns
    if everything and not args.yes:
        if not _confirm_all(store.root, entries):
            print("nothing was removed")
            return EXIT_OK
        # Runners may have started tasks while the question waited: look again.
        sel, entries = _chosen(store, patterns, failed=False, force=args.force)
    with changing(store):
        if everything:
            store.clear()
        for name in sel.names:
            if not everything:
                store.clear(name)
        for name, task_id in sel.ids:
            store.clear(name, task_id)
    print_text(format_cleared(entries))
    return 0


def _confirm_all(root: str, entries: Sequence[TaskEntry]) -> bool:
    """Whether to delete every task (asked on a terminal when there is any)."""
    size = human_size(sum(e.size or 0 for e in entries))
    n = f"{len(entries)} task{'s' if len(entries) != 1 else ''}"
    refusal = (
        f"clear with no TASK_NAME removes all {n} ({size}) of {root}; pass --yes to confirm "
        "(standard input is not a terminal to ask on)"
    )
    if not entries and is_terminal(sys.stdin):
        return True  # nothing to delete: nothing to ask (a script still needs --yes)
    return confirm(f"Remove all {n} ({size}) from {root}?", refusal)


def _chosen(
    store: Store, patterns: Sequence[str], *, failed: bool, force: bool
) -> tuple[Selection, list[TaskEntry]]:
    """The tasks that `patterns` (none: all) select, only the failed ones with `failed`;
    UsageError if one of them is running and not `force`."""
    sel = select(store, patterns) if patterns else Selection(tuple(store.task_names()), ())
    names = list(dict.fromkeys([*sel.names, *(n for n, _ in sel.ids)]))
    entries = [
        e
        for e in scan(store, names, with_size=True)
        if (e.task_name in sel.names or (e.task_name, e.task_id) in sel.ids)
        and (e.state is TaskState.FAILED or not failed)
    ]
    running = [e for e in entries if e.state is TaskState.RUNNING]
    if running and not force:
        e = running[0]
        who = f"host {e.holder.host} pid {e.holder.pid}" if e.holder else "another runner"
        more = f" and {len(running) - 1} more tasks are" if len(running) > 1 else " is"
        raise UsageError(
            f"{e.task} ({who}){more} running; wait for the run to finish, or pass --force"
        )
    return sel, entries


# -- taskproc graph -------------------------------------------------------------------------

SUFFIXES = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid", ".html": "html"}


def _pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """FILE.py, its cache folder and Main's --kwargs: what every command on a pipeline takes."""
    p.add_argument("file", metavar="FILE.py", help="pipeline file defining a Task named Main")
    cache_option(p, "cache folder (required unless the file sets it)")
    p.add_argument(
        "--kwargs", metavar="JSON", type=json_option(dict), help="JSON object of Main's parameters"
    )


def _graph_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="taskproc graph",
        description="Draw the task graph of FILE's Main task with each task's state: done, "
        "stale (and why), failed, running. Reads the cache; runs and writes nothing.",
    )
    _pipeline_arguments(p)
    p.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        help="output format (default: from the --write suffix, else dot)",
    )
    p.add_argument("-w", "--write", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--expand", action="store_true", help="one node per task, never collapse")
    p.add_argument(
        "--collapse-above",
        type=int,
        default=5,
        metavar="N",
        help="draw a class with more than N tasks as one node (default 5)",
    )
    p.add_argument(
        "-D",
        "--disable-detect-source-change",
        action="store_true",
        default=None,
        help="do not count source changes as stale",
    )
    return p


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = os.path.splitext(args.write or "")[1].lower()
    return SUFFIXES.get(suffix, "dot")


def _old_output(cache_dir: str | None) -> None:
    """Refuse ``graph --output g.html`` as graph once meant it (the file to write):
    ``--output`` is the cache folder on every command now, as on a run."""
    suffix = os.path.splitext(cache_dir or "")[1].lower()
    if cache_dir and suffix in SUFFIXES and not os.path.isdir(cache_dir):
        raise UsageError(
            f"-o/--output is the cache folder on every command (as on a run), and {cache_dir} "
            f"is no cache; write the graph to a file with -w/--write {cache_dir} (and give the "
            "cache with -o CACHE)"
        )


def graph_command(argv: list[str]) -> int:
    """``taskproc graph FILE.py -o CACHE [-w FILE] [--format dot|mermaid|html] [--expand]``."""
    from taskproc.cli._pipeline import build_main, load_main, note_missing_cache

    args = _graph_parser().parse_args(argv[1:])
    _old_output(args.cache_dir)
    if args.collapse_above < 1:
        raise UsageError(f"--collapse-above must be >= 1, got {args.collapse_above}")
    cls, opts = load_main(args.file, args)
    root = build_main(cls, opts)
    note_missing_cache(opts.cache_dir)
    order, states = task_states(root, detect_source_change=not opts.disable_detect_source_change)
    limit = len(order) if args.expand else args.collapse_above
    view = build_view(root, order, states, collapse_above=limit)
    text = RENDERERS[_format(args)](view)
    if len(view.nodes) > 3000:
        print(
            f"taskproc graph: {len(view.nodes)} nodes is a lot to draw; "
            "omit --expand or lower --collapse-above",
            file=sys.stderr,
        )
    if args.write:
        _write(args.write, text)
    else:
        sys.stdout.write(text)
    return 0


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"--write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}", file=sys.stderr)


# -- taskproc why / accept / gc -----------------------------------------------------------------


def _pipeline_parser(command: str, description: str) -> argparse.ArgumentParser:
    p = OneLineParser(prog=f"taskproc {command}", description=description)
    _pipeline_arguments(p)
    p.add_argument(
        "tasks",
        metavar="TASK",
        nargs="*",
        help="task names, globs ('pipe.*') or NAME/ID to look at; none: every task",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _build(args: argparse.Namespace) -> tuple[TaskBase, DefaultCliArguments]:
    """FILE's Main built on its cache folder, and the options (the file's own over ours); a
    missing cache folder is said on stderr (these commands only read it)."""
    from taskproc.cli._pipeline import build_main, load_main, note_missing_cache

    cls, opts = load_main(args.file, args)
    root = build_main(cls, opts)
    note_missing_cache(opts.cache_dir)
    return root, opts


def why_command(argv: list[str]) -> int:
    """``taskproc why FILE.py -o CACHE [TASK ...]``: why each task would run."""
    p = _pipeline_parser(
        "why",
        "Say why each task of FILE's Main graph would run, the first reason of each: never "
        "run, failed, other arguments, which function or constant changed (with a diff), "
        "task_version, an upstream task. Runs and writes nothing.",
    )
    p.add_argument(
        "-D",
        "--disable-detect-source-change",
        action="store_true",
        default=None,
        help="as a run with -D: code changes do not count",
    )
    p.add_argument(
        "--dont-force-entrypoint",
        action="store_true",
        default=None,
        help="as a run with --dont-force-entrypoint: Main itself is not forced",
    )
    args = p.parse_intermixed_args(argv[1:])
    root, opts = _build(args)
    report = why_report(
        root,
        args.tasks,
        detect_source_change=not opts.disable_detect_source_change,
        force_entrypoint=not opts.dont_force_entrypoint,
    )
    for message in report.warnings:
        print(f"taskproc: warning: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps(why_json(report.whys, report.total), indent=2))
    else:
        print_text(format_why(report.whys, report.total, report.selected))
    return EXIT_OK


def accept_command(argv: list[str]) -> int:
    """``taskproc accept FILE.py -o CACHE [TASK ...]``: re-key stored results to the code."""
    p = _pipeline_parser(
        "accept",
        "Take the current code as matching the stored results of the given tasks of FILE's "
        "Main graph (default: all), without running anything: after a refactor that changed "
        "no result. Refuses tasks whose arguments, upstream results or task_version changed, "
        "and says why. Exit status 1 if a task was refused.",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be accepted; write nothing"
    )
    args = p.parse_intermixed_args(argv[1:])
    root = _build(args)[0]
    with changing(root._tp.store):
        report = accept_code(root, args.tasks, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_text(format_accept(report))
    return EXIT_FAILED if report.of(Verdict.REFUSED) else EXIT_OK


def gc_command(argv: list[str]) -> int:
    """``taskproc gc FILE.py ... -o CACHE``: delete what the pipelines' graphs do not reach."""
    from taskproc.cli._pipeline import build_main, load_main

    p = OneLineParser(
        prog="taskproc gc",
        description="Delete every stored task (result, files, task_directory) that the graphs "
        "of the given pipeline files do not reach, except running tasks and, with "
        "--keep-recent, tasks finished in the last DAYS days; report counts and bytes per "
        "task name. Safe while other runners use the cache.",
    )
    p.add_argument("files", metavar="FILE.py", nargs="+", help="pipelines whose tasks to keep")
    cache_option(p, "the cache folder")
    p.add_argument(
        "--kwargs",
        metavar="JSON",
        type=json_option(dict),
        action="append",
        help="JSON object of Main's parameters: once for every file, or once per file in order",
    )
    p.add_argument(
        "--keep-recent",
        metavar="DAYS",
        type=float,
        help="keep tasks finished in the last DAYS days",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted; delete nothing"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv[1:])
    kwargs = args.kwargs or [None]
    if len(kwargs) not in (1, len(args.files)):
        raise UsageError(
            f"--kwargs given {len(kwargs)} times for {len(args.files)} files; give it once for "
            "every file, or once per file in the order of the files"
        )
    if args.keep_recent is not None and not args.keep_recent >= 0:
        raise UsageError(f"--keep-recent must be a number of days >= 0, got {args.keep_recent}")
    roots = []
    caches = set()
    for i, file in enumerate(args.files):
        ns = argparse.Namespace(cache_dir=args.cache_dir, kwargs=kwargs[min(i, len(kwargs) - 1)])
        cls, opts = load_main(file, ns)
        if not opts.cache_dir:
            raise UsageError("no cache folder: pass -o/--cache-dir CACHE")
        open_cache(opts.cache_dir)  # gc only works on an existing cache
        url = scheme_of(opts.cache_dir) not in (None, "file")
        caches.add(opts.cache_dir if url else os.path.abspath(opts.cache_dir))
        roots.append(build_main(cls, opts))
    if len(caches) > 1:
        raise UsageError(
            f"the files use different cache folders ({', '.join(sorted(caches))}); pass -o CACHE"
        )
    with changing(roots[0]._tp.store):
        report = gc_cache(roots, keep_recent=args.keep_recent, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_text(format_gc(report))
    return EXIT_OK


# -- taskproc serve ---------------------------------------------------------------------------


def serve_command(argv: list[str]) -> int:
    """``taskproc serve CACHE``: the dashboard, until Ctrl-C (exit 130)."""
    args = serve_parser().parse_args(argv[1:])
    store = open_cache(args.cache)
    try:
        server = serve(store, args.host, args.port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.host} port {args.port}: {exc.strerror or exc}; "
            "pick another --port or --host"
        ) from None
    if not is_loopback(args.host):
        print(
            f"taskproc: warning: listening on {args.host}: anyone who can reach it can read "
            "the cache (task arguments, output, tracebacks)",
            file=sys.stderr,
        )
    print(f"taskproc: serving {store.root} at {server.url} (Ctrl-C to stop)", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("\ntaskproc: stopped", file=sys.stderr)
        return EXIT_INTERRUPT
    finally:
        server.stop()
    return EXIT_OK  # pragma: no cover (serve_forever returns only when shut down)


# -- taskproc push / pull ------------------------------------------------------------------------


def _transfer_parser(command: str) -> argparse.ArgumentParser:
    push = command == "push"
    p = OneLineParser(
        prog=f"taskproc {command}",
        description=(
            "Copy results (with their records, arguments, upstream links, output and "
            "task_directory) from a cache folder to a bucket"
            if push
            else "Copy results (with their records, arguments, upstream links, output and "
            "task_directory) from a bucket to a cache folder"
        )
        + ", upstream tasks first, skipping what the other side has. Where it has another "
        "result of a task, it keeps its own and says so (the same result computed twice is "
        "not a conflict). Safe while runners use either side.",
    )
    first, second = ("CACHE", "URL") if push else ("URL", "CACHE")
    p.add_argument("source", metavar=first, help="where to copy from")
    p.add_argument("target", metavar=second, help="where to copy to")
    p.add_argument(
        "tasks",
        metavar="TASK",
        nargs="*",
        help="task names, globs ('pipe.*') or NAME/ID to copy; none: every task",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be copied; copy nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def transfer_command(argv: list[str]) -> int:
    """``taskproc push CACHE URL [TASK ...]`` / ``taskproc pull URL CACHE [TASK ...]``."""
    from taskproc.cli._pipeline import check_cache_folder

    command = argv[0]
    args = _transfer_parser(command).parse_intermixed_args(argv[1:])
    source = open_cache(args.source)
    target = open_store(check_cache_folder(args.target))  # a new one will do
    with changing(target):
        report = transfer(source, target, args.tasks, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_text(format_transfer(report, command))
    return EXIT_OK
