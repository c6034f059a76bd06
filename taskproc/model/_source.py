"""The source of one definition, as code identities read it: each file parsed once, a
definition found by its qualified name, docstrings dropped, syntax trees dumped without
positions (so comments, blank lines and formatting do not count); and code without source,
by its bytecode."""

from __future__ import annotations

import ast
import dis
import functools
import inspect
import linecache
import os
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


def _dispatches_on_annotations(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """``@f.register`` (functools.singledispatch): the annotations choose the code."""
    return any(
        isinstance(d, ast.Attribute) and d.attr == "register"
        for d in node.decorator_list
        if not isinstance(d, ast.Call)
    )


def _may_have_annotations(node: ast.AST) -> bool:
    """A quick look, without walking the tree: whether a function's signature is annotated,
    or it defines anything inside (whose annotations a walk must find)."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return True
    a = node.args
    if node.returns is not None or any(
        arg is not None and arg.annotation is not None
        for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg)
    ):
        return True
    return any(
        not isinstance(s, (ast.Expr, ast.Return, ast.Assign, ast.AugAssign)) for s in node.body
    )


def plain_dump(node: ast.AST) -> str:
    """`dump` without the annotations that running the code never reads: those of function
    parameters and return values, and of local variables (a class's own annotations are kept:
    dataclasses and NamedTuples make fields of them). The tree is restored afterwards."""
    if not _may_have_annotations(node):
        return dump(node)
    saved: list[tuple[ast.AST, str, Any]] = []

    def clear(owner: ast.AST, field: str) -> None:
        value = getattr(owner, field, None)
        if value is not None:
            saved.append((owner, field, value))
            setattr(owner, field, None)

    stack: list[tuple[ast.AST, bool]] = [(node, False)]
    while stack:
        n, in_function = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not _dispatches_on_annotations(n):
                a = n.args
                for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg):
                    if arg is not None:
                        clear(arg, "annotation")
                clear(n, "returns")
            in_function = True
        elif isinstance(n, ast.ClassDef):
            in_function = False
        elif isinstance(n, ast.AnnAssign) and in_function:
            saved.append((n, "annotation", n.annotation))
            n.annotation = ast.Constant(None)
        stack.extend((c, in_function) for c in ast.iter_child_nodes(n))
    try:
        return dump(node)
    finally:
        for owner, field, value in reversed(saved):
            setattr(owner, field, value)


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
    """A class without source (made by exec, read from standard input, given with -c): the
    code of its methods (`code_text`: docstrings do not count), the same in every process."""
    return "\n".join(sorted(code_text(code) for code in _code_objects(cls)))


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
    """A function without source: its instructions with their constants and names resolved
    (so a docstring added or removed, which shifts the constants' indices, does not count),
    and the code nested in it. Line numbers are not in it, so moving the code does not
    count. `doc` is unused: kept for callers of taskproc 0.26's signature."""
    parts = [code.co_name]
    for ins in dis.get_instructions(code):
        arg = ins.argval
        if isinstance(arg, types.CodeType):
            parts.append(f"{ins.opname} <{code_text(arg)}>")
        elif ins.opcode in dis.hasconst:
            parts.append(f"{ins.opname} {_stable_text(arg)}")
        elif ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
            parts.append(f"{ins.opname} {ins.argrepr}")
        else:
            parts.append(f"{ins.opname} {ins.argrepr if ins.arg is not None else ''}".rstrip())
    return "\n".join(parts)


def exact_text(code: types.CodeType) -> str:
    """Everything of a code object that running it depends on, line numbers left out: two
    compilations of the same text give the same (how loaded code is checked against its
    file, `SourceFiles.matches`)."""
    consts = [
        exact_text(c) if isinstance(c, types.CodeType) else _stable_text(c) for c in code.co_consts
    ]
    return (
        f"{code.co_name}:{code.co_flags}:{code.co_argcount}:{code.co_kwonlyargcount}:"
        f"{code.co_code.hex()}:{consts}:{code.co_names}:{code.co_varnames}:"
        f"{code.co_freevars}:{code.co_cellvars}"
    )


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


def _compiled_index(module: types.CodeType) -> dict[str, list[types.CodeType]]:
    """The code objects of a compiled module by qualified name (classes' bodies included)."""
    out: dict[str, list[types.CodeType]] = {}
    stack: list[tuple[types.CodeType, str]] = [(module, "")]
    while stack:
        code, prefix = stack.pop()
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                qual = getattr(c, "co_qualname", None) or prefix + c.co_name
                out.setdefault(qual, []).append(c)
                inner = ".<locals>." if c.co_flags & inspect.CO_NEWLOCALS else "."
                stack.append((c, qual + inner))
    return out


@functools.lru_cache(maxsize=1)  # a process starts once
def _process_start() -> float | None:
    """When this process started (seconds since the epoch), on Linux; else None."""
    try:
        with open("/proc/self/stat", "rb") as f:
            ticks = int(f.read().rpartition(b")")[2].split()[19])
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _older_than_process(filename: str) -> bool:
    """Whether a file was last written well before this process started: then the code this
    process loaded from it is what it says, and comparing them can be skipped (a fresh run's
    common case; a notebook's or a watch loop's edited files are newer)."""
    start = _process_start()
    if start is None:
        return False
    try:
        return os.stat(filename).st_mtime < start - 2.0  # slack for the clocks' resolution
    except OSError:
        return False


@dataclass(slots=True)
class _Parsed:
    """One source file: its lines, its AST, the definitions looked up in it, and (when
    loaded code is checked against it) its code objects by qualified name."""

    lines: list[str]
    tree: ast.Module
    defs: dict[str, list[ast.AST]]
    index: dict[str, list[ast.AST]] | None = None
    compiled: dict[str, list[types.CodeType]] | None = None
    unchanged: bool | None = None  # last written before this process started

    def matches(self, code: types.CodeType, qualname: str, source: str = "") -> bool:
        """Whether `code` is what compiling this file gives for `qualname` (line numbers
        aside): False when the file was edited after the code was loaded. The whole file is
        compiled, once (compiling each function alone costs more per function)."""
        if self.compiled is None:
            try:
                module = compile("".join(self.lines), "<check>", "exec", dont_inherit=True)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                module = compile("", "<check>", "exec")
            self.compiled = _compiled_index(module)
        candidates = self.compiled.get(qualname, ())
        if not candidates:
            return False
        mine = exact_text(code)
        return any(exact_text(c) == mine for c in candidates)

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

    def matches(
        self,
        filename: str,
        code: types.CodeType,
        qualname: str,
        module_globals: Any = None,
        source: str = "",
    ) -> bool:
        """Whether the loaded `code` of `qualname` is what the file says now (see
        `_Parsed.matches`); True when the file cannot be read (nothing to compare)."""
        parsed = self.parsed(filename, module_globals)
        if parsed is None:
            return True
        if parsed.unchanged is None:
            parsed.unchanged = _older_than_process(filename)
        return parsed.unchanged or parsed.matches(code, qualname, source)

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


# -- imports inside functions ------------------------------------------------------------------

_IMPORT_NAME = dis.opmap["IMPORT_NAME"]


def has_imports(code: types.CodeType) -> bool:
    """Whether the code (or code nested in it) imports anything (a quick look at opcodes)."""
    stack = [code]
    while stack:
        c = stack.pop()
        if _IMPORT_NAME in c.co_code[::2]:
            return True
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return False


Import = tuple[str, int, tuple[str, ...]]  # module, level (relative imports), names imported


def imports_in(nodes: list[ast.AST]) -> list[Import]:
    """The imports a definition makes when it runs (``import util``, ``from . import x``)."""
    found: list[Import] = []
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Import):
                found += [(a.name, 0, ()) for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                found.append((n.module or "", n.level, tuple(a.name for a in n.names)))
    return found


def code_imports(code: types.CodeType) -> list[Import]:
    """`imports_in` for code without source, from its instructions."""
    found: list[Import] = []
    stack = [code]
    while stack:
        c = stack.pop()
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        consts: list[Any] = []
        for ins in dis.get_instructions(c):
            if ins.opcode in dis.hasconst:
                consts.append(ins.argval)
            elif ins.opname == "IMPORT_NAME":
                level = consts[-2] if len(consts) >= 2 and isinstance(consts[-2], int) else 0
                names = consts[-1] if consts and isinstance(consts[-1], tuple) else ()
                found.append((str(ins.argval), level, tuple(str(n) for n in names)))
    return found
