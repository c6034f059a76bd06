"""Loading a pipeline file and building its `Main` task on a checked cache folder."""

from __future__ import annotations

import argparse
import contextvars
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from taskproc.cli._defaults import _DEFAULTS, DefaultCliArguments
from taskproc.cli._kwargs import convert_kwargs, type_hints
from taskproc.cli._parse import merge
from taskproc.errors import PACKAGE_DIR, ArgumentError, ConfigError, TaskprocError, UsageError
from taskproc.model import Graph, TaskBase
from taskproc.store import MARKER_DIR, LocalStore, open_store, scheme_of


def load_file(path: str) -> ModuleType:
    """Import a pipeline file as a module named after it, with its folder first on sys.path
    for the rest of the process, as ``python FILE.py`` has it: sibling modules import at the
    top of the file, inside ``run_task`` (lazily, on any executor), in forked workers and in
    the workers of the dask cluster taskproc starts (they start with this process's path),
    and prefix commands get it on PYTHONPATH.

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
    if folder not in sys.path:
        sys.path.insert(0, folder)
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
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    return module


def print_user_traceback(exc: BaseException) -> None:
    """Print `exc`'s traceback without the frames of taskproc and importlib, to stderr."""

    here = PACKAGE_DIR
    tb = traceback.TracebackException.from_exception(exc)
    frames = [
        f
        for f in tb.stack
        if not f.filename.startswith(here) and not f.filename.startswith("<frozen ")
    ]
    tb.stack = traceback.StackSummary.from_list(frames)
    sys.stderr.write("".join(tb.format()))


def raised_inside(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    here = PACKAGE_DIR
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(here)


def main_task_class(module: ModuleType, path: str) -> type[TaskBase]:
    """The `Main` task of a loaded pipeline file, or UsageError."""
    from taskproc.model import TaskBase

    cls = getattr(module, "Main", None)
    if cls is None:
        raise UsageError(f"{path}: no task named Main; define 'class Main(Task)' in the file")
    if not (isinstance(cls, type) and issubclass(cls, TaskBase)):
        what = cls.__name__ if isinstance(cls, type) else type(cls).__name__
        raise UsageError(
            f"{path}: Main must be a Task subclass, got {what}; define 'class Main(Task)'"
        )
    return cls


def load_main(path: str, ns: argparse.Namespace) -> tuple[type[TaskBase], DefaultCliArguments]:
    """The Main task of the file at `path`, and the options: `ns` over the file's defaults."""
    ctx = contextvars.copy_context()
    module = ctx.run(load_file, path)
    cls = main_task_class(module, path)
    return cls, merge(ns, ctx.run(_DEFAULTS.get))


def check_cache_folder(path: str | None) -> str:
    """A run may use a new or empty folder, or a taskproc cache; nothing else (or a store
    named by URL, which checks itself when it is opened)."""
    if not path:
        raise UsageError("no cache folder: pass -o/--cache-dir CACHE")
    try:
        store = open_store(path)
    except ConfigError as exc:
        raise UsageError(f"-o {path}: {exc}") from None
    if not isinstance(store, LocalStore):
        return path
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"-o {path}: not a folder; give a new folder or an existing cache")
    if not store.is_cache() and not store.is_new():
        raise UsageError(
            f"-o {path}: not a taskproc cache (no {MARKER_DIR}/cache.json) and not "
            "empty; give a new or empty folder, or the cache of an earlier run"
        )
    return path


def missing_cache_notice(path: str | None) -> str | None:
    """The one line that says a read-only view's cache folder does not exist (a typo in
    ``-o`` must not look like an empty cache); None if it exists."""
    if not path or scheme_of(path) not in (None, "file") or os.path.lexists(path):
        return None
    return (
        f"taskproc: cache folder {path!r} does not exist; nothing is cached - every task would run"
    )


def note_missing_cache(path: str | None) -> None:
    """Print `missing_cache_notice` on stderr, if there is one."""
    notice = missing_cache_notice(path)
    if notice is not None:
        print(notice, file=sys.stderr)


def build_main(cls: type[TaskBase], opts: DefaultCliArguments) -> TaskBase:
    """`cls(**kwargs)` built in a graph on the checked cache folder."""
    cache_dir = check_cache_folder(opts.cache_dir)
    given = dict(opts.kwargs or {})
    kwargs = convert_kwargs(cls.task_name, cls._tp_signature, type_hints(cls), given)
    with Graph(cache_dir):
        try:
            return cls(**kwargs)
        except ArgumentError as exc:
            if exc.task_name != cls.task_name:
                raise  # an upstream task's arguments: the pipeline's own bug
            raise UsageError(f"--kwargs {json.dumps(given)}: {exc.problem}") from None
