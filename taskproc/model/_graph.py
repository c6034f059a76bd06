"""`Graph`: the context in which tasks are built, and the registry of the tasks built in it."""

from __future__ import annotations

import contextvars
import os
from collections import deque
from contextlib import ContextDecorator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskproc.errors import GraphError
from taskproc.store import Store, open_store, scheme_of

if TYPE_CHECKING:
    from taskproc.model._task import TaskBase

_CURRENT: contextvars.ContextVar[Graph | None] = contextvars.ContextVar(
    "taskproc_graph", default=None
)


class Graph(ContextDecorator):
    """The cache folder and the tasks built for it.

    Use it as ``with Graph('./cache'):`` or as a decorator ``@Graph('./cache')``. Tasks can only
    be built inside one; building the same task twice gives the same object. Building writes
    nothing to disk. With ``clear_all=True`` the whole cache is deleted on entry.

    `cache_dir` is a folder path or the URL of another kind of store (`open_store`); `store`
    gives the store itself (tests use a `MemoryStore`), and `cache_dir` then only names it.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        *,
        clear_all: bool = False,
        store: Store | None = None,
    ) -> None:
        url = scheme_of(os.fspath(cache_dir)) not in (None, "file")
        # A folder is shown (and kept) absolute; a URL as it was given.
        self.cache_dir: Path | str = os.fspath(cache_dir) if url else Path(cache_dir).absolute()
        self.store: Store = store if store is not None else open_store(self.cache_dir)
        self.clear_all = clear_all
        self.tasks: dict[str, TaskBase] = {}
        self.pending: deque[TaskBase] = deque()
        self.building = False
        self._tokens: list[contextvars.Token[Graph | None]] = []

    def __enter__(self) -> Graph:
        outer = _CURRENT.get()
        if outer is not None:
            raise GraphError(
                f"Graph({str(self.cache_dir)!r}) opened inside Graph({str(outer.cache_dir)!r}); "
                "Graph blocks cannot be nested - close the outer one first"
            )
        if self.clear_all:
            self.store.clear()
        self._tokens.append(_CURRENT.set(self))
        return self

    def __exit__(self, *exc: Any) -> None:
        _CURRENT.reset(self._tokens.pop())

    def __repr__(self) -> str:
        return f"Graph({str(self.cache_dir)!r}, {len(self.tasks)} tasks)"


def current_graph() -> Graph | None:
    """The graph of the innermost open `with Graph(...)` block, if any."""
    return _CURRENT.get()
