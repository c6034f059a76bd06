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

One `Fingerprints` serves one run: each source file is parsed once, each object visited once,
and each class's identity computed once and shared by all its instances. Nothing here raises
for code it cannot read: such code counts by what can be seen.
"""

from __future__ import annotations

import ast
import enum
import functools
import hashlib
import linecache
import os
import re
import site
import sys
import sysconfig
import types
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

from taskproc.model._naming import module_name
from taskproc.store import CodeEntry

_SCALARS = frozenset(
    {type(None), bool, int, float, complex, str, bytes, type(Ellipsis), range, slice}
)
_CONTAINERS = frozenset({tuple, list, set, frozenset, dict})
_MAX_ITEMS = 100_000  # a longer container counts by its length only
_MAX_DEPTH = 20
_SOURCE_LIMIT = 20_000  # characters of source kept per entry for `why`'s diffs
_INSTALLED_PARTS = frozenset({"site-packages", "dist-packages"})
_NO_NAMES: frozenset[str] = frozenset()
_BUILTINS = (
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)

# Kinds of nodes that are not entries of an identity themselves.
_SKIP, _VIA, _MODULE = "skip", "via", "module"


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class CodeIdentity:
    """A task class's code identity: its digest and what it covers (its own classes first)."""

    digest: str
    entries: tuple[CodeEntry, ...]


@dataclass(frozen=True, slots=True)
class _Ref:
    """A value reached, the global it was read from ("pipe.FACTOR"), and for a module the
    attribute names the reading code uses."""

    value: Any
    binding: str | None = None
    names: frozenset[str] = _NO_NAMES


@dataclass(frozen=True, slots=True)
class _Node:
    """What one object contributes: its kind, its own key, what counts (`text`), what people
    read (`source`), and what it reaches. `named`: the key is the object's own (a function or
    class defined with a name), so the global it was read from does not rename it."""

    kind: str
    key: str
    text: str
    source: str
    refs: tuple[_Ref, ...]
    named: bool = False
    digest: str = ""


_SKIP_NODE = _Node(_SKIP, "", "", "", ())


def _via(*values: Any) -> _Node:
    return _Node(_VIA, "", "", "", tuple(_Ref(v) for v in values if v is not None))


# -- the AST: parsing, docstrings, names ---------------------------------------------------


def _strip_docstring(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        node.body = body[1:] or [ast.Pass()]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            _strip_docstring(node)
    return tree


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _index(tree: ast.Module) -> dict[str, list[ast.AST]]:
    """The definitions in a module by qualified name (as ``__qualname__`` spells them),
    docstrings stripped on the way."""
    defs: dict[str, list[ast.AST]] = {}
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _DEFS):
                stack.append((child, prefix))
                continue
            outer: list[ast.AST]
            inner: list[ast.AST]
            if isinstance(child, ast.Lambda):
                qual, outer, inner = prefix + "<lambda>", [child.args], [child.body]
            elif isinstance(child, ast.ClassDef):
                _strip_docstring(child)
                qual = prefix + child.name
                outer = [*child.bases, *child.keywords, *child.decorator_list]
                inner = list(child.body)
            else:
                _strip_docstring(child)
                qual = prefix + child.name
                outer = [*child.decorator_list, child.args]
                inner = list(child.body)
            defs.setdefault(qual, []).append(child)
            stack.extend((n, prefix) for n in outer)
            suffix = "." if isinstance(child, ast.ClassDef) else ".<locals>."
            stack.extend((n, qual + suffix) for n in inner)
    for found in defs.values():
        found.sort(key=lambda n: (n.lineno, n.col_offset))  # type: ignore[attr-defined]
    return defs


def _first_line(node: ast.AST) -> int:
    decorators: list[ast.expr] = getattr(node, "decorator_list", None) or []
    line: int = getattr(node, "lineno", 0)
    return min([line, *(d.lineno for d in decorators)])


