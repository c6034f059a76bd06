"""Task identity: canonical, type-tagged arguments (table tests)."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path, PurePosixPath

import pydantic
import pytest

from taskproc.errors import ArgumentError
from taskproc.model._canonical import (
    Unsupported,
    canonical_arguments,
    canonicalize,
    digest,
    dumps,
    flat_text,
)
from taskproc.model._future import future_ref


def canon(value: object) -> str:
    return dumps(canonicalize(value, "x", future_ref))


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


class Model(pydantic.BaseModel):
    a: int
    b: list[str]


DISTINCT = [
    ((1, 2), [1, 2]),
    (1, 1.0),
    (1, True),
    (0, False),
    (1.0, True),
    (None, 0),
    ("1", 1),
    ({"a": 1}, {"a": 1.0}),
    ([(1,)], [[1]]),
    (Color.RED, 1),
    (Point(1, 2.0), {"x": 1, "y": 2.0}),
    (Path("a/b"), "a/b"),
    (b"ab", "ab"),
    ({1, 2}, [1, 2]),
    (frozenset({1}), {1}),
    ({"__tuple__": [1]}, (1,)),
    (float("nan"), "nan"),
    ({1: "x"}, {"1": "x"}),
    ({1: "x"}, {1.0: "x"}),
    ({1: "x"}, {True: "x"}),
    ({None: "x"}, {"null": "x"}),
    ({(1, 2): "x"}, {"(1, 2)": "x"}),
    ({(1, 2): "x"}, {"__tuple__": [1, 2]}),
    ({0: "a", 1: "b"}, [[0, "a"], [1, "b"]]),
    ({Color.RED: 1}, {"RED": 1}),
    ({b"k": 1}, {"k": 1}),
]


@pytest.mark.parametrize(("a", "b"), DISTINCT)
def test_distinct_values_have_distinct_forms(a: object, b: object) -> None:
    assert canon(a) != canon(b)


SAME = [
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    ({"x": {"q": 1, "p": 2}}, {"x": {"p": 2, "q": 1}}),
    ({3, 1, 2}, {1, 2, 3}),
    (Path("a/b"), PurePosixPath("a/b")),
    (Model(a=1, b=["x"]), Model(b=["x"], a=1)),
    ({0: "a", 1: "b", 2: "c"}, {2: "c", 0: "a", 1: "b"}),
    ({1: "a", "b": 2, None: 3}, {None: 3, "b": 2, 1: "a"}),
    ({Point(1, 2.0): [1], Color.BLUE: 0}, {Color.BLUE: 0, Point(1, 2.0): [1]}),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_equal_values_have_equal_forms(a: object, b: object) -> None:
    assert canon(a) == canon(b)


@pytest.mark.parametrize(
    "value", [object(), {object(): "a"}, {(1, object()): "a"}, [1, object()], lambda: 1]
)
def test_unsupported_values_raise(value: object) -> None:
    with pytest.raises(Unsupported):
        canon(value)


KEYS = [
    0,
    -1.5,
    True,
    None,
    "s",
    b"raw",
    Color.RED,
    (1, "a", None),
    ((1, 2), (3,)),
    Point(1, 2.0),
    frozenset({1, 2}),
    Path("a/b"),
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_dict_keys_of_every_hashable_argument_type(key: object) -> None:
    """A key keeps its type in the canonical form: it is the key's own canonical form."""
    text = canon({key: "v", "other": 1})
    assert dumps(canonicalize(key, "k", future_ref)) in text
    assert text == canon({"other": 1, key: "v"})


def test_str_keyed_dicts_keep_their_form() -> None:
    """Task ids of dicts with str keys are those of earlier versions (a sorted JSON object;
    tests/test_legacy_cache.py reads a cache made with them)."""
    assert canon({"b": 1, "a": {"y": (1,), "x": 2}}) == '{"a":{"x":2,"y":{"__tuple__":[1]}},"b":1}'
    assert canon({"__tuple__": 1}) == '{"__dict__":{"__tuple__":1}}'


def test_a_future_cannot_be_a_dict_key() -> None:
    from taskproc import Const

    with pytest.raises(Unsupported, match="a future cannot be a dict key"):
        canon({(1, Const(2)): "a"})


def test_error_names_task_parameter_and_type() -> None:
    with pytest.raises(ArgumentError) as info:
        canonical_arguments("mod.T", {"n": 1, "data": [1, object()]}, future_ref)
    msg = str(info.value)
    assert "mod.T" in msg and "'data[1]'" in msg and "builtins.object" in msg
    assert "\n" not in msg


def test_digest_is_stable() -> None:
    # The same on every machine and Python version: a fixed expectation.
    assert digest('{"n":1}') == "984530e49acf879ea2a3b7c3062fca65"
    assert len(digest("x")) == 32
    assert digest('{"n":1}') != digest('{"n":2}')


def test_argument_order_is_declaration_order() -> None:
    text = canonical_arguments("t", {"b": 1, "a": 2}, future_ref)
    assert text == '{"b":1,"a":2}'


FLAT_VALUES = [
    0,
    -7,
    10**40,
    "",
    "plain",
    'quote " and \\ backslash',
    "line\nbreak\ttab\x00nul\x1f",
    "ünïcödé ✓ \U0001f600",
    "\ud800",  # a lone surrogate
    True,
    False,
    None,
]


@pytest.mark.parametrize("value", FLAT_VALUES, ids=repr)
def test_flat_arguments_take_the_direct_path_with_the_same_text(value: object) -> None:
    """Task ids must not depend on which path built the text: the direct one for flat
    arguments, json's encoder for the rest."""
    args = {"a": value, 'name with "quotes" ü': value, "b": 1}
    assert flat_text(args) is not None
    assert canonical_arguments("t", args, future_ref) == dumps(
        {k: canonicalize(v, k, future_ref) for k, v in args.items()}
    )


@pytest.mark.parametrize("value", [1.5, [1], (1,), {"a": 1}, b"x"], ids=repr)
def test_other_arguments_take_the_encoder_path(value: object) -> None:
    assert flat_text({"a": value}) is None
