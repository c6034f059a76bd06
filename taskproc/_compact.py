"""Records that cross process boundaries, pickled as their class and a tuple.

A frozen slotted dataclass pickles through Python-level ``__getstate__``/``__setstate__``
that walk its fields; a process pool pickles a job spec and an outcome for every task, so
that cost was a sixth of the runner's time on a pool of trivial tasks.
"""

from __future__ import annotations

from typing import Any


class Compact:
    """Mixin for frozen ``slots=True`` dataclasses: pickle positionally, in C."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        names: tuple[str, ...] = self.__slots__
        return (type(self), tuple([getattr(self, name) for name in names]))