def _names_in(nodes: list[ast.AST]) -> set[str]:
    """Names and attribute names read by the given expressions (not inside function bodies,
    which run later and are read from their code objects; annotations do not count)."""
    names: set[str] = set()
    todo = list(nodes)
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Attribute):
            names.add(n.attr)
            todo.append(n.value)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo.extend(n.decorator_list)
            todo.extend(_arg_defaults(n.args))
        elif isinstance(n, ast.Lambda):
            todo.extend(_arg_defaults(n.args))
        elif isinstance(n, ast.ClassDef):
            todo.extend([*n.bases, *n.keywords, *n.decorator_list, *n.body])
        elif isinstance(n, ast.AnnAssign):
            if n.value is not None:
                todo.append(n.value)
        else:
            todo.extend(ast.iter_child_nodes(n))
    return names


def _arg_defaults(args: ast.arguments) -> list[ast.AST]:
    return [*args.defaults, *(d for d in args.kw_defaults if d is not None)]


def _def_names(node: ast.AST) -> set[str]:
    """What a definition reads when it is made: decorators and default values."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return _names_in([*node.decorator_list, *_arg_defaults(node.args)])
    if isinstance(node, ast.Lambda):
        return _names_in(_arg_defaults(node.args))
    return set()


def _dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False, include_attributes=False)


def _class_dump(node: ast.AST) -> str:
    """A class's AST dump exactly as taskproc 0.26 made it (from its source parsed alone)."""
    return _dump(ast.Module(body=[node], type_ignores=[]))  # type: ignore[list-item]


# -- code without source ---------------------------------------------------------------------


def _code_objects(cls: type) -> Iterator[types.CodeType]:
    for value in vars(cls).values():
        func = getattr(value, "__func__", value)
        if isinstance(value, property):
            func = value.fget
        code = getattr(func, "__code__", None)
        if isinstance(code, types.CodeType):
            yield code


def _bytecode_text(cls: type) -> str:
    """A class without source, as taskproc 0.26 counted it (classes made by exec)."""
    parts = []
    for code in _code_objects(cls):
        parts.append(f"{code.co_name}:{code.co_code.hex()}:{code.co_consts!r}:{code.co_names!r}")
    return "\n".join(sorted(parts))


def _code_text(code: types.CodeType, doc: object = None) -> str:
    """A function without source: its bytecode, constants (its docstring left out) and
    names. Line numbers are not in it, so moving the code does not count."""
    consts = []
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            consts.append(_code_text(c))
        elif doc is not None and c is doc:
            doc = None
        else:
            consts.append(repr(c))
    return f"{code.co_name}:{code.co_code.hex()}:{consts}:{sorted(code.co_names)}"


def _code_names(code: types.CodeType) -> frozenset[str]:
    """Every global and attribute name the code (and the code nested in it) reads."""
    names: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return frozenset(names)


def _is_task_class(value: type) -> bool:
    return getattr(value, "_tp_labels", None) is not None


def _qualname(value: Any) -> str:
    return str(getattr(value, "__qualname__", None) or getattr(value, "__name__", "?"))


@functools.lru_cache(maxsize=1)  # the interpreter's folders do not move while it runs
def _install_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # pragma: no cover - an old virtualenv's site module
        pass
    return tuple(sorted({os.path.join(os.path.realpath(r), "") for r in roots if r}))


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


def _statements(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """The statements of one scope, with those in its compound statements' blocks, but not
    those in the bodies of the functions and classes it defines."""
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        stmt = stack.pop()
        yield stmt
        if isinstance(stmt, _SCOPES):
            continue
        for field in _BLOCKS:
            block = getattr(stmt, field, None)
            if block:
                stack.extend(reversed(block))


def _lookup(tree: ast.Module, qualname: str) -> list[ast.AST] | None:
    """The definitions named by `qualname`, found by descending scope by scope (only the
    statements on the way are visited); None if it names a lambda (see `_index`)."""
    scopes: list[list[ast.stmt]] = [tree.body]
    found: list[ast.AST] = []
    parts = [p for p in qualname.split(".") if p != "<locals>"]
    for name in parts:
        if name.startswith("<"):
            return None  # a lambda or a comprehension: look in the whole index
        found = [
            s
            for body in scopes
            for s in _statements(body)
            if isinstance(s, _SCOPES) and s.name == name
        ]
        scopes = [s.body for s in found]  # type: ignore[attr-defined]
    for node in found:
        _strip_docstrings(node)
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))  # type: ignore[attr-defined]


