"""Readable task names: ``sweep.Train(train=sweep.Split(frac=0.2)['train'], lr=0.1)``.

One rendering of a task everywhere it is shown (``repr``, failures, ``--dry-run``, ``status``,
``ls``, ``why``, the graph): its name and its canonical arguments written back as Python would
write them. An upstream task is shown by its own arguments, found through a `Lookup` (the graph
in memory, the store in the views); the direct upstream tasks in full and those further up as
``Name(…)``, so a chain of 100,000 tasks names each task in constant time. An upstream whose
arguments are unknown is ``<Name 1f2e3a4b>``.

Past a width the text is cut in the middle with ``…``: the task's name and the first arguments
stay at the front, the end of the arguments at the back, and the name itself is never cut.
Tasks of one name that would read the same cut in the middle (a sweep whose varying argument
sits between long ones) are cut around where each differs from the others instead (`apart`).
Containers longer than the width are rendered from both ends only (the middle would be cut
anyway), so naming a task that gathers 10,000 upstream tasks reads a few of them, not all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from taskproc.model._canonical import JSON
from taskproc.model._naming import is_valid_task_name

if TYPE_CHECKING:
    from taskproc.store import Store

Lookup = Callable[[str], str | None]
"""A task key (``name/id``) -> that task's canonical argument text, or None if unknown."""

WIDTH = 100  # one task on one line of a report
_MIN_ARGS = 24  # a long task name still shows this much of its arguments
_ELLIPSIS = "…"
_DEPTH = 1  # upstream tasks shown with their arguments: the direct ones

T = TypeVar("T")


def describe(
    task_name: str, args_json: str, lookup: Lookup | None = None, width: int | None = WIDTH
) -> str:
    """``mymodule.Choose(n=3, k=2)``: the task name and its arguments, shortened in the middle
    past `width` characters (None: never). Raises ValueError if `args_json` is not a JSON
    object."""
    budget = None if width is None else max(width, _MIN_ARGS)
    try:
        args = json.loads(args_json)
        if not isinstance(args, dict):
            raise ValueError(f"arguments of {task_name} are not a JSON object")
        inner = _Renderer(lookup, budget).arguments(args, 0)
    except RecursionError:  # nested deeper than the stack allows: the JSON text itself
        inner = args_json.strip()[1:-1]
    return shorten(task_name, inner, width)


def shorten(task_name: str, inner: str, width: int | None = WIDTH) -> str:
    """``task_name(inner)``, cut in the middle of `inner` with ``…`` to fit `width` (at least
    a few characters of the arguments stay, whatever the name's length)."""
    text = f"{task_name}({inner})"
    if width is None or len(text) <= width:
        return text
    room = max(width - len(task_name) - 2, _MIN_ARGS + 1)  # 2: the parentheses
    return f"{task_name}({clip(inner, room)})"


def clip(text: str, width: int) -> str:
    """`text`, cut in the middle with ``…`` to `width` characters if it is longer (a value
    echoed in a one-line message)."""
    if len(text) <= width:
        return text
    keep = max(width - 1, 2)
    head = (keep + 1) // 2
    return f"{text[:head]}{_ELLIPSIS}{text[len(text) - (keep - head) :]}"


def apart(task_name: str, args_texts: Sequence[str], width: int | None = WIDTH) -> list[str]:
    """Tasks of `task_name` (their canonical argument texts), each shown so that it can be
    told from the others: written whole (upstream tasks as ``<Name 1f2e3a4b>``), then, past
    `width`, cut around where it differs from the task most like it, with the name, the
    first arguments and the closing parenthesis kept."""
    full = [describe(task_name, text, None, None) for text in args_texts]
    if width is None:
        return full
    front = len(task_name) + 1
    return [
        _cut_around(text, span, front, max(width, front + _MIN_ARGS))
        for text, span in zip(full, _differing(full), strict=True)
    ]


