"""Fingerprints of task code: a change to a task's source (not to its comments) reruns it."""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import textwrap
import types
from collections.abc import Callable, Iterator


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _source_text(cls: type) -> str:
    """The class body as an AST dump (comments, blank lines and docstrings do not count)."""
    source = textwrap.dedent(inspect.getsource(cls))
    tree = _strip_docstrings(ast.parse(source))
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _code_objects(cls: type) -> Iterator[types.CodeType]:
    for value in vars(cls).values():
        func = getattr(value, "__func__", value)
        if isinstance(value, property):
            func = value.fget
        code = getattr(func, "__code__", None)
        if isinstance(code, types.CodeType):
            yield code


def _const_text(value: object) -> str:
    """A constant of compiled code as text that is the same in every process: nested code
    objects by their contents (their repr holds an address), sets sorted (their order
    follows string hashing, which differs between processes)."""
    if isinstance(value, types.CodeType):
        return _code_text(value)
    if isinstance(value, tuple):
        return f"({','.join(_const_text(v) for v in value)})"
    if isinstance(value, frozenset):
        return f"frozenset({sorted(_const_text(v) for v in value)})"
    return repr(value)


def _code_text(code: types.CodeType) -> str:
    return f"{code.co_name}:{code.co_code.hex()}:{_const_text(code.co_consts)}:{code.co_names!r}"


def _bytecode_text(cls: type) -> str:
    """Fallback when the source is not available (classes made by exec, code read from
    standard input or given with ``python -c``)."""
    return "\n".join(sorted(_code_text(code) for code in _code_objects(cls)))


def fingerprint(cls: type) -> str:
    """A digest of the code of `cls` and of its task base classes (not `Task` itself)."""
    h = hashlib.blake2b(digest_size=12)
    for klass in cls.__mro__:
        top = klass.__module__.partition(".")[0]
        if top == "taskproc" or top in sys.stdlib_module_names or top == "builtins":
            continue
        try:
            text = _source_text(klass)
        except (OSError, TypeError, SyntaxError, IndentationError):
            text = _bytecode_text(klass)
        h.update(klass.__qualname__.encode())
        h.update(text.encode())
    return h.hexdigest()


def fingerprinter() -> Callable[[type], str]:
    """`fingerprint`, remembered per class: one of these serves one pass over a graph."""
    codes: dict[type, str] = {}

    def code(cls: type) -> str:
        fp = codes.get(cls)
        if fp is None:
            fp = codes[cls] = fingerprint(cls)
        return fp

    return code
