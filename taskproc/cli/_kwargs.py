"""``--kwargs`` values as the parameters of `Main` declare them.

JSON has no tuple, no float that is a whole number, no path, enum or dataclass, so a value from
the command line is converted to its parameter's annotation (or, without one, to the type of
its default) before the task is built: ``{"cols": [0, 1], "scale": 1}`` reaches
``Main(cols: tuple = (0, 1), scale: float = 1.0)`` as ``(0, 1)`` and ``1.0``, the same task a
Python call with the defaults makes. A value that does not fit is a `UsageError` naming the
parameter, the annotation and the value; an unknown name gets "did you mean".
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from taskproc.errors import UsageError
from taskproc.model import WIDTH, clip
from taskproc.run import did_you_mean

_NO_HINT = object()


class _Misfit(Exception):
    """The value does not fit the annotation (the message: why, when there is more to say)."""


def convert_kwargs(
    task_name: str, signature: inspect.Signature, hints: Mapping[str, Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """`kwargs` from JSON, each converted to its parameter's annotation (see the module)."""
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        param = params.get(name)
        if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            if takes_any:
                out[name] = value
                continue
            known = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL,)]
            raise UsageError(
                f"--kwargs: {task_name} has no parameter {name!r}{did_you_mean(name, known)} "
                f"({task_name} takes {signature})"
            )
        hint: Any = hints.get(name, _NO_HINT)
        if hint is _NO_HINT and param.default is not inspect.Parameter.empty:
            hint = type(param.default) if param.default is not None else _NO_HINT
        try:
            out[name] = value if hint is _NO_HINT else _convert(value, hint)
        except _Misfit as exc:
            why = f": {exc}" if str(exc) else ""
            raise UsageError(
                f"--kwargs: {clip(json.dumps(value), WIDTH)} does not fit parameter {name!r} of "
                f"{task_name} (annotated {_display(hint)}{why}); give a JSON value of that type"
            ) from None
        except RecursionError:  # an annotation or a value nested past the stack
            raise UsageError(
                f"--kwargs: the value of {name!r} is nested too deeply for {task_name}; "
                "give a flatter value"
            ) from None
    return out


def _why(exc: Exception) -> str:
    """An exception as a short line (pydantic's span several)."""
    return clip(" ".join(f"{type(exc).__name__}: {exc}".split()), WIDTH)


def _display(hint: Any) -> str:
    """An annotation as it is written: ``tuple[int, ...]``, ``int | None``, ``Color``."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_display(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if origin is None and isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def type_hints(cls: type) -> dict[str, Any]:
    """The annotations of `cls.__init__`, resolved; {} if they cannot be."""
    try:
        init = next(k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__)
        return typing.get_type_hints(init)
    except Exception:  # an annotation naming what is not importable: convert nothing
        return {}


def _convert(value: Any, hint: Any) -> Any:
    """`value` (decoded JSON) as `hint` says, or _Misfit."""
    if hint is Any or hint is object:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option)
            except _Misfit:
                continue
        raise _Misfit
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Misfit
    if origin in (tuple, list, set, frozenset) or hint in (tuple, list, set, frozenset):
        kind = origin or hint
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise _Misfit
        if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise _Misfit
            return tuple(_convert(v, a) for v, a in zip(value, args, strict=True))
        item = args[0] if args else Any
        items = [_convert(v, item) for v in value]
        try:
            return kind(items)
        except TypeError:  # a list or an object inside a set
            raise _Misfit("the items of a set must be hashable, not lists or objects") from None
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _Misfit
        key_hint, value_hint = args if len(args) == 2 else (Any, Any)
        return {_convert(k, key_hint): _convert(v, value_hint) for k, v in value.items()}
    if origin is not None or not isinstance(hint, type):
        return value  # Sequence[int], a TypeVar, a Protocol, ...: nothing to convert to
    if type(value) is hint:
        return value
    if hint is float:
        if type(value) is int:  # JSON has no whole floats: 1 for 1.0
            try:
                return float(value)
            except OverflowError:
                raise _Misfit("too large for a float") from None
        raise _Misfit
    if hint in (bool, int, str):  # exactly that type, handled above: True is not an int here
        raise _Misfit
    if issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            if isinstance(value, str) and value in hint.__members__:
                return hint[value]
            raise _Misfit from None
    if issubclass(hint, PurePath):
        if isinstance(value, str):
            return hint(value)
        raise _Misfit
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Misfit
        hints = typing.get_type_hints(hint)
        fields = {k: _convert(v, hints.get(k, Any)) for k, v in value.items()}
        try:
            return hint(**fields)
        except Exception as exc:  # unknown fields, or its own checks (__post_init__)
            raise _Misfit(_why(exc)) from None
    validate = getattr(hint, "model_validate", None)  # a pydantic model
    if validate is not None and isinstance(value, dict):
        try:
            return validate(value)
        except Exception as exc:
            raise _Misfit(_why(exc)) from None
    if isinstance(value, hint):
        return value
    raise _Misfit
