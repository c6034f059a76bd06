"""What each object a task's code reaches contributes to its code identity, and what it
reaches in turn: one `Node` per object, made once per run by a `Walker`. Whose code it is
decides: your code counts by its source, the standard library and installed packages by their
names, taskproc and other task classes not at all (`_fingerprint.py` draws the whole)."""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import textwrap
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

from taskproc.model._naming import module_name
from taskproc.model._source import (
    SourceFiles,
    bytecode_text,
    class_dump,
    code_imports,
    code_names,
    code_text,
    def_names,
    has_imports,
    imports_in,
    names_in,
    plain_dump,
)
from taskproc.model._values import SCALARS, ValueText

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
SKIP, VIA, MODULE, TASK = "skip", "via", "module", "task"


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
        self.mismatched: dict[str, str] = {}  # modules whose file differs from the code run

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
        """Decided by where the module's file is, not by its name: your own
        ``statistics.py`` is your code although the standard library has one."""
        top = name.partition(".")[0]
        if top == "taskproc":
            return "framework"
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None) if module is not None else None
        if isinstance(file, str):
            return "external" if self._installed(file) else "user"
        if name == "builtins" or top in sys.stdlib_module_names:
            return "external"
        if module is None:
            return "user"  # cannot tell: counting it is the safe side
        return "user" if name == "__main__" else "external"  # a notebook; a builtin module

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
        if made.kind not in (SKIP, VIA, MODULE, TASK):
            made = replace(made, digest=digest_text(made.text))
        self._nodes[id(value)] = (value, made)
        return made

    def class_node(self, cls: type) -> Node:
        """`node` for a class even if it is a task class (the classes of a task's own MRO)."""
        key = id(cls) ^ 1  # apart from `node`'s entry, which skips task classes
        hit = self._nodes.get(key)
        if hit is not None and hit[0] is cls:
            return hit[1]
        made = self._class_node(cls, own=True)
        made = replace(made, digest=digest_text(made.text))
        self._nodes[key] = (cls, made)
        return made

    def _make(self, value: Any) -> Node:
        if isinstance(value, _Made):
            return value.node
        if isinstance(value, types.ModuleType):
            kind = self.module_kind(value.__name__)
            if kind == "user":
                return Node(MODULE, module_name(value.__name__), "", "", ())
            return SKIP_NODE if kind == "framework" else _external(value.__name__)
        if isinstance(value, type):
            if _is_task_class(value):
                if self.module_kind(value.__module__) != "user":
                    return SKIP_NODE
                return Node(
                    TASK, f"{module_name(value.__module__)}.{value.__qualname__}", "", "", ()
                )
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
        if isinstance(value, _BUILTINS):
            return self._builtin(value)  # functions and methods written in C
        wrapped = _wrapped(value)
        if wrapped is not None and not isinstance(value, functools.partial):
            return _via(wrapped)  # functools.lru_cache and other wrappers
        refs: list[Ref] = []
        text = self.canonical(value, refs)
        t = type(value)
        key = "" if t in SCALARS else f"{self._type_name(t)}()"
        return Node("constant", key, text, "", tuple(refs))

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

    def _type_name(self, t: type) -> str:
        return f"{module_name(str(t.__module__))}.{t.__qualname__}"

    def _is_user_type(self, t: type) -> bool:
        return self.module_kind(t.__module__) == "user"

    def canonical(self, value: Any, refs: list[Ref]) -> str:
        """A value as Python writes it, the same in every process (`_values.py`); the code
        in it is added to `refs`."""
        return ValueText(
            lambda code: refs.append(Ref(code)), self._type_name, self._is_user_type
        ).text(value)

    def globals_read(self, namespace: Any, module: str, names: frozenset[str]) -> list[Ref]:
        """The values of the globals among `names` in `namespace` (a module's dict)."""
        if not isinstance(namespace, dict):
            return []
        return [Ref(namespace[n], f"{module}.{n}", names) for n in sorted(names) if n in namespace]

    def task_members(self, cls: type, names: frozenset[str]) -> list[Ref]:
        """What code reading `names` uses of another task class (``Prep.clean(x)``): its
        functions and attributes of those names, from your classes in its MRO."""
        refs: list[Ref] = []
        key = f"{module_name(cls.__module__)}.{cls.__qualname__}"
        for name in sorted(names):
            for klass in cls.__mro__:
                if name in vars(klass):
                    if self.module_kind(klass.__module__) == "user":
                        refs.append(Ref(vars(klass)[name], f"{key}.{name}"))
                    break
        return refs

    # -- functions --------------------------------------------------------------------

    def _check(
        self, file: str, code: types.CodeType, qualname: str, namespace: Any, source: str = ""
    ) -> bool:
        """Whether the loaded `code` is what its file says now; if not, the module is noted
        (and the run says so once). Modules that Python's own loader did not compile
        (pytest rewrites asserts; a notebook's cells are their own record) are taken as
        they are."""
        loader = namespace.get("__loader__") if isinstance(namespace, dict) else None
        if not isinstance(loader, importlib.machinery.SourceFileLoader):
            return True
        if self.sources.matches(file, code, qualname, namespace, source):
            return True
        module = namespace.get("__name__") if isinstance(namespace, dict) else None
        name = module_name(str(module or "?"))
        if name not in self.mismatched:
            self.mismatched[name] = file
            _warn_mismatch(name, file)
        return False

    def _function_node(self, fn: types.FunctionType) -> Node:
        code = fn.__code__
        wrapped = fn.__dict__.get("__wrapped__")
        if wrapped is not None:
            return self._wrapper_node(fn, wrapped)
        qual = fn.__qualname__
        namespace = fn.__globals__
        gname = module_name(str(namespace.get("__name__") or fn.__module__ or "<exec>"))
        key = f"{module_name(str(fn.__module__ or gname))}.{qual}"
        names = set(code_names(code))
        code_qual = _code_qualname(fn)
        found = None
        if code_qual is not None:
            found = self.sources.find(
                code.co_filename, code_qual, (code.co_firstlineno,), namespace
            )
            if found is not None and not self._check(
                code.co_filename, code, code_qual, namespace, found[1]
            ):
                found = None
        imports: list[tuple[str, int, tuple[str, ...]]] = []
        if found is not None:
            nodes, source = found
            text = "\n".join(plain_dump(n) for n in nodes)
            for n in nodes:
                names |= def_names(n)
            if has_imports(code):
                imports = imports_in(nodes)
        else:
            text, source = code_text(code), ""
            if has_imports(code):
                imports = code_imports(code)
        frozen = frozenset(names)
        refs = self.globals_read(namespace, gname, frozen)
        if imports:
            refs += self._imported(imports, namespace, frozen)
        values = [self.canonical(v, refs) for v in fn.__defaults__ or ()]
        values += [
            f"{k}={self.canonical(v, refs)}" for k, v in sorted((fn.__kwdefaults__ or {}).items())
        ]
        captured = self._closure(fn, refs)
        values += [text for _, text in captured]
        if values:
            text += "\nvalues: " + "; ".join(values)
        if source and captured:
            source = textwrap.dedent(source).rstrip("\n")
            source += "".join(f"\n# closure: {n} = {t}" for n, t in captured)
        named = "<" not in qual  # lambdas and nested functions are named by where they are bound
        return Node("function", key, text, source, tuple(refs), named=named)

    def _closure(
        self, fn: types.FunctionType, refs: list[Ref], skip: Any = None
    ) -> list[tuple[str, str]]:
        """The values a function captured, by name (those that are `skip` left out)."""
        out = []
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:
                out.append((name, "<empty cell>"))
                continue
            if value is not skip:
                out.append((name, self.canonical(value, refs)))
        return out

    def _wrapper_node(self, fn: types.FunctionType, wrapped: Any) -> Node:
        """A function made by a decorator with ``functools.wraps``: one entry with the
        decorated function's key and source, plus what the wrapper captured; the wrapper's
        own code counts through the decorator that made it (reached by the ``@`` line)."""
        inner = self.node(wrapped)
        refs = list(inner.refs)
        if inner.kind in (SKIP, VIA, MODULE, TASK):
            refs.append(Ref(wrapped))
        captured = self._closure(fn, refs, skip=wrapped)
        namespace = fn.__globals__
        code_qual = _code_qualname(fn) or ""
        outer = (
            namespace.get(code_qual.partition(".<locals>.")[0]) if "<locals>" in code_qual else None
        )
        if isinstance(outer, types.FunctionType):
            refs.append(Ref(outer))
            own = f"made by {outer.__module__}.{outer.__qualname__}"
        else:
            own = code_text(fn.__code__)  # no maker to count it through: its code counts here
        text = f"{inner.text}\nwrapper: {own}; " + "; ".join(t for _, t in captured)
        source = inner.source.rstrip("\n") + "".join(
            f"\n# decorator's closure: {n} = {t}" for n, t in captured
        )
        key = inner.key or f"{module_name(str(fn.__module__))}.{fn.__qualname__}"
        return Node("function", key, text, source, tuple(refs), named=inner.named)

    def _imported(
        self,
        imports: list[tuple[str, int, tuple[str, ...]]],
        namespace: Any,
        names: frozenset[str],
    ) -> list[Ref]:
        """What the imports inside a function bring in (``from helpers import scale``)."""
        package = namespace.get("__package__") if isinstance(namespace, dict) else None
        refs: list[Ref] = []
        for module, level, fromlist in imports:
            try:
                name = (
                    importlib.util.resolve_name("." * level + module, package) if level else module
                )
            except (ImportError, ValueError):
                continue
            found = self._import(name)
            if found is None:
                continue
            if not fromlist:
                top = self._import(name.partition(".")[0]) if "." in name else found
                if top is not None:
                    refs.append(Ref(top, None, names))
                continue
            for attr in fromlist:
                if attr == "*" or not isinstance(found, types.ModuleType):
                    refs.append(Ref(found, None, names))
                    continue
                value = getattr(found, attr, None)
                if value is None:
                    value = self._import(f"{name}.{attr}")
                if value is not None:
                    refs.append(Ref(value, f"{module_name(name)}.{attr}", names))
        return refs

    def _import(self, name: str) -> Any:
        """The module `name` as a function importing it gets it: your modules imported (the
        task would import them), others only named (so that it makes no difference whether
        this process happened to import them already)."""
        module = sys.modules.get(name)
        if module is None:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError, AttributeError):
                spec = None
            origin = getattr(spec, "origin", None)
            if spec is None or not isinstance(origin, str) or self._installed(origin):
                return _Made(_external(name))
            try:
                module = importlib.import_module(name)
            except Exception:
                return None  # the task fails the same way when it runs
        if self.module_kind(name) != "user":
            return _Made(_external(name))
        return module

    # -- classes ----------------------------------------------------------------------

    def _class_node(self, cls: type, own: bool = False) -> Node:
        mod = module_name(cls.__module__)
        key = f"{mod}.{cls.__qualname__}"
        members = list(_members(cls))
        refs: list[Ref] = []
        found = self._class_source(cls, members)
        module = sys.modules.get(cls.__module__)
        namespace = vars(module) if module is not None else {}
        node: ast.AST | None = None
        if found is not None:
            node, source = found
            text = class_dump(node) if own else plain_dump(ast.Module(body=[node], type_ignores=[]))  # type: ignore[list-item]
            refs += self.globals_read(namespace, mod, frozenset(names_in([node])))
        else:
            text, source = bytecode_text(cls), ""
        values = self._class_values(cls, key, node)
        if values is not None:
            refs.append(Ref(values))
        if "<locals>" in cls.__qualname__:  # made by a factory: the factory counts too
            outer = namespace.get(cls.__qualname__.partition(".")[0])
            if isinstance(outer, types.FunctionType):
                refs.append(Ref(outer))
        inside = cls.__qualname__ + "."
        for member in members:
            if isinstance(member, types.FunctionType) and member.__qualname__.startswith(inside):
                refs += self.node(member).refs  # its source is part of the class's
            else:
                refs.append(Ref(member))
        refs += [Ref(base) for base in cls.__bases__]
        return Node("class", key, text, source, tuple(refs), named=True)

    def _class_values(self, cls: type, key: str, node: ast.AST | None) -> _Made | None:
        """What a class holds that its statement does not show: attributes set after it
        (``Scaler.k = 3``) or given other values than its literals, and the values its
        methods captured (a class made by a factory). None if nothing."""
        literals, assigned = _class_body_names(node)
        task = _is_task_class(cls)
        refs: list[Ref] = []
        lines = []
        inside = cls.__qualname__ + "."
        for name, value in vars(cls).items():
            if _is_dunder(name) or (task and name.startswith(("_tp_", "task_"))):
                continue  # task options: task_version counts on its own, the others never
            func = getattr(value, "__func__", value)
            if isinstance(func, types.FunctionType) and func.__qualname__.startswith(inside):
                for var, text in self._closure(func, refs):
                    lines.append(f"# {cls.__qualname__}.{name} closure: {var} = {text}")
                continue
            if name in assigned:
                lit = literals.get(name, _NOT_LITERAL)
                if lit is _NOT_LITERAL or (type(lit) is type(value) and lit == value):
                    continue  # what the class statement says (or computes from what counts)
            if node is None and isinstance(
                value, (types.FunctionType, type, staticmethod, classmethod)
            ):
                continue  # no source: its methods count through the bytecode already
            lines.append(f"{cls.__qualname__}.{name} = {self.canonical(value, refs)}")
        if not lines:
            return None
        text = "\n".join(lines)
        return _Made(Node("constant", f"{key} attributes", text, text, tuple(refs), named=True))

    def _class_source(self, cls: type, members: list[Any]) -> tuple[ast.AST, str] | None:
        codes = [m for m in members if isinstance(m, types.FunctionType)]
        module = sys.modules.get(cls.__module__)
        namespace = vars(module) if module else None
        files = [str(getattr(module, "__file__", "") or "")] + [
            f.__code__.co_filename for f in codes
        ]
        lines = tuple(f.__code__.co_firstlineno for f in codes)
        inside = cls.__qualname__ + "."
        for file in dict.fromkeys(f for f in files if f):
            found = self.sources.find(file, cls.__qualname__, lines, namespace)
            if found is not None:
                for f in codes:
                    qual = _code_qualname(f)
                    if (
                        qual is not None
                        and qual.startswith(inside)
                        and f.__code__.co_filename == file
                        and not self._check(file, f.__code__, qual, f.__globals__)
                    ):
                        return None
                return found[0][0], found[1]
        return None


