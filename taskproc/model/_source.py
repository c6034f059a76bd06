"""The source of one definition, as code identities read it: each file parsed once, a
definition found by its qualified name, docstrings dropped, syntax trees dumped without
positions (so comments, blank lines and formatting do not count); and code without source,
by its bytecode."""

from __future__ import annotations

import ast
import linecache
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SOURCE_LIMIT = 20_000  # characters of source kept per entry for `why`'s diffs


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


def first_line(node: ast.AST) -> int:
    decorators: list[ast.expr] = getattr(node, "decorator_list", None) or []
    line: int = getattr(node, "lineno", 0)
    return min([line, *(d.lineno for d in decorators)])


def names_in(nodes: list[ast.AST]) -> set[str]:
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


def def_names(node: ast.AST) -> set[str]:
    """What a definition reads when it is made: decorators and default values."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return names_in([*node.decorator_list, *_arg_defaults(node.args)])
    if isinstance(node, ast.Lambda):
        return names_in(_arg_defaults(node.args))
    return set()


def dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False, include_attributes=False)


def class_dump(node: ast.AST) -> str:
    """A class's AST dump exactly as taskproc 0.26 made it (from its source parsed alone)."""
    return dump(ast.Module(body=[node], type_ignores=[]))  # type: ignore[list-item]


# -- code without source ---------------------------------------------------------------------


def _code_objects(cls: type) -> Iterator[types.CodeType]:
    for value in vars(cls).values():
        func = getattr(value, "__func__", value)
        if isinstance(value, property):
            func = value.fget
        code = getattr(func, "__code__", None)
        if isinstance(code, types.CodeType):
            yield code


def bytecode_text(cls: type) -> str:
    """A class without source (made by exec, read from standard input, given with -c), as
    taskproc 0.26 counted it, but the same in every process: nested code objects count by
    their contents (their repr holds an address) and frozensets sorted (their order follows
    string hashing, which differs between processes)."""
    parts = []
    for code in _code_objects(cls):
        consts = _stable_text(code.co_consts)
        parts.append(f"{code.co_name}:{code.co_code.hex()}:{consts}:{code.co_names!r}")
    return "\n".join(sorted(parts))


def _stable_text(value: object) -> str:
    """`repr(value)` (as 0.26 wrote it) unless it would hold an address or a hash order."""
    if isinstance(value, types.CodeType):
        return code_text(value)
    if isinstance(value, frozenset):
        return f"frozenset({sorted(_stable_text(v) for v in value)})"
    if isinstance(value, tuple) and any(
        isinstance(v, (tuple, frozenset, types.CodeType)) for v in value
    ):
        inner = ", ".join(_stable_text(v) for v in value)
        return f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


def code_text(code: types.CodeType, doc: object = None) -> str:
    """A function without source: its bytecode, constants (its docstring left out) and
    names. Line numbers are not in it, so moving the code does not count."""
    consts = []
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            consts.append(code_text(c))
        elif doc is not None and c is doc:
            doc = None
        else:
            consts.append(_stable_text(c))
    return f"{code.co_name}:{code.co_code.hex()}:{consts}:{sorted(code.co_names)}"


def code_names(code: types.CodeType) -> frozenset[str]:
    """Every global and attribute name the code (and the code nested in it) reads."""
    names: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return frozenset(names)


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


class SourceFiles:
    """Source files, each parsed once (one of these serves one run)."""

    def __init__(self) -> None:
        self._files: dict[str, _Parsed | None] = {}

    def parsed(self, filename: str, module_globals: Any = None) -> _Parsed | None:
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

    def find(
        self, filename: str, qualname: str, lines: tuple[int, ...], module_globals: Any = None
    ) -> tuple[list[ast.AST], str] | None:
        """The definitions of `qualname` in `filename` (one; for lambdas, every lambda of that
        name on the line) and their source; `lines` are where the code is known to be."""
        parsed = self.parsed(filename, module_globals)
        if parsed is None:
            return None
        found = parsed.find(qualname)
        if not found:
            return None
        if len(found) > 1:
            if qualname.endswith("<lambda>"):
                found = [n for n in found if n.lineno in lines] or found[:1]  # type: ignore[attr-defined]
            else:
                exact = [n for n in found if first_line(n) in lines or n.lineno in lines]  # type: ignore[attr-defined]
                inside = [
                    n
                    for n in found
                    if any(n.lineno <= x <= (n.end_lineno or 0) for x in lines)  # type: ignore[attr-defined]
                ]
                found = (exact or inside or found)[:1]
        text = parsed.lines
        source = "\n".join("".join(text[first_line(n) - 1 : n.end_lineno]) for n in found)  # type: ignore[attr-defined]
        return found, source[:SOURCE_LIMIT]