def _differing(texts: Sequence[str]) -> list[tuple[int, int]]:
    """For each text, the span from where it starts to differ from the text sharing its
    longest prefix to where it stops differing from the one sharing its longest suffix (the
    closest texts are neighbours in sorted order, forwards and backwards)."""
    prefix, suffix = [0] * len(texts), [0] * len(texts)
    for shared, backwards in ((prefix, False), (suffix, True)):
        keyed = [t[::-1] if backwards else t for t in texts]
        order = sorted(range(len(texts)), key=keyed.__getitem__)
        for a, b in zip(order, order[1:], strict=False):
            common = len(os.path.commonprefix([keyed[a], keyed[b]]))
            shared[a], shared[b] = max(shared[a], common), max(shared[b], common)
    spans = []
    for text, p, q in zip(texts, prefix, suffix, strict=True):
        start, end = min(p, len(text) - q), max(p + 1, len(text) - q)
        spans.append((max(start, 0), min(end, len(text))))
    return spans


_WIDEN = 40  # characters a span grows by, at most, to show the whole argument around it


def _widened(text: str, span: tuple[int, int], front: int, room: int) -> tuple[int, int]:
    """`span` grown to the argument or item around it (``seed=3`` rather than ``3``), by at
    most `_WIDEN` characters each way and never past `room` characters in all."""
    start, end = span
    floor = max(front, start - _WIDEN, end - room)
    while start > floor and text[start - 1] not in "([{" and text[start - 2 : start] != ", ":
        start -= 1
    ceiling = min(len(text) - 1, end + _WIDEN, start + room)
    while end < ceiling and text[end] not in ",)]}":
        end += 1
    return start, end