@dataclass(slots=True)
class _Parsed:
    """One source file: its lines, its AST, and the definitions looked up in it."""

    lines: list[str]
    tree: ast.Module
    defs: dict[str, list[ast.AST]]
    index: dict[str, list[ast.AST]] | None = None

    def find(self, qualname: str) -> list[ast.AST]:
        found = self.defs.get(qualname)
        if found is None:
            found = _lookup(self.tree, qualname)
            if found is None:
                if self.index is None:
                    self.index = _index(self.tree)
                found = self.index.get(qualname, [])
            self.defs[qualname] = found
        return found


# -- the walk ----------------------------------------------------------------------------------


class _Walker:
    """What each object contributes, computed once (see the module docstring)."""

    def __init__(self) -> None:
        self._nodes: dict[int, tuple[Any, _Node]] = {}
        self._files: dict[str, _Parsed | None] = {}
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

    # -- source files ------------------------------------------------------------------

    def _parsed(self, filename: str, module_globals: Any = None) -> _Parsed | None:
        if filename in self._files:
            return self._files[filename]
        parsed = None
        try:
            linecache.checkcache(filename)  # a file edited since it was read is read again
            lines = linecache.getlines(filename, module_globals)
            if lines:
                parsed = _Parsed(lines, ast.parse("".join(lines)), {})
        except (SyntaxError, ValueError, OSError, RecursionError, MemoryError):
            parsed = None
        self._files[filename] = parsed
        return parsed

    def _find(
        self, filename: str, qualname: str, lines: tuple[int, ...], module_globals: Any = None
    ) -> tuple[list[ast.AST], str] | None:
        """The definitions of `qualname` in `filename` (one; for lambdas, every lambda of that
        name on the line) and their source; `lines` are where the code is known to be."""
        parsed = self._parsed(filename, module_globals)
        if parsed is None:
            return None
        found = parsed.find(qualname)
        if not found:
            return None
        if len(found) > 1:
            if qualname.endswith("<lambda>"):
                found = [n for n in found if n.lineno in lines] or found[:1]  # type: ignore[attr-defined]
            else:
                exact = [n for n in found if _first_line(n) in lines or n.lineno in lines]  # type: ignore[attr-defined]
                inside = [
                    n
                    for n in found
                    if any(n.lineno <= x <= (n.end_lineno or 0) for x in lines)  # type: ignore[attr-defined]
                ]
                found = (exact or inside or found)[:1]
        text = parsed.lines
        source = "\n".join("".join(text[_first_line(n) - 1 : n.end_lineno]) for n in found)  # type: ignore[attr-defined]
        return found, source[:_SOURCE_LIMIT]

    # -- nodes -------------------------------------------------------------------------

    def node(self, value: Any) -> _Node:
        hit = self._nodes.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        try:
            made = self._make(value)
        except Exception:  # code we cannot read counts by what can be seen, never fails a run
            name = f"{type(value).__module__}.{type(value).__qualname__}"
            made = _Node("unreadable", name, name, "", ())
        if made.kind not in (_SKIP, _VIA, _MODULE):
            made = replace(made, digest=_digest(made.text))
        self._nodes[id(value)] = (value, made)
        return made

    def class_node(self, cls: type) -> _Node:
        """`node` for a class even if it is a task class (the classes of a task's own MRO)."""
        key = id(cls) ^ 1  # apart from `node`'s entry, which skips task classes
        hit = self._nodes.get(key)
        if hit is not None and hit[0] is cls:
            return hit[1]
        made = self._class_node(cls)
        made = replace(made, digest=_digest(made.text))
        self._nodes[key] = (cls, made)
        return made

    def _make(self, value: Any) -> _Node:
        if isinstance(value, types.ModuleType):
            kind = self.module_kind(value.__name__)
            if kind == "user":
                return _Node(_MODULE, module_name(value.__name__), "", "", ())
            return _SKIP_NODE if kind == "framework" else _external(value.__name__)
        if isinstance(value, type):
            if _is_task_class(value):
                return _SKIP_NODE
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
            refs: list[_Ref] = []
            text = self.canonical((value.func, value.args, value.keywords), refs)
            return _Node("constant", "partial", f"partial{text}", "", tuple(refs))
        if isinstance(value, _BUILTINS):
            return self._builtin(value)  # functions and methods written in C
        wrapped = _wrapped(value)
        if wrapped is not None:  # functools.lru_cache and other wrappers
            return _via(wrapped)
        if type(value) in _SCALARS or type(value) in _CONTAINERS or isinstance(value, enum.Enum):
            refs = []
            text = self.canonical(value, refs)
            return _Node("constant", "", text, "", tuple(refs))
        return self._instance(value)

    def _by_module(self, value: Any, module: Any, make: Any) -> _Node:
        mod = module if isinstance(module, str) else None
        kind = self.module_kind(mod)
        if kind == "framework":
            return _SKIP_NODE
        if kind == "external":
            return _external(f"{mod}.{_qualname(value)}")
        made: _Node = make(value)
        return made

    def _builtin(self, value: Any) -> _Node:
        owner = getattr(value, "__self__", None)
        mod = getattr(value, "__module__", None)
        if not isinstance(mod, str):
            mod = owner.__name__ if isinstance(owner, types.ModuleType) else None
        kind = self.module_kind(mod)
        if kind == "framework" or mod is None:
            return _SKIP_NODE
        key = f"{mod}.{_qualname(value)}"
        if kind == "external":
            return _external(key)
        # In your code but not Python (a C extension): its name and its distribution's version.
        text = f"{key} {self._distribution_versions(mod)}".strip()
        return _Node("unreadable", key, text, "", (), named=True)

    def _instance(self, value: Any) -> _Node:
        cls = type(value)
        kind = self.module_kind(cls.__module__)
        if kind == "framework":
            return _SKIP_NODE
        name = f"{cls.__module__}.{cls.__qualname__}"
        if kind == "external":
            if isinstance(value, re.Pattern):
                text = f"{name}({value.pattern!r}, {value.flags})"
            elif isinstance(value, PurePath):
                text = f"{name}({str(value)!r})"
            else:
                text = name
            return _Node("external", name, text, "", ())
        refs: list[_Ref] = [_Ref(cls)]
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
        return _Node(
            "object", f"{module_name(cls.__module__)}.{cls.__qualname__}()", text, "", tuple(refs)
        )

    def canonical(self, value: Any, refs: list[_Ref], depth: int = 0) -> str:
        """A value as text that is the same in every process (no addresses, sets sorted);
        the objects in it that are code are added to `refs`."""
        t = type(value)
        if t in _SCALARS:
            return repr(value)
        if isinstance(value, enum.Enum):
            refs.append(_Ref(t))
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
        refs.append(_Ref(value))
        if isinstance(value, types.ModuleType):
            return f"<module {value.__name__}>"
        if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
            return f"<{getattr(value, '__module__', None)}.{_qualname(value)}>"
        return f"<{t.__module__}.{t.__qualname__} object>"

    def globals_read(self, namespace: Any, module: str, names: frozenset[str]) -> list[_Ref]:
        """The values of the globals among `names` in `namespace` (a module's dict)."""
        if not isinstance(namespace, dict):
            return []
        return [_Ref(namespace[n], f"{module}.{n}", names) for n in sorted(names) if n in namespace]

    def _function_node(self, fn: types.FunctionType) -> _Node:
        code = fn.__code__
        qual = fn.__qualname__
        namespace = fn.__globals__
        gname = module_name(str(namespace.get("__name__") or fn.__module__ or "<exec>"))
        key = f"{module_name(str(fn.__module__ or gname))}.{qual}"
        names = set(_code_names(code))
        found = self._find(code.co_filename, qual, (code.co_firstlineno,), namespace)
        if found is not None:
            nodes, source = found
            text = "\n".join(_dump(n) for n in nodes)
            for n in nodes:
                names |= _def_names(n)
        else:
            text, source = _code_text(code, fn.__doc__), ""
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
            refs.append(_Ref(wrapped))
        if values:
            text += "\nvalues: " + "; ".join(values)
        named = not qual.endswith("<lambda>")
        return _Node("function", key, text, source, tuple(refs), named=named)

    def _class_node(self, cls: type) -> _Node:
        mod = module_name(cls.__module__)
        key = f"{mod}.{cls.__qualname__}"
        members = list(_members(cls))
        refs: list[_Ref] = []
        found = self._class_source(cls, members)
        module = sys.modules.get(cls.__module__)
        namespace = vars(module) if module is not None else {}
        if found is not None:
            node, source = found
            text = _class_dump(node)
            refs += self.globals_read(namespace, mod, frozenset(_names_in([node])))
        else:
            text, source = _bytecode_text(cls), ""
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
                refs.append(_Ref(member))
        refs += [_Ref(base) for base in cls.__bases__]
        return _Node("class", key, text, source, tuple(refs), named=True)

    def _class_source(self, cls: type, members: list[Any]) -> tuple[ast.AST, str] | None:
        codes = [m.__code__ for m in members if isinstance(m, types.FunctionType)]
        module = sys.modules.get(cls.__module__)
        files = [str(getattr(module, "__file__", "") or "")] + [c.co_filename for c in codes]
        lines = tuple(c.co_firstlineno for c in codes)
        for file in dict.fromkeys(f for f in files if f):
            found = self._find(file, cls.__qualname__, lines, vars(module) if module else None)
            if found is not None:
                return found[0][0], found[1]
        return None