@dataclass(frozen=True, slots=True)
class _Made:
    """A node made ahead (a class's attributes, a module only named), reached as a value."""

    node: Node


_NOT_LITERAL = object()


def _is_dunder(name: str) -> bool:
    return (name.startswith("__") and name.endswith("__")) or (
        name.startswith("_") and name.endswith("_") and len(name) > 2  # enum's _sunder_ names
    )


def _class_body_names(node: ast.AST | None) -> tuple[dict[str, Any], set[str]]:
    """The names a class statement binds, and the literal values of those it assigns one."""
    literals: dict[str, Any] = {}
    assigned: set[str] = set()
    for stmt in getattr(node, "body", ()):
        targets: list[ast.expr] = []
        value = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            assigned.add(stmt.name)
            continue
        else:
            for sub in ast.walk(stmt):  # if/try/for blocks, imports: bound somehow
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    assigned.add(sub.id)
                elif isinstance(sub, ast.alias):
                    assigned.add((sub.asname or sub.name).partition(".")[0])
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                assigned.add(target.id)
                if value is not None:
                    try:
                        literals[target.id] = ast.literal_eval(value)
                    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                        pass
            else:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        assigned.add(sub.id)
    return literals, assigned


def _code_qualname(fn: types.FunctionType) -> str | None:
    """The qualified name of a function's code (a wrapper made with functools.wraps takes the
    name of what it wraps; its code keeps its own). None when it cannot be told (3.10)."""
    code = fn.__code__
    qual = getattr(code, "co_qualname", None)
    if isinstance(qual, str):
        return qual
    if fn.__qualname__.rpartition(".")[2] == code.co_name:
        return fn.__qualname__
    return None


def _warn_mismatch(module: str, file: str) -> None:
    """The one line a run says when code in memory differs from its file."""
    warnings.warn_explicit(
        f"{module} ({file}) was edited since it was imported and not reloaded: this run counts "
        f"and keeps the code in memory, not the file's; restart, or importlib.reload({module}), "
        "to run the file's code",
        UserWarning,
        __file__,
        0,
        registry=None,
    )


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