def _cut_around(text: str, span: tuple[int, int], front: int, width: int) -> str:
    """`text` cut to `width` with ``…`` before and after `span` (where it differs), which
    stays whole with some context (or its start, if it alone is too long); the first `front`
    characters (the name) always stay."""
    if len(text) <= width:
        return text
    start, end = max(span[0], front), max(span[1], span[0], front)
    least_a, least_b = min(start, front + 1), min(len(text) - end, 2)
    room = width - least_a - least_b
    if end - start > room:  # the difference alone is too long: keep its start
        return _head(text[:start], least_a, front) + text[start : start + room - 1] + "…)"
    start, end = _widened(text, (start, end), front, room)
    a, w, b = text[:start], text[start:end], text[end:]
    spare = width - len(w)
    ka = min(len(a), max(min(len(a), front + 1), spare // 2))
    kb = min(len(b), spare - ka)
    ka = min(len(a), spare - kb)
    tail = b if len(b) <= kb else _ELLIPSIS + b[len(b) - max(kb - 1, 1) :]
    return _head(a, ka, front) + w + tail


def _head(a: str, k: int, front: int) -> str:
    """The start of a text, `k` characters with ``…`` if cut, never fewer than `front`."""
    return a if len(a) <= k else a[: max(k - 1, front)] + _ELLIPSIS


def unknown_task(key: str) -> str:
    """``<Name 1f2e3a4b>``: an upstream task whose arguments are not known here."""
    name, _, task_id = key.rpartition("/")
    return f"<{name} {task_id[:8]}>"


def args_reader(store: Store) -> Lookup:
    """A lookup that reads each task's stored arguments through `store` (a file read each)."""

    def read(key: str) -> str | None:
        name, _, task_id = key.rpartition("/")
        if not is_valid_task_name(name) or not task_id.isalnum():
            return None  # not a key the store wrote: never a path to follow
        return store.read_args(store.locate(name, task_id))

    return read


def memoized(lookup: Lookup) -> Lookup:
    """`lookup`, asked at most once per key (a view naming many tasks of one upstream)."""
    seen: dict[str, str | None] = {}

    def cached(key: str) -> str | None:
        if key not in seen:
            seen[key] = lookup(key)
        return seen[key]

    return cached


def _last(qualified: object) -> str:
    """``Color`` of ``sweep.Color``: the class as the code that uses it writes it."""
    return str(qualified).rpartition(".")[2]


class _Renderer:
    """Canonical JSON back to Python text. Total: JSON of an unknown shape (an older cache, a
    hand-edited file) is shown as compact JSON, never an error."""

    __slots__ = ("_budget", "_lookup", "_parsed")

    def __init__(self, lookup: Lookup | None, budget: int | None) -> None:
        self._lookup = lookup
        self._budget = budget
        self._parsed: dict[str, dict[str, JSON] | None] = {}

    def arguments(self, args: dict[str, JSON], depth: int) -> str:
        return self._join(
            list(args.items()), lambda kv: f"{kv[0]}={self.value(kv[1], depth)}", ", "
        )

    def value(self, canon: JSON, depth: int) -> str:
        if isinstance(canon, list):
            return f"[{self._seq(canon, depth)}]"
        if isinstance(canon, dict):
            tag = next(iter(canon), None)
            if tag is not None and tag.startswith("__") and tag.endswith("__"):
                try:
                    return self._tagged(tag, canon, depth)
                except (TypeError, ValueError, KeyError, IndexError, AttributeError):
                    return _compact(canon)
            return self._dict(canon, depth)
        return repr(canon)  # None, bool, int, float, str print as in Python already

    def _tagged(self, tag: str, canon: dict[str, JSON], depth: int) -> str:
        body = canon[tag]
        if tag == "__task__":
            return self._task(str(body), depth)
        if tag == "__item__":
            base, key = body
            return f"{self.value(base, depth)}[{self.value(key, depth)}]"
        if tag == "__const__":
            return self.value(body, depth)
        if tag == "__dict__":  # a dict whose keys look like tags
            return self._dict(body, depth)
        if tag in ("__tuple__", "__futurelist__"):
            items = list(body)
            if tag == "__futurelist__":
                return f"[{self._seq(items, depth)}]"
            return f"({self._seq(items, depth)}{',' if len(items) == 1 else ''})"
        if tag in ("__items__", "__futuredict__"):
            return "{" + self._join(list(body), lambda kv: self._pair(kv, depth), ", ") + "}"
        if tag in ("__set__", "__frozenset__"):
            inner = self._seq(list(body), depth)
            if tag == "__frozenset__":
                return f"frozenset({{{inner}}})" if body else "frozenset()"
            return f"{{{inner}}}" if body else "set()"
        if tag == "__enum__":
            return f"{_last(body)}.{canon['name']}"
        if tag in ("__dataclass__", "__pydantic__"):
            fields = canon["fields"]
            return f"{_last(body)}({self.arguments(fields, depth)})"
        if tag == "__path__":
            return f"Path({str(body)!r})"
        if tag == "__bytes__":
            return repr(bytes.fromhex(str(body)))
        if tag == "__float__":
            return f"float({str(body)!r})"
        return _compact(canon)

    def _pair(self, pair: JSON, depth: int) -> str:
        key, value = pair
        return f"{self.value(key, depth)}: {self.value(value, depth)}"

    def _dict(self, canon: dict[str, JSON], depth: int) -> str:
        return "{" + self._join(list(canon.items()), lambda kv: self._pair(kv, depth), ", ") + "}"

    def _seq(self, items: list[JSON], depth: int) -> str:
        return self._join(items, lambda v: self.value(v, depth), ", ")

    def _task(self, key: str, depth: int) -> str:
        name = key.rpartition("/")[0]
        if depth >= _DEPTH:
            return f"{name}(…)"
        args = self._args_of(key)
        if args is None:
            return unknown_task(key)
        return f"{name}({self.arguments(args, depth + 1)})"

    def _args_of(self, key: str) -> dict[str, JSON] | None:
        if key in self._parsed:
            return self._parsed[key]
        args = None
        text = self._lookup(key) if self._lookup is not None else None
        if text:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            args = parsed if isinstance(parsed, dict) else None
        self._parsed[key] = args
        return args

    def _join(self, items: list[T], show: Callable[[T], str], sep: str) -> str:
        """`items` shown and joined; past twice the budget only both ends are shown (the
        middle is cut from the whole text anyway)."""
        budget = self._budget
        if budget is None or len(items) < 3:
            return sep.join(show(item) for item in items)
        front = _take(items, show, budget, len(sep))
        if len(front) == len(items):
            return sep.join(front)
        back = _take(items[len(front) :][::-1], show, budget, len(sep))
        if len(front) + len(back) == len(items):
            return sep.join([*front, *reversed(back)])
        return sep.join([*front, _ELLIPSIS, *reversed(back)])


def _take(items: Iterable[T], show: Callable[[T], str], budget: int, sep: int) -> list[str]:
    """Shown items from the start of `items` until they fill `budget` characters."""
    out: list[str] = []
    used = 0
    for item in items:
        if used > budget:
            break
        text = show(item)
        out.append(text)
        used += len(text) + sep
    return out


def _compact(canon: JSON) -> str:
    return json.dumps(canon, separators=(",", ":"), ensure_ascii=False)
