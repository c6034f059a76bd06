"""A value as code identities count it: its content, written as Python writes it.

`value_text` turns a module constant, a default argument, a closure's value or a class
attribute into text that is the same in every process and differs whenever the content
differs, whatever its type and size:

    scalars, tuples, lists, dicts (in insertion order: a dict is iterated in it),
    sets and frozensets (sorted: their order follows string hashing) ... as Python's repr
    NamedTuples, dataclasses (slots, frozen, nested), SimpleNamespace,
    instances of your classes ...................... ``Cfg(opt=Opt(lr=0.1))``, by attributes
    subclasses of builtin containers ............... ``OrderedDict({'a': 1})``, ``Counter(...)``
    enums .......................................... ``Color.RED`` (the class counts as code)
    dates, times, Decimal, Fraction, UUID, paths,
    compiled patterns .............................. their repr
    anything else (a NumPy array, ...) ............. what pickling it would save
                                                     (``__reduce_ex__``), never its type alone
    code inside any of these (functions, classes,
    modules, bound methods) ........................ its name, and `on_code` is told, so that
                                                     the code counts as code

Nothing here raises: what cannot be read is written as its type, and cycles as ``...``.
"""

from __future__ import annotations

import enum
import functools
import types
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

SCALARS = frozenset(
    {type(None), bool, int, float, complex, str, bytes, type(Ellipsis), range, slice}
)
_MAX_DEPTH = 60  # deeper nesting is written as "..." (a cycle, or data no one writes by hand)
# Types of the standard library whose repr is their whole content and holds no address.
_REPR_TYPES = frozenset(
    {
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("uuid", "UUID"),
        ("re", "Pattern"),
        ("zoneinfo", "ZoneInfo"),
        ("ipaddress", "IPv4Address"),
        ("ipaddress", "IPv6Address"),
        ("ipaddress", "IPv4Network"),
        ("ipaddress", "IPv6Network"),
        ("array", "array"),
        ("collections", "deque"),
    }
)
_CODE = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.ModuleType,
    type,
    staticmethod,
    classmethod,
    property,
    functools.cached_property,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)


def code_name(value: Any) -> str:
    """How a piece of code is written inside a value: ``helpers.scale``."""
    if isinstance(value, types.ModuleType):
        return f"<module {value.__name__!r}>"
    func = getattr(value, "__func__", None) or getattr(value, "fget", None) or value
    module = getattr(func, "__module__", None) or getattr(type(func), "__module__", "?")
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return f"{module}.{name}" if name else f"<{type(value).__qualname__}>"


