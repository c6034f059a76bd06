"""Canonical, type-tagged JSON of task arguments, and the task ids derived from it.

The canonical form keeps apart values that JSON alone would merge: a tuple is
``{"__tuple__": [...]}`` while a list stays a JSON array, so ``(1, 2)`` and ``[1, 2]`` are
different tasks; ``1``, ``1.0`` and ``True`` print differently in JSON already. A dict with str
keys is a JSON object with its keys sorted; a dict with other keys (any hashable value that is
itself an argument: ``{0: 'a'}``, ``{('x', 1): ...}``, enums, frozen dataclasses) is
``{"__items__": [[key, value], ...]}`` with canonical keys, sorted by their text, so
``{1: x}`` and ``{'1': x}`` are different tasks and insertion order never matters. An upstream
future is written as a reference to its task id (``{"__task__": "mod.Name/1f2e..."}``), so a
task's identity does not grow with the size of its upstream graph. Other supported types are
tagged with their qualified type name.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any, cast

from taskproc.errors import ArgumentError
from taskproc.model._naming import qualified_name

try:  # hashlib's own BLAKE2b (it is `hashlib.blake2b`) without hashlib, which loads OpenSSL
    from _blake2 import blake2b as blake2b  # (2 ms of a worker's start: it makes no digest)
except ImportError:  # a Python built without it
    from hashlib import blake2b as blake2b

JSON = Any  # a value json.dumps accepts


class Unsupported(Exception):
    """Internal: a value that has no canonical form; carries where it was found."""

    def __init__(self, where: str, value: object) -> None:
        super().__init__(where)
        self.where = where
        self.value = value


def _is_tag(key: str) -> bool:
    return key.startswith("__") and key.endswith("__")


def _canon_float(value: float) -> JSON:
    if math.isfinite(value):
        return value
    return {"__float__": repr(value)}


def canonicalize(value: object, where: str, future_ref: Callable[[object], JSON | None]) -> JSON:
    """The canonical JSON-compatible form of `value`.

    `future_ref` returns the reference of a future, or None for anything else. Raises
    `Unsupported` with the path (e.g. ``x[2]['a']``) of the first value that has no
    canonical form.
    """
    tp = type(value)
    if value is None or tp is str or tp is bool or tp is int:
        return value
    if tp is float:
        return _canon_float(value)  # type: ignore[arg-type]
    if isinstance(value, list) and tp is list:
        return [canonicalize(v, f"{where}[{i}]", future_ref) for i, v in enumerate(value)]
    if isinstance(value, tuple) and tp is tuple:
        items = [canonicalize(v, f"{where}[{i}]", future_ref) for i, v in enumerate(value)]
        return {"__tuple__": items}
    if tp is dict:
        return _canon_dict(value, where, future_ref)  # type: ignore[arg-type]
    ref = future_ref(value)
    if ref is not None:
        return ref
    return _canon_other(value, where, future_ref)


def _canon_dict(
    value: Mapping[object, object], where: str, future_ref: Callable[[object], JSON | None]
) -> JSON:
    if not all(type(key) is str for key in value):
        return _canon_items(value, where, future_ref)
    out: dict[str, JSON] = {}
    for key in sorted(value):  # type: ignore[type-var]
        out[key] = canonicalize(value[key], f"{where}[{key!r}]", future_ref)  # type: ignore[index]
    if any(_is_tag(k) for k in out):
        return {"__dict__": out}
    return out


def _canon_items(
    value: Mapping[object, object], where: str, future_ref: Callable[[object], JSON | None]
) -> JSON:
    """A dict with keys other than str: ``{"__items__": [[key, value], ...]}``, sorted."""

    def no_future(part: object) -> None:
        if future_ref(part) is not None:  # not a value yet: it cannot be part of a key
            raise Unsupported(f"{where} key {key!r} (a future cannot be a dict key)", part)
        return None

    pairs = []
    for key, item in value.items():
        canon_key = canonicalize(key, f"{where} key {key!r}", no_future)
        pair = [canon_key, canonicalize(item, f"{where}[{key!r}]", future_ref)]
        pairs.append((dumps(pair), pair))
    # Sorted by text: two pairs with the same text are the same, so the order (and the task
    # id) never depends on the order the dict was built in.
    pairs.sort(key=lambda p: p[0])
    return {"__items__": [pair for _, pair in pairs]}


def _canon_other(value: object, where: str, future_ref: Callable[[object], JSON | None]) -> JSON:
    if isinstance(value, enum.Enum):
        return {"__enum__": qualified_name(type(value)), "name": value.name}
    if isinstance(value, PurePath):
        return {"__path__": value.as_posix()}
    if hasattr(type(value), "__dataclass_fields__"):  # a dataclass instance (is_dataclass)
        import dataclasses  # here: loaded already, its class is one (a worker never loads it)

        fields = {
            f.name: canonicalize(getattr(value, f.name), f"{where}.{f.name}", future_ref)
            for f in dataclasses.fields(cast(Any, value))
        }
        return {"__dataclass__": qualified_name(type(value)), "fields": fields}
    if _is_pydantic_model(value):
        dumped = value.model_dump(mode="python")  # type: ignore[attr-defined]
        return {
            "__pydantic__": qualified_name(type(value)),
            "fields": canonicalize(dumped, where, future_ref),
        }
    if isinstance(value, (set, frozenset)):
        items = sorted((canonicalize(v, f"{where}{{...}}", future_ref) for v in value), key=dumps)
        return {"__set__" if isinstance(value, set) else "__frozenset__": items}
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    raise Unsupported(where, value)


def _is_pydantic_model(value: object) -> bool:
    cls = type(value)
    return hasattr(cls, "model_fields") and hasattr(value, "model_dump")


# Built once: json.dumps with non-default options builds an encoder per call, a third of
# the cost of naming a task with small arguments.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(canon: JSON) -> str:
    """Compact JSON text of a canonical value (key order as built: already canonical)."""
    return _ENCODER.encode(canon)


def digest(text: str) -> str:
    """The task id for a canonical argument text: 32 hex digits of BLAKE2b."""
    return blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


_encode_str = json.encoder.encode_basestring  # the encoder's own, with ensure_ascii=False


def flat_text(arguments: Mapping[str, object]) -> str | None:
    """`dumps` of arguments that are all str, int, bool or None, built directly (setting up
    json's encoder costs more than the encoding); None if another value is among them."""
    parts = []
    for name, value in arguments.items():
        tp = type(value)
        if tp is int:
            text = int.__repr__(value)
        elif isinstance(value, str) and tp is str:
            text = _encode_str(value)
        elif value is None:
            text = "null"
        elif tp is bool:
            text = "true" if value else "false"
        else:
            return None
        parts.append(f"{_encode_str(name)}:{text}")
    return "{" + ",".join(parts) + "}"


def canonical_arguments(
    task_name: str,
    arguments: Mapping[str, object],
    future_ref: Callable[[object], JSON | None],
) -> str:
    """Canonical JSON text of a task's bound arguments, in declaration order.

    Raises `ArgumentError` naming the task, the parameter and the type.
    """
    try:
        text = flat_text(arguments)
    except ValueError:  # an int too long to write: the loop below names it
        text = None
    if text is not None:
        return text
    out: dict[str, JSON] = {}
    for name, value in arguments.items():
        try:
            out[name] = canonicalize(value, name, future_ref)
            dumps(out[name])
        except ValueError as exc:  # int.__repr__ refuses ints of more than 4300 digits
            raise ArgumentError.of(
                task_name,
                f"argument {name!r} cannot be written as text: {exc}",
            ) from None
        except Unsupported as exc:
            tp = type(exc.value)
            raise ArgumentError.of(
                task_name,
                f"argument {exc.where!r} has unsupported type "
                f"{tp.__module__}.{tp.__qualname__}; task arguments must be JSON-like values "
                "(None, bool, int, float, str, list, tuple, dict), futures, "
                "dataclasses, enums, paths, sets, bytes or pydantic models - make other "
                "objects inside a task, or return them from an upstream task",
            ) from None
        except RecursionError:
            raise ArgumentError.of(
                task_name, f"argument {name!r} is nested too deeply (or contains itself)"
            ) from None
    return dumps(out)


def _encodes(value: object) -> bool:
    try:
        json.dumps(value, ensure_ascii=False, default=repr).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return False
    return True


def not_unicode(task_name: str, arguments: Mapping[str, object]) -> ArgumentError:
    """The error for arguments whose canonical text cannot be encoded (a lone surrogate such
    as ``'\\ud800'``, which JSON allows and UTF-8 does not), naming the first such one."""
    name = next((n for n, v in arguments.items() if not _encodes(v)), next(iter(arguments), "?"))
    return ArgumentError.of(
        task_name,
        f"argument {name!r} holds text that is not valid Unicode (a lone surrogate such as "
        "'\\ud800'); pass text that can be encoded as UTF-8",
    )
