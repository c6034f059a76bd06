"""What each object a task's code reaches contributes to its code identity, and what it
reaches in turn: one `Node` per object, made once per run by a `Walker`. Whose code it is
decides: your code counts by its source, the standard library and installed packages by their
names, taskproc and other task classes not at all (`_fingerprint.py` draws the whole)."""

from __future__ import annotations

import ast
import enum
import functools
import hashlib
import os
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

from taskproc.model._naming import module_name
from taskproc.model._source import (
    SourceFiles,
    bytecode_text,
    class_dump,
    code_names,
    code_text,
    def_names,
    dump,
    names_in,
)

_SCALARS = frozenset(
    {type(None), bool, int, float, complex, str, bytes, type(Ellipsis), range, slice}
)
_CONTAINERS = frozenset({tuple, list, set, frozenset, dict})
_MAX_ITEMS = 100_000  # a longer container counts by its length only
_MAX_DEPTH = 20
_INSTALLED_PARTS = frozenset({"site-packages", "dist-packages"})
NO_NAMES: frozenset[str] = frozenset()
_BUILTINS = (
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)

# Kinds of nodes that are not entries of an identity themselves.
SKIP, VIA, MODULE = "skip", "via", "module"


def digest_text(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Ref:
    """A value reached, the global it was read from ("pipe.FACTOR"), and for a module the
    attribute names the reading code uses."""

    value: Any
    binding: str | None = None
    names: frozenset[str] = NO_NAMES


@dataclass(frozen=True, slots=True)
class Node:
    """What one object contributes: its kind, its own key, what counts (`text`), what people
    read (`source`), and what it reaches. `named`: the key is the object's own (a function or
    class defined with a name), so the global it was read from does not rename it."""

    kind: str
    key: str
    text: str
    source: str
    refs: tuple[Ref, ...]
    named: bool = False
    digest: str = ""


SKIP_NODE = Node(SKIP, "", "", "", ())


def _via(*values: Any) -> Node:
    return Node(VIA, "", "", "", tuple(Ref(v) for v in values if v is not None))


def _is_task_class(value: type) -> bool:
    return getattr(value, "_tp_labels", None) is not None


def _qualname(value: Any) -> str:
    return str(getattr(value, "__qualname__", None) or getattr(value, "__name__", "?"))


@functools.lru_cache(maxsize=1)  # the interpreter's folders do not move while it runs
def _install_roots() -> tuple[str, ...]:
    """The standard library's folder (installed packages are found by the name of their
    folder, `_INSTALLED_PARTS`: asking sysconfig costs more than a cached rerun's planning)."""
    return (os.path.join(os.path.realpath(os.path.dirname(os.__file__)), ""),)


# -- the walk ----------------------------------------------------------------------------------


class Walker:
    """What each object contributes, computed once (see the module docstring)."""

    def __init__(self) -> None:
        self._nodes: dict[int, tuple[Any, Node]] = {}
        self.sources = SourceFiles()
        self._kinds: dict[str, str] = {}
        self._installed_files: dict[str, bool] = {}
        self._roots = _install_roots()
        self._versions: dict[str, str] = {}
        self._top_dists: dict[str, list[str]] | None = None

    # -- whose code is it --------------------------------------------------------------

    def module_kind(self, name: str | None) -> str:
        """ "user" (your code), "external" (stdlib, installed) or "framework" (taskproc,
        builtins: never counted)."""
        if not name:
            return "external"
        kind = self._kinds.get(name)
        if kind is None:
            kind = self._kinds[name] = self._module_kind(name)
        return kind

    def _module_kind(self, name: str) -> str:
        top = name.partition(".")[0]
        if top == "taskproc" or name == "builtins":
            return "framework"
        if top in sys.stdlib_module_names:
            return "external"
        module = sys.modules.get(name)
        if module is None:
            return "user"  # cannot tell: counting it is the safe side
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            return "user" if name == "__main__" else "external"  # a notebook; a builtin module
        return "external" if self._installed(file) else "user"

    def _installed(self, file: str) -> bool:
        hit = self._installed_files.get(file)
        if hit is None:
            real = os.path.realpath(file)
            hit = bool(_INSTALLED_PARTS.intersection(PurePath(real).parts)) or real.startswith(
                self._roots
            )
            self._installed_files[file] = hit
        return hit

    def version(self, dist: str) -> str:
        """The installed version of a distribution ("not installed" if none)."""
        found = self._versions.get(dist)
        if found is None:
            from importlib import metadata  # here: most runs never need it

            try:
                found = metadata.version(dist)
            except metadata.PackageNotFoundError:
                found = "not installed"
            except Exception as exc:  # a broken installation counts as what it says
                found = f"unreadable ({type(exc).__name__})"
            self._versions[dist] = found
        return found

    def _distribution_versions(self, module: str) -> str:
        """The distributions a module comes from, with versions ("" if none)."""
        from importlib import metadata

        if self._top_dists is None:
            try:
                self._top_dists = dict(metadata.packages_distributions())
            except Exception:
                self._top_dists = {}
        dists = self._top_dists.get(module.partition(".")[0], [])
        return ", ".join(f"{d} {self.version(d)}" for d in sorted(set(dists)))

    # -- nodes -------------------------------------------------------------------------

    def node(self, value: Any) -> Node:
        hit = self._nodes.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        try:
            made = self._make(value)
        except Exception:  # code we cannot read counts by what can be seen, never fails a run
            name = f"{type(value).__module__}.{type(value).__qualname__}"
            made = Node("unreadable", name, name, "", ())
        if made.kind not in (SKIP, VIA, MODULE):
            made = replace(made, digest=digest_text(made.text))
        self._nodes[id(value)] = (value, made)
        return made

    def class_node(self, cls: type) -> Node:
        """`node` for a class even if it is a task class (the classes of a task's own MRO)."""
        key = id(cls) ^ 1  # apart from `node`'s entry, which skips task classes
        hit = self._nodes.get(key)
        if hit is not None and hit[0] is cls:
            return hit[1]
        made = self._class_node(cls)
        made = replace(made, digest=digest_text(made.text))
        self._nodes[key] = (cls, made)
        return made

    def _make(self, value: Any) -> Node:
        if isinstance(value, types.ModuleType):
            kind = self.module_kind(value.__name__)
            if kind == "user":
                return Node(MODULE, module_name(value.__name__), "", "", ())
            return SKIP_NODE if kind == "framework" else _external(value.__name__)
        if isinstance(value, type):
            if _is_task_class(value):
                return SKIP_NODE
            return self._by_module(value, value.__module__, self._class_node)
        if isinstance(value, types.FunctionType):
            if value.__module__ is None:  # made by exec in a namespace of its own: count it
                return self._function_node(value)
            return self._by_module(value, value.__module__, self._function_node)
        if isinstance(value, (staticmethod, classmethod)):
            return _via(value.__func__)
        if isinstance(value, types.MethodType):
            return _via(value.__func__, value.__self__)
        if isinstance(value, property):
            return _via(value.fget, value.fset, value.fdel)
        if isinstance(value, functools.cached_property):
            return _via(value.func)
        if isinstance(value, functools.partial):
            refs: list[Ref] = []
            text = self.canonical((value.func, value.args, value.keywords), refs)
            return Node("constant", "partial", f"partial{text}", "", tuple(refs))
        if isinstance(value, _BUILTINS):
            return self._builtin(value)  # functions and methods written in C
        wrapped = _wrapped(value)
        if wrapped is not None:  # functools.lru_cache and other wrappers
            return _via(wrapped)
        if type(value) in _SCALARS or type(value) in _CONTAINERS or isinstance(value, enum.Enum):
            refs = []
            text = self.canonical(value, refs)
            return Node("constant", "", text, "", tuple(refs))
        return self._instance(value)

    def _by_module(self, value: Any, module: Any, make: Any) -> Node:
        mod = module if isinstance(module, str) else None
        kind = self.module_kind(mod)
        if kind == "framework":
            return SKIP_NODE
        if kind == "external":
            return _external(f"{mod}.{_qualname(value)}")
        made: Node = make(value)
        return made

    def _builtin(self, value: Any) -> Node:
        owner = getattr(value, "__self__", None)
        mod = getattr(value, "__module__", None)
        if not isinstance(mod, str):
            mod = owner.__name__ if isinstance(owner, types.ModuleType) else None
        kind = self.module_kind(mod)
        if kind == "framework" or mod is None:
            return SKIP_NODE
        key = f"{mod}.{_qualname(value)}"
        if kind == "external":
            return _external(key)
        # In your code but not Python (a C extension): its name and its distribution's version.
        text = f"{key} {self._distribution_versions(mod)}".strip()
        return Node("unreadable", key, text, "", (), named=True)

    def _instance(self, value: Any) -> Node:
        cls = type(value)
        kind = self.module_kind(cls.__module__)
        if kind == "framework":
            return SKIP_NODE
        name = f"{cls.__module__}.{cls.__qualname__}"
        if kind == "external":
            if isinstance(value, re.Pattern):
                text = f"{name}({value.pattern!r}, {value.flags})"
            elif isinstance(value, PurePath):
                text = f"{name}({str(value)!r})"
            else:
                text = name
            return Node("external", name, text, "", ())
        refs: list[Ref] = [Ref(cls)]
        try:
            state = vars(value)
        except TypeError:
            state = {}
        attrs = [
            f"{k}={self.canonical(v, refs)}"
            for k, v in sorted(state.items())
            if type(v) in _SCALARS or type(v) in _CONTAINERS
        ]
        text = f"instance of {module_name(cls.__module__)}.{cls.__qualname__}({', '.join(attrs)})"
        return Node(
            "object", f"{module_name(cls.__module__)}.{cls.__qualname__}()", text, "", tuple(refs)
        )

    def canonical(self, value: Any, refs: list[Ref], depth: int = 0) -> str:
        """A value as text that is the same in every process (no addresses, sets sorted);
        the objects in it that are code are added to `refs`."""
        t = type(value)
        if t in _SCALARS:
            return repr(value)
        if isinstance(value, enum.Enum):
            refs.append(Ref(t))
            return f"{t.__module__}.{t.__qualname__}.{value.name}"
        if t in _CONTAINERS:
            if depth > _MAX_DEPTH or len(value) > _MAX_ITEMS:
                return f"<{t.__name__} of {len(value)} items>"
            if t is dict:
                items = [
                    f"{self.canonical(k, refs, depth + 1)}: {self.canonical(v, refs, depth + 1)}"
                    for k, v in value.items()
                ]
            else:
                items = [self.canonical(x, refs, depth + 1) for x in value]
            if t in (set, frozenset, dict):
                items.sort()
            return f"{t.__name__}[{', '.join(items)}]"
        refs.append(Ref(value))
        if isinstance(value, types.ModuleType):
            return f"<module {value.__name__}>"
        if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
            return f"<{getattr(value, '__module__', None)}.{_qualname(value)}>"
        return f"<{t.__module__}.{t.__qualname__} object>"

    def globals_read(self, namespace: Any, module: str, names: frozenset[str]) -> list[Ref]:
        """The values of the globals among `names` in `namespace` (a module's dict)."""
        if not isinstance(namespace, dict):
            return []
        return [Ref(namespace[n], f"{module}.{n}", names) for n in sorted(names) if n in namespace]

    def _function_node(self, fn: types.FunctionType) -> Node:
        code = fn.__code__
        qual = fn.__qualname__
        namespace = fn.__globals__
        gname = module_name(str(namespace.get("__name__") or fn.__module__ or "<exec>"))
        key = f"{module_name(str(fn.__module__ or gname))}.{qual}"
        names = set(code_names(code))
        found = self.sources.find(code.co_filename, qual, (code.co_firstlineno,), namespace)
        if found is not None:
            nodes, source = found
            text = "\n".join(dump(n) for n in nodes)
            for n in nodes:
                names |= def_names(n)
        else:
            text, source = code_text(code, fn.__doc__), ""
        frozen = frozenset(names)
        refs = self.globals_read(namespace, gname, frozen)
        values = [self.canonical(v, refs) for v in fn.__defaults__ or ()]
        values += [
            f"{k}={self.canonical(v, refs)}" for k, v in sorted((fn.__kwdefaults__ or {}).items())
        ]
        for cell in fn.__closure__ or ():
            try:
                values.append(self.canonical(cell.cell_contents, refs))
            except ValueError:
                values.append("<empty cell>")
        wrapped = fn.__dict__.get("__wrapped__")
        if wrapped is not None:
            refs.append(Ref(wrapped))
        if values:
            text += "\nvalues: " + "; ".join(values)
        named = not qual.endswith("<lambda>")
        return Node("function", key, text, source, tuple(refs), named=named)

    def _class_node(self, cls: type) -> Node:
        mod = module_name(cls.__module__)
        key = f"{mod}.{cls.__qualname__}"
        members = list(_members(cls))
        refs: list[Ref] = []
        found = self._class_source(cls, members)
        module = sys.modules.get(cls.__module__)
        namespace = vars(module) if module is not None else {}
        if found is not None:
            node, source = found
            text = class_dump(node)
            refs += self.globals_read(namespace, mod, frozenset(names_in([node])))
        else:
            text, source = bytecode_text(cls), ""
            consts = [
                f"{k}={self.canonical(v, refs)}"
                for k, v in sorted(vars(cls).items())
                if not k.startswith(("__", "_tp_")) and type(v) in _SCALARS | _CONTAINERS
            ]
            if consts:
                text += "\nvalues: " + "; ".join(consts)
        inside = cls.__qualname__ + "."
        for member in members:
            if isinstance(member, types.FunctionType) and member.__qualname__.startswith(inside):
                refs += self.node(member).refs  # its source is part of the class's
            else:
                refs.append(Ref(member))
        refs += [Ref(base) for base in cls.__bases__]
        return Node("class", key, text, source, tuple(refs), named=True)

    def _class_source(self, cls: type, members: list[Any]) -> tuple[ast.AST, str] | None:
        codes = [m.__code__ for m in members if isinstance(m, types.FunctionType)]
        module = sys.modules.get(cls.__module__)
        files = [str(getattr(module, "__file__", "") or "")] + [c.co_filename for c in codes]
        lines = tuple(c.co_firstlineno for c in codes)
        for file in dict.fromkeys(f for f in files if f):
            found = self.sources.find(
                file, cls.__qualname__, lines, vars(module) if module else None
            )
            if found is not None:
                return found[0][0], found[1]
        return None


def _external(key: str) -> Node:
    return Node("external", key, key, "", (), named=False)


def _wrapped(value: Any) -> Any:
    try:
        return vars(value).get("__wrapped__")
    except TypeError:
        return None


def _members(cls: type) -> Iterator[Any]:
    """The code and classes a class defines (those of its nested classes too)."""
    inside = cls.__qualname__ + "."
    for name, value in vars(cls).items():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            yield from (f for f in (value.fget, value.fset, value.fdel) if f is not None)
        elif isinstance(value, functools.cached_property):
            yield value.func
        elif isinstance(value, (types.FunctionType, functools.partial)):
            yield value
        elif isinstance(value, type) and not name.startswith("__"):
            if value.__qualname__.startswith(inside) and value.__module__ == cls.__module__:
                yield from _members(value)
                yield from value.__bases__
            else:
                yield value
