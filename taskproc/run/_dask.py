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

dask is imported lazily: importing this module works without it, and using it without dask
installed fails with a one-line ``ImportError`` that says what to install.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, TypeVar, cast

from typing_extensions import ParamSpec

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
        self._owns_client = client is None
        if client is None:
            if scheduler_file is not None:
                client = distributed.Client(
                    scheduler_file=os.fspath(scheduler_file), set_as_default=False
                )
            else:
                if address is None:
                    self._cluster = distributed.LocalCluster(
                        **{**LOCAL_CLUSTER_DEFAULTS, **cluster_kwargs}
                    )
                    address = self._cluster.scheduler_address
                client = distributed.Client(address, set_as_default=False)
        self.client: Client = client
        self._executor: Executor = client.get_executor(pure=False)
        self._lock = threading.Lock()
        self._closed = False

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
        return self._executor.submit(bound)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work, optionally cancel what is pending, then close what we started.

        With ``wait`` (the default) return only after running calls have finished. Safe to call
        more than once.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # ClientExecutor.shutdown(wait=False) cancels everything it submitted.
        self._executor.shutdown(wait=wait and not cancel_futures)
        if self._owns_client:
            cast(Any, self.client).close()  # distributed leaves it untyped
        if self._cluster is not None:
            self._cluster.close()

    def __exit__(self, exc_type: object, exc_val: object, exc_tb: object) -> None:
        """Shut down; if the block raised (Ctrl-C, say), cancel what is left instead of
        waiting for it. (Closing a cluster we started stops its workers; a task already
        running on an outside cluster runs on there, as dask cannot interrupt it.)"""
        failed = exc_type is not None
        self.shutdown(wait=not failed, cancel_futures=failed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scheduler_address!r})"


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
