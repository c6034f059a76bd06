"""Run task graphs on a dask.distributed cluster.

``run_graph`` accepts any ``concurrent.futures.Executor``, so a dask client's own
``client.get_executor(pure=False)`` already works. This module adds a small convenience on top::

    with dask_executor() as executor:                      # a LocalCluster on loopback
        result, stats = task.run_graph(executor=executor)

    with dask_executor('tcp://scheduler:8786') as executor:  # an existing cluster
        ...

    with dask_executor(scheduler_file='scheduler.json') as executor:  # `dask scheduler` wrote it
        ...

:class:`DaskExecutor` is a ``concurrent.futures.Executor`` that owns (and on ``shutdown`` closes)
the client and, when no address is given, the ``LocalCluster`` it started. It fixes three traps
of the plain ``ClientExecutor``:

- submissions are never deduplicated (``pure=False``; with dask's default two identical
  submissions run once);
- keyword arguments of ``submit`` go to the function, as ``concurrent.futures`` promises, instead
  of being taken as dask options (``key=``, ``priority=``, ``resources=`` ...);
- ``shutdown(wait, cancel_futures=...)`` accepts the standard signature.

A ``LocalCluster`` it starts gets what taskproc's own process pool has: each worker process
leads a process group of its own (so Ctrl-C reaches only the runner), a ``shutdown`` that
cancels running tasks kills those groups (the workers and every process their tasks started),
and when the runner is killed outright, a small process left in each worker's group ends it
(a dask worker exits at once without its nanny, leaving its task's processes; ``_watch.py``).
Its workers' scratch space (``local_directory``) is a temporary folder of the executor's own,
removed on ``shutdown``, not ``dask-scratch-space`` in the system's temporary folder.

dask is imported lazily: importing this module works without it, and using it without dask
installed fails with a one-line ``ImportError`` that says what to install.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, InvalidStateError
from typing import TYPE_CHECKING, Any, TypeVar, cast

from typing_extensions import ParamSpec

from taskproc.run._watch import init_reaped_worker, kill_group

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

__all__ = ["DaskExecutor", "dask_executor"]

P = ParamSpec("P")
R = TypeVar("R")

_INSTALL_HINT = (
    "taskproc's dask executor needs dask.distributed, which is not installed: "
    "pip install 'taskproc[dask]'"
)

#: LocalCluster settings used when the caller gives none: one single-threaded worker process
#: per core (taskproc captures a task's output per process), everything on loopback.
LOCAL_CLUSTER_DEFAULTS: dict[str, Any] = {
    "threads_per_worker": 1,
    "processes": True,
    "host": "127.0.0.1",
    "dashboard_address": "127.0.0.1:0",
}


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError(_INSTALL_HINT) from None
    return distributed


class DaskExecutor(Executor):
    """A ``concurrent.futures.Executor`` running calls on a dask.distributed cluster.

    Give at most one of ``address`` (connect to a running scheduler, e.g.
    ``'tcp://127.0.0.1:8786'``), ``scheduler_file`` (the file that ``dask scheduler
    --scheduler-file`` writes; waits for it to appear) and ``client`` (use an existing
    ``distributed.Client``, which is then left open on shutdown). With none, a ``LocalCluster``
    is started with ``cluster_kwargs`` over :data:`LOCAL_CLUSTER_DEFAULTS`, and closed on
    shutdown.

    Raises ``ImportError`` if dask.distributed is not installed, and ``ValueError`` if more than
    one of ``address``, ``scheduler_file`` and ``client`` is given, or ``cluster_kwargs`` come
    with one of them.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        scheduler_file: str | os.PathLike[str] | None = None,
        client: Client | None = None,
        **cluster_kwargs: Any,
    ) -> None:
        given = [
            name
            for name, value in (
                ("address", address),
                ("scheduler_file", scheduler_file),
                ("client", client),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give one of `address`, `scheduler_file` or `client`, got {given}")
        if cluster_kwargs and given:
            raise ValueError(
                "cluster keyword arguments configure a new LocalCluster; they cannot be used with"
                f" `{given[0]}`, got {sorted(cluster_kwargs)}"
            )
        distributed = _import_distributed()
        self._cluster: LocalCluster | None = None
        self._scratch: str | None = None
        self._owns_client = client is None
        if client is None:
            if scheduler_file is not None:
                client = distributed.Client(
                    scheduler_file=os.fspath(scheduler_file), set_as_default=False
                )
            else:
                if address is None:
                    self._cluster = self._start_cluster(distributed, cluster_kwargs)
                    address = self._cluster.scheduler_address
                client = distributed.Client(address, set_as_default=False)
        self.client: Client = client
        if self._cluster is not None:
            client.register_plugin(_lead_groups(distributed, os.getpid()), name=_PLUGIN)
        self._executor: Executor = client.get_executor(pure=False)
        self._lock = threading.Lock()
        self._closed = False
        self._in_flight: set[Future[Any]] = set()
        logging.getLogger("tornado.application").addFilter(_not_the_cancel_race)

    def _start_cluster(self, distributed: Any, cluster_kwargs: dict[str, Any]) -> LocalCluster:
        settings = {**LOCAL_CLUSTER_DEFAULTS, **cluster_kwargs}
        if "local_directory" not in settings:
            self._scratch = settings["local_directory"] = tempfile.mkdtemp(prefix="taskproc-dask-")
            scheduler = settings.get("scheduler_kwargs") or {}
            settings["scheduler_kwargs"] = {"local_directory": self._scratch, **scheduler}
        try:
            return cast("LocalCluster", distributed.LocalCluster(**settings))
        except BaseException:
            self._remove_scratch()
            raise

    @property
    def scheduler_address(self) -> str:
        """The address of the dask scheduler this executor submits to."""
        return str(getattr(self.client.scheduler, "address", None))

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` on the cluster; return a ``concurrent.futures.Future``.

        Raises ``RuntimeError`` after ``shutdown``.
        """
        # ClientExecutor would take keywords as dask options; bind them so the function gets them.
        bound: Callable[[], R] = functools.partial(fn, *args, **kwargs)
        future = self._executor.submit(bound)
        self._in_flight.add(future)
        future.add_done_callback(self._landed)
        return future

    def _landed(self, future: Future[Any]) -> None:
        # A cancelled call may still run on its worker (dask cannot stop it): still in flight.
        if not future.cancelled():
            self._in_flight.discard(future)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work, optionally cancel what is pending, then close what we started.

        With ``wait`` (the default) return only after running calls have finished. Safe to call
        more than once.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        stopping = (cancel_futures or not wait) and bool(self._in_flight)
        with _silenced("distributed") if stopping else contextlib.nullcontext():
            if stopping:
                self.kill_workers()  # dask cannot stop a running task: its process goes
            # ClientExecutor.shutdown(wait=False) cancels everything it submitted.
            self._executor.shutdown(wait=wait and not cancel_futures)
            if self._owns_client:
                cast(Any, self.client).close()  # distributed leaves it untyped
            if self._cluster is not None:
                self._cluster.close()
        self._remove_scratch()
        logging.getLogger("tornado.application").removeFilter(_not_the_cancel_race)

    def kill_workers(self) -> None:
        """Kill the worker processes of the cluster this executor started, with every process
        their tasks started (the nannies start new workers). Nothing for another cluster."""
        nannies = list(self._cluster.workers.values()) if self._cluster is not None else []
        for nanny in nannies:
            pid = getattr(nanny, "pid", None)
            if pid and not kill_group(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __exit__(self, exc_type: object, exc_val: object, exc_tb: object) -> None:
        """Shut down; if the block raised (Ctrl-C, say), cancel what is left instead of
        waiting for it. (Closing a cluster we started stops its workers; a task already
        running on an outside cluster runs on there, as dask cannot interrupt it.)"""
        failed = exc_type is not None
        self.shutdown(wait=not failed, cancel_futures=failed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scheduler_address!r})"


_PLUGIN = "taskproc-lead-groups"


def _not_the_cancel_race(record: logging.LogRecord) -> bool:
    """dask's ClientExecutor sets the result of a call that was cancelled just as it finished
    (an interrupted run cancels what it gave out): the InvalidStateError it then logs, with a
    traceback, through tornado, is that race and nothing else."""
    raised = record.exc_info[1] if record.exc_info else None
    return not isinstance(raised, InvalidStateError)


@contextlib.contextmanager
def _silenced(logger: str) -> Iterator[None]:
    """dask's log of a cluster stopped on purpose (workers killed, comms closed, with
    tracebacks) tells the user nothing: its handlers drop every record meanwhile."""
    handlers = list(logging.getLogger(logger).handlers)

    def drop(record: logging.LogRecord) -> bool:
        return False

    for handler in handlers:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)


def _lead_groups(distributed: Any, runner_pid: int) -> Any:
    """A worker plugin: each worker process leads a process group, ended when the runner
    (where the nannies of a LocalCluster live) is gone."""

    class LeadGroups(distributed.WorkerPlugin):  # type: ignore[misc]  # untyped base
        def setup(self, worker: Any) -> None:
            init_reaped_worker(runner_pid)

    return LeadGroups()


def dask_executor(
    address: str | None = None,
    *,
    scheduler_file: str | os.PathLike[str] | None = None,
    client: Client | None = None,
    **cluster_kwargs: Any,
) -> DaskExecutor:
    """Return a :class:`DaskExecutor`; use it in a ``with`` block so that it is closed.

    ``dask_executor()`` starts a ``LocalCluster`` (``n_workers=...`` and other ``LocalCluster``
    arguments may be given), ``dask_executor('tcp://host:8786')`` or
    ``dask_executor(scheduler_file='scheduler.json')`` connects to a running scheduler,
    ``dask_executor(client=client)`` reuses a client.
    Raises ``ImportError`` with the install command if dask.distributed is missing.
    """
    return DaskExecutor(address, scheduler_file=scheduler_file, client=client, **cluster_kwargs)
