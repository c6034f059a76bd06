"""Code identities of task classes: a task's own code and everything it reaches in your code.

What a task class's identity covers::

    identity(Main)
      Main and its task base classes ........... their source, as an AST dump: no comments,
                                                 no docstrings, no formatting
      reached from their methods, recursively (each object once, so cycles end):
        functions, methods, lambdas, classes ... the same, of their own source
        default arguments, closures ............ their values
        module constants ....................... their values (numbers, strings, tuples, ...)
        your modules (``helpers.scale(x)``) .... the attributes the code names
        the standard library and installed
        packages ............................... their qualified names only; a distribution's
                                                 version only if the task lists it in
                                                 ``task_requires``
        other task classes, taskproc ........... nothing: an upstream task's result reaches a
                                                 task through its stamp, not its code
        code without source .................... what can be seen: its bytecode, or its
                                                 qualified name and its distribution's version

*Your code* is every module that is neither the standard library nor taskproc nor under an
installation folder (site-packages, dist-packages, the interpreter's own): a project installed
in editable mode is your code, a package installed by pip is not.

The digest is blake2b over the task's own classes (qualified name and AST dump of each, as
taskproc 0.26 hashed them), then over every other entry reached (key, kind, digest), sorted by
key. A task that reaches nothing else keeps the digest 0.26 gave it, so its results in caches
made by 0.26 stay fresh; other tasks rerun once under ``detect_source_change``
(docs/freshness.md).

One `Fingerprints` serves one run: each source file is parsed once (`_source.py`), each
object's contribution made once (`_reach.py`), what a reference reaches computed once per
strongly connected component of the references (`_Closures`, here), and each class's identity
computed once and shared by all its instances. Nothing here raises for code it cannot read:
such code counts by what can be seen.
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from taskproc.model._reach import MODULE, SKIP, TASK, VIA, Ref, Walker, digest_text
from taskproc.model._source import SOURCE_LIMIT
from taskproc.store import CodeEntry


@dataclass(frozen=True, slots=True)
class CodeIdentity:
    """A task class's code identity: its digest and what it covers (its own classes first)."""

    digest: str
    entries: tuple[CodeEntry, ...]


# -- identities ----------------------------------------------------------------------------


class _Closures:
    """What each reference reaches, transitively, as a bitmask of entries: computed once per
    strongly connected component of the reference graph (Tarjan, without recursion), so that a
    helper reached by a hundred task classes is walked once, and cycles end."""

    def __init__(self, walker: Walker) -> None:
        self._walker = walker
        self.entries: list[CodeEntry] = []
        self.keys: list[str] = []
        self.lines: list[bytes] = []  # what each entry adds to a digest
        self._index: dict[CodeEntry, int] = {}
        self._masks: dict[tuple[int, str | None, frozenset[str] | None], int] = {}

    def _key(self, ref: Ref) -> tuple[int, str | None, frozenset[str] | None]:
        """Refs that reach the same: names matter for modules only, bindings only for what
        a binding names (constants, lambdas, objects, external names)."""
        value = ref.value
        if issubclass(type(value), types.ModuleType):  # not isinstance: it may ask the value
            return id(value), None, ref.names
        node = self._walker.node(value)
        if node.kind == TASK:
            return id(value), None, ref.names
        return id(value), None if node.named else ref.binding, None

    def _expand(self, ref: Ref) -> tuple[int, list[Ref] | tuple[Ref, ...]]:
        """The entry bit of `ref` (0 for none) and the refs it leads to."""
        node = self._walker.node(ref.value)
        if node.kind == SKIP:
            return 0, ()
        if node.kind == MODULE:
            return 0, self._walker.globals_read(vars(ref.value), node.key, ref.names)
        if node.kind == TASK:
            return 0, self._walker.task_members(ref.value, ref.names)
        if node.kind == VIA:
            return 0, [Ref(r.value, ref.binding, r.names) for r in node.refs]
        key = node.key if node.named or not ref.binding else ref.binding
        source = node.source
        if not source and node.kind == "constant" and ref.binding and not node.named:
            source = f"{ref.binding.rpartition('.')[2]} = {node.text}"
        entry = CodeEntry(key, node.kind, node.digest, (source or node.text)[:SOURCE_LIMIT])
        index = self._index.get(entry)
        if index is None:
            index = self._index[entry] = len(self.entries)
            self.entries.append(entry)
            self.keys.append(key)
            self.lines.append(f"\n{key}\0{node.kind}\0{node.digest}".encode("utf-8", "replace"))
        return 1 << index, node.refs

    def reach(self, root: Ref) -> int:
        """The entries `root` reaches (itself included), as a bitmask."""
        done = self._masks
        first = self._key(root)
        if first in done:
            return done[first]
        order: dict[Any, int] = {}
        low: dict[Any, int] = {}
        own: dict[Any, int] = {}
        after: dict[Any, list[Any]] = {}
        stack: list[Any] = []
        on_stack: set[Any] = set()

        def enter(ref: Ref, key: Any) -> Iterator[tuple[Ref, Any]]:
            order[key] = low[key] = len(order)
            stack.append(key)
            on_stack.add(key)
            own[key], nexts = self._expand(ref)
            keyed = [(r, self._key(r)) for r in nexts]
            after[key] = [k for _, k in keyed]
            return iter(keyed)

        work = [(first, enter(root, first))]
        while work:
            key, todo = work[-1]
            for ref, k in todo:
                if k in done:
                    continue
                if k not in order:
                    work.append((k, enter(ref, k)))
                    break
                if k in on_stack:
                    low[key] = min(low[key], order[k])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[key])
                if low[key] == order[key]:  # the root of a component: finish it
                    members = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        members.append(m)
                        if m == key:
                            break
                    inside = set(members)
                    mask = 0
                    for m in members:
                        mask |= own[m]
                        for k in after[m]:
                            if k not in inside:
                                mask |= done[k]
                    for m in members:
                        done[m] = mask
        return done[first]