class ValueText:
    """Writes values (see the module docstring). `on_code` is told of each piece of code a
    value holds; `type_name` names a class in full (``module.QualName``); `is_user` tells
    whether a class is your code (its instances count by their attributes)."""

    def __init__(
        self,
        on_code: Callable[[Any], None],
        type_name: Callable[[type], str],
        is_user: Callable[[type], bool],
    ) -> None:
        self._on_code = on_code
        self._type_name = type_name
        self._is_user = is_user
        self._active: set[int] = set()

    def text(self, value: Any, depth: int = 0) -> str:
        t = type(value)
        if t in SCALARS:
            return repr(value)
        if depth > _MAX_DEPTH or id(value) in self._active:
            return "..."
        self._active.add(id(value))
        try:
            return self._text(value, t, depth + 1)
        except Exception:  # an object whose attributes raise: count what can be seen
            return f"<{self._name(t)} object>"
        finally:
            self._active.discard(id(value))

    def _name(self, t: type) -> str:
        return self._type_name(t)

    def _of_class(self, t: type) -> str:
        """The name of a value's class, its code counted (it is code, unless builtin)."""
        if t.__module__ != "builtins":
            self._on_code(t)
        return t.__qualname__

    def _text(self, value: Any, t: type, depth: int) -> str:
        if isinstance(value, enum.Enum):
            self._on_code(t)
            return f"{t.__qualname__}.{value.name}" if value.name else repr(value)
        if isinstance(value, functools.partial):
            self._on_code(value.func)
            args = [code_name(value.func), *(self.text(a, depth) for a in value.args)]
            args += [f"{k}={self.text(v, depth)}" for k, v in value.keywords.items()]
            return f"functools.partial({', '.join(args)})"
        if isinstance(value, _CODE):
            self._on_code(value)
            return code_name(value)
        if isinstance(value, (tuple, list, dict, set, frozenset)):
            return self._container(value, t, depth)
        fields = getattr(t, "__dataclass_fields__", None)
        if isinstance(fields, dict):
            items = [f"{k}={self.text(getattr(value, k), depth)}" for k in fields]
            return f"{self._of_class(t)}({', '.join(items)})"
        if t is types.SimpleNamespace:
            items = [f"{k}={self.text(v, depth)}" for k, v in vars(value).items()]
            return f"namespace({', '.join(items)})"
        if (t.__module__, t.__qualname__) in _REPR_TYPES or isinstance(value, PurePath):
            if t.__module__ == "collections":  # a deque holds values of any type
                return f"deque([{', '.join(self.text(v, depth) for v in value)}])"
            return repr(value)
        if self._is_user(t):
            return self._instance(value, t, depth)
        return self._reduced(value, t, depth)

    def _container(self, value: Any, t: type, depth: int) -> str:
        if isinstance(value, dict):
            inner = ", ".join(
                f"{self.text(k, depth)}: {self.text(v, depth)}" for k, v in value.items()
            )
            body = "{" + inner + "}"
        elif isinstance(value, (set, frozenset)):
            items = sorted(self.text(v, depth) for v in value)
            body = "{" + ", ".join(items) + "}" if items else "set()"
            if isinstance(value, frozenset) and t is frozenset:
                return f"frozenset({body})" if items else "frozenset()"
        elif isinstance(value, tuple):
            fields = getattr(t, "_fields", None)
            if isinstance(fields, tuple) and len(fields) == len(value):  # a NamedTuple
                items = [f"{k}={self.text(v, depth)}" for k, v in zip(fields, value, strict=True)]
                return f"{self._of_class(t)}({', '.join(items)})"
            inner = ", ".join(self.text(v, depth) for v in value)
            body = f"({inner}{',' if len(value) == 1 else ''})"
        else:
            body = "[" + ", ".join(self.text(v, depth) for v in value) + "]"
        if t in (tuple, list, dict, set, frozenset):
            return body
        name = self._of_class(t)
        factory = getattr(value, "default_factory", None)
        if factory is not None:  # a defaultdict: what it makes counts
            return f"{name}({self.text(factory, depth)}, {body})"
        extra = self._attributes(value, depth)
        return f"{name}({body}{', ' + extra if extra else ''})"

    def _attributes(self, value: Any, depth: int) -> str:
        """An object's attributes, ``name=value, ...``: its ``__dict__`` and its slots."""
        items: list[str] = []
        state = getattr(value, "__dict__", None)
        if isinstance(state, dict):
            items += [f"{k}={self.text(v, depth)}" for k, v in state.items()]
        for klass in type(value).__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for slot in (slots,) if isinstance(slots, str) else slots:
                if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                    items.append(f"{slot}={self.text(getattr(value, slot), depth)}")
        return ", ".join(items)

    def _instance(self, value: Any, t: type, depth: int) -> str:
        return f"{self._of_class(t)}({self._attributes(value, depth)})"

    def _reduced(self, value: Any, t: type, depth: int) -> str:
        """An object of the standard library or an installed package: what pickling it saves
        (NumPy arrays, pandas frames, ...), or its type when it cannot be pickled."""
        try:
            reduced = value.__reduce_ex__(4)
        except Exception:
            return f"<{self._name(t)} object>"
        if isinstance(reduced, str):  # a global: pickled by name
            return f"{self._name(t)}.{reduced}"
        parts = list(reduced)
        for i in (3, 4):  # list and dict items come as iterators
            if len(parts) > i and parts[i] is not None:
                parts[i] = list(parts[i])
        inner = ", ".join(self.text(p, depth) for p in parts[1:])
        return f"{self._name(t)}<{inner}>"
