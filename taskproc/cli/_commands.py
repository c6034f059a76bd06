"""The subcommands: ``taskproc status|ls|clear CACHE`` and ``taskproc graph FILE.py -o CACHE``.

Each parses its arguments, asks the views, and prints. Exit status 0, or a UsageError (2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from taskproc.cli._parse import OneLineParser, json_option
from taskproc.errors import UsageError
from taskproc.run import TaskState
from taskproc.store import LocalStore
from taskproc.views import (
    FORMATS,
    RENDERERS,
    Selection,
    build_view,
    format_cleared,
    format_names,
    format_status,
    format_tasks,
    open_cache,
    scan,
    select,
    status_json,
    task_states,
)

_DESCRIPTIONS = {
    "status": "Per task name: done, stale, running (host, pid), failed (error, log), time. "
    "Reads only the cache folder, so it works during a run and after a crash.",
    "ls": "List task names (or, given TASK_NAME, its tasks: id, arguments, state, size).",
    "clear": "Delete cached tasks: TASK_NAME is like Task.clear_all_tasks(), TASK_NAME/ID like "
    "task.clear_task(); with no TASK_NAME every task is deleted.",
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
    if command != "clear":
        p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def cache_command(argv: list[str]) -> int:
    """``taskproc status|ls|clear ...``; `argv` starts with the subcommand."""
    command, rest = argv[0], argv[1:]
    args = _cache_parser(command).parse_args(rest)
    store = open_cache(args.cache)
    if command == "status":
        return _status(store, args.json)
    if command == "ls":
        return _ls(store, args.name, args.json)
    return _clear(store, args.names, args.force)


def _status(store: LocalStore, as_json: bool) -> int:
    entries = scan(store)
    if as_json:
        print(json.dumps(status_json(store.root, entries), indent=2))
    else:
        print(format_status(store.root, entries))
    return 0


def _ls(store: LocalStore, pattern: str | None, as_json: bool) -> int:
    names = select(store, [pattern]).names if pattern else store.task_names()
    entries = scan(store, names if pattern else None, with_size=True)
    if pattern:
        entries = [e for e in entries if e.task_name in names]
    if as_json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
    elif pattern:
        print(format_tasks(entries))
    else:
        print(format_names(entries))
    return 0


def _clear(store: LocalStore, patterns: Sequence[str], force: bool) -> int:
    everything = not patterns
    sel = select(store, patterns) if patterns else Selection(tuple(store.task_names()), ())
    names = list(dict.fromkeys([*sel.names, *(n for n, _ in sel.ids)]))
    entries = [
        e
        for e in scan(store, names, with_size=True)
        if e.task_name in sel.names or (e.task_name, e.task_id) in sel.ids
    ]
    running = [e for e in entries if e.state is TaskState.RUNNING]
    if running and not force:
        e = running[0]
        who = f"host {e.claim.host} pid {e.claim.pid}" if e.claim else "another runner"
        more = f" and {len(running) - 1} more tasks are" if len(running) > 1 else " is"
        raise UsageError(
            f"{e.task} ({who}){more} running; wait for the run to finish, or pass --force"
        )
    if everything:
        store.clear_all()
    for name in sel.names:
        if not everything:
            store.clear_task_name(name)
    for name, task_id in sel.ids:
        store.clear_task(name, task_id)
    print(format_cleared(entries))
    return 0


# -- taskproc graph -------------------------------------------------------------------------

SUFFIXES = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid", ".html": "html"}


def _graph_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="taskproc graph",
        description="Draw the task graph of FILE's Main task with each task's state: done, "
        "stale (and why), failed, running. Reads the cache; runs and writes nothing.",
    )
    p.add_argument("file", metavar="FILE.py", help="pipeline file defining a Task named Main")
    p.add_argument(
        "-o", "--cache-dir", metavar="CACHE", help="cache folder (required unless the file sets it)"
    )
    p.add_argument(
        "--kwargs", metavar="JSON", type=json_option(dict), help="JSON object of Main's parameters"
    )
    p.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        help="output format (default: from the --output suffix, else dot)",
    )
    p.add_argument("--output", metavar="PATH", help="write to PATH instead of standard output")
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
    suffix = os.path.splitext(args.output or "")[1].lower()
    return SUFFIXES.get(suffix, "dot")


def graph_command(argv: list[str]) -> int:
    """``taskproc graph FILE.py -o CACHE [--format dot|mermaid|html] [--expand]``."""
    from taskproc.cli._pipeline import build_main, load_main

    args = _graph_parser().parse_args(argv[1:])
    if args.collapse_above < 1:
        raise UsageError(f"--collapse-above must be >= 1, got {args.collapse_above}")
    cls, opts = load_main(args.file, args)
    root = build_main(cls, opts)
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
    if args.output:
        _write(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"--output {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}", file=sys.stderr)