def _bits(mask: int) -> list[int]:
    """The positions of the bits set in `mask`, lowest first."""
    text = bin(mask)[:1:-1]  # lowest bit first, without "0b"
    return [i for i, c in enumerate(text) if c == "1"]


class Fingerprints:
    """Code identities of task classes, each computed once: one of these serves one run, so
    a new run sees edits made in between. Calling it gives a class's digest."""

    def __init__(self) -> None:
        self._walker = Walker()
        self._closures = _Closures(self._walker)
        self._ids: dict[type, CodeIdentity] = {}

    def __call__(self, cls: type) -> str:
        return self.identity(cls).digest

    def identity(self, cls: type) -> CodeIdentity:
        """The code identity of `cls` (see the module docstring)."""
        found = self._ids.get(cls)
        if found is None:
            try:
                found = self._identity(cls)
            except Exception as exc:  # never fail a run: such a class counts by its name
                what = f"{cls.__module__}.{cls.__qualname__} (unreadable: {type(exc).__name__})"
                found = CodeIdentity(digest_text(what), ())
            self._ids[cls] = found
        return found

    def _identity(self, cls: type) -> CodeIdentity:
        walker, closures = self._walker, self._closures
        h = hashlib.blake2b(digest_size=12)
        own: dict[str, CodeEntry] = {}
        mask = 0
        for klass in cls.__mro__:
            kind = walker.module_kind(klass.__module__)
            if kind == "user":
                node = walker.class_node(klass)
                h.update(klass.__qualname__.encode())
                h.update(node.text.encode())
                own[node.key] = CodeEntry(node.key, node.kind, node.digest, node.source)
                for ref in node.refs:
                    mask |= closures.reach(ref)
            elif kind == "external" and klass.__module__.partition(".")[0] not in (
                sys.stdlib_module_names
            ):
                mask |= closures.reach(Ref(klass))  # a base class from an installed package
        keys, lines = closures.keys, closures.lines
        found = [i for i in _bits(mask) if keys[i] not in own]
        found.sort(key=keys.__getitem__)
        names = [keys[i] for i in found]
        requires = getattr(cls, "_tp_requires", ())
        if not requires and len(set(names)) == len(names):  # the common case: no collisions
            h.update(b"".join([lines[i] for i in found]))
            extra = [closures.entries[i] for i in found]
            return CodeIdentity(h.hexdigest(), (*own.values(), *extra))
        by_key = _distinct([closures.entries[i] for i in found])
        for dist in requires:
            version = walker.version(dist)
            key = f"{dist} (distribution)"
            by_key[key] = CodeEntry(key, "distribution", digest_text(version), version)
        for key in sorted(by_key):
            e = by_key[key]
            h.update(f"\n{key}\0{e.kind}\0{e.digest}".encode("utf-8", "replace"))
        return CodeIdentity(h.hexdigest(), (*own.values(), *(by_key[k] for k in sorted(by_key))))


def _distinct(entries: list[CodeEntry]) -> dict[str, CodeEntry]:
    """Entries by key; different objects under one key (lambdas, instances) become
    ``key``, ``key#2``, ... in the order of their digests."""
    out: dict[str, CodeEntry] = {}
    by_key: dict[str, list[CodeEntry]] = {}
    for e in entries:
        by_key.setdefault(e.key, []).append(e)
    for key, found in by_key.items():
        if len(found) == 1:
            out[key] = found[0]
            continue
        digests = sorted({e.digest for e in found})
        for e in found:
            n = digests.index(e.digest) + 1
            name = key if n == 1 else f"{key}#{n}"
            out.setdefault(name, e if n == 1 else e._replace(key=name))
    return out


def fingerprint(cls: type) -> str:
    """The digest of the code identity of `cls` (a one-off; runs use `Fingerprints`)."""
    return Fingerprints()(cls)


def fingerprinter() -> Fingerprints:
    """A new `Fingerprints`: one serves one pass over a graph."""
    return Fingerprints()