def _external(key: str) -> _Node:
    return _Node("external", key, key, "", (), named=False)


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


# -- identities ----------------------------------------------------------------------------


class _Closures:
    """What each reference reaches, transitively, as a bitmask of entries: computed once per
    strongly connected component of the reference graph (Tarjan, without recursion), so that a
    helper reached by a hundred task classes is walked once, and cycles end."""

    def __init__(self, walker: _Walker) -> None:
        self._walker = walker
        self.entries: list[CodeEntry] = []
        self.keys: list[str] = []
        self.lines: list[bytes] = []  # what each entry adds to a digest
        self._index: dict[CodeEntry, int] = {}
        self._masks: dict[tuple[int, str | None, frozenset[str] | None], int] = {}

    def _key(self, ref: _Ref) -> tuple[int, str | None, frozenset[str] | None]:
        """Refs that reach the same: names matter for modules only, bindings only for what
        a binding names (constants, lambdas, objects, external names)."""
        value = ref.value
        if issubclass(type(value), types.ModuleType):  # not isinstance: it may ask the value
            return id(value), None, ref.names
        node = self._walker.node(value)
        return id(value), None if node.named else ref.binding, None

    def _expand(self, ref: _Ref) -> tuple[int, list[_Ref] | tuple[_Ref, ...]]:
        """The entry bit of `ref` (0 for none) and the refs it leads to."""
        node = self._walker.node(ref.value)
        if node.kind == _SKIP:
            return 0, ()
        if node.kind == _MODULE:
            return 0, self._walker.globals_read(vars(ref.value), node.key, ref.names)
        if node.kind == _VIA:
            return 0, [_Ref(r.value, ref.binding, r.names) for r in node.refs]
        key = node.key if node.named or not ref.binding else ref.binding
        source = node.source
        if not source and node.kind == "constant" and ref.binding:
            source = f"{ref.binding.rpartition('.')[2]} = {node.text}"
        entry = CodeEntry(key, node.kind, node.digest, (source or node.text)[:_SOURCE_LIMIT])
        index = self._index.get(entry)
        if index is None:
            index = self._index[entry] = len(self.entries)
            self.entries.append(entry)
            self.keys.append(key)
            self.lines.append(f"\n{key}\0{node.kind}\0{node.digest}".encode("utf-8", "replace"))
        return 1 << index, node.refs

    def reach(self, root: _Ref) -> int:
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

        def enter(ref: _Ref, key: Any) -> Iterator[tuple[_Ref, Any]]:
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
        self._walker = _Walker()
        self._closures = _Closures(self._walker)
        self._ids: dict[type, CodeIdentity] = {}

    def __call__(self, cls: type) -> str:
        return self.identity(cls).digest

    def identity(self, cls: type) -> CodeIdentity:
        """The code identity of `cls` (see the module docstring)."""
        found = self._ids.get(cls)
        if found is None:
            found = self._ids[cls] = self._identity(cls)
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
                mask |= closures.reach(_Ref(klass))  # a base class from an installed package
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
            by_key[key] = CodeEntry(key, "distribution", _digest(version), version)
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
            out.setdefault(name, e if n == 1 else replace(e, key=name))
    return out


def fingerprint(cls: type) -> str:
    """The digest of the code identity of `cls` (a one-off; runs use `Fingerprints`)."""
    return Fingerprints()(cls)


def fingerprinter() -> Fingerprints:
    """A new `Fingerprints`: one serves one pass over a graph."""
    return Fingerprints()
