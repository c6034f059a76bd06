"""`--kwargs` values take the types Main declares, so the command line and Python make the same
tasks; a near miss in Python (a list where a tuple was stored) is warned about."""

from __future__ import annotations

import dataclasses
import enum
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import pytest

from taskproc import Graph, InlineExecutor, Task
from taskproc.cli._kwargs import convert_kwargs, type_hints
from taskproc.errors import UsageError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Box:
    w: float
    h: float


class Typed(Task):
    def __init__(
        self,
        cols: tuple = (0, 1),  # type: ignore[type-arg]
        seeds: tuple[int, ...] = (1,),
        pair: tuple[int, str] = (0, "a"),
        scale: float = 1.0,
        path: Path = Path("."),
        color: Color = Color.RED,
        box: Box = Box(1.0, 1.0),
        mode: Literal["fast", "slow"] = "fast",
        limit: int | None = None,
        plain=2.0,  # type: ignore[no-untyped-def]  # no annotation: the default's type
    ) -> None:
        self.values = (cols, seeds, pair, scale, path, color, box, mode, limit, plain)


def convert(**kwargs: Any) -> dict[str, Any]:
    return convert_kwargs("m.Typed", Typed._tp_signature, type_hints(Typed), kwargs)


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("cols", [0, 1], (0, 1)),
        ("seeds", [3, 4], (3, 4)),
        ("pair", [2, "b"], (2, "b")),
        ("scale", 1, 1.0),
        ("path", "data/x.csv", Path("data/x.csv")),
        ("color", "blue", Color.BLUE),
        ("color", "BLUE", Color.BLUE),
        ("box", {"w": 2, "h": 3}, Box(2.0, 3.0)),
        ("mode", "slow", "slow"),
        ("limit", None, None),
        ("limit", 5, 5),
        ("plain", 3, 3.0),
    ],
)
def test_values_take_the_parameters_types(name: str, given: object, expected: object) -> None:
    value = convert(**{name: given})[name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "given", "annotation"),
    [
        ("seeds", ["a"], "tuple[int, ...]"),
        ("pair", [1, 2, 3], "tuple[int, str]"),
        ("scale", "x", "float"),
        ("mode", "medium", "Literal['fast', 'slow']"),
        ("limit", 1.5, "int | None"),
        ("color", "green", "Color"),
    ],
)
def test_a_value_that_does_not_fit_names_the_parameter(
    name: str, given: object, annotation: str
) -> None:
    with pytest.raises(UsageError) as info:
        convert(**{name: given})
    message = str(info.value)
    assert f"parameter {name!r}" in message and annotation in message, message


def test_an_unknown_name_gets_did_you_mean_and_the_signature_once() -> None:
    with pytest.raises(UsageError) as info:
        convert(seed=[1])
    message = str(info.value)
    assert "did you mean 'seeds'?" in message
    assert message.count("takes") == 1 and str(Typed._tp_signature) in message


PIPE = """
from taskproc import Task

class Main(Task):
    def __init__(self, cols: tuple = (0, 1), scale: float = 1.0):
        self.cols, self.scale = cols, scale

    def run_task(self):
        return [list(self.cols), self.scale]
"""


def test_the_command_line_reuses_the_defaults_task(tmp_path: Path) -> None:
    (tmp_path / "fd.py").write_text(PIPE)

    def taskproc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskproc", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert taskproc("fd.py", "-o", "c").returncode == 0
    again = taskproc("fd.py", "-o", "c", "--kwargs", '{"cols": [0, 1], "scale": 1}', "-D")
    assert again.returncode == 0, again.stderr
    listed = taskproc("ls", "c", "fd.Main")
    assert listed.stdout.count("fd.Main(") == 1, listed.stdout  # one task, not two
    bad = taskproc("fd.py", "-o", "c", "--kwargs", '{"scale": "big"}')
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "parameter 'scale'" in bad.stderr and "float" in bad.stderr


class Main(Task):
    def __init__(self, cols: object = (0, 1), scale: float = 1.0) -> None:
        self.cols, self.scale = cols, scale

    def run_task(self) -> int:
        return 1


def test_python_warns_when_a_list_misses_a_stored_tuple(cache: Path) -> None:
    with Graph(cache):
        Main().run_graph(executor=InlineExecutor())
        with pytest.warns(UserWarning, match=r"differ only by tuple/list or int/float"):
            Main(cols=[0, 1], scale=1).run_graph(executor=InlineExecutor())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Main(cols=(2, 3)).run_graph(executor=InlineExecutor())  # really different: quiet


# -- hostile values: one line, exit 2 -----------------------------------------------------------


class Hostile(Task):
    def __init__(self, x: float = 1.0, tags: set = frozenset(), box: Box = Box(1, 1)) -> None:  # type: ignore[type-arg]
        self.values = (x, sorted(tags), box)


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ({"x": 10**400}, "too large for a float"),
        ({"tags": [[1, 2]]}, "must be hashable"),
        ({"tags": [{"a": 1}]}, "must be hashable"),
        ({"box": {"w": 1, "depth": 2}}, "unexpected keyword argument 'depth'"),
    ],
)
def test_a_value_python_cannot_make_is_a_misfit(given: dict[str, Any], why: str) -> None:
    with pytest.raises(UsageError) as info:
        convert_kwargs("m.Hostile", Hostile._tp_signature, type_hints(Hostile), given)
    message = str(info.value)
    assert why in message and "\n" not in message, message
    assert len(message) < 400, message  # a 400-digit value is shown cut


HOSTILE_PIPE = """
from taskproc import Task

class Main(Task):
    def __init__(self, x: float = 1.0, tags: set = frozenset()):
        self.x, self.tags = x, sorted(tags)

    def run_task(self):
        return self.x
"""

DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


@pytest.mark.parametrize(
    "args",
    [
        ("p.py", "--kwargs", '{"x": ' + "1" * 400 + "}"),
        ("p.py", "--kwargs", '{"tags": [[1, 2]]}'),
        ("p.py", "--kwargs", '{"x": ' + DEEP + "}"),
        ("p.py", "--kwargs", '{"x": ' + "[" * 100 + "]" * 100 + "}"),  # past 100, any Python
        ("p.py", "--kwargs", '{"x": ' + "1" * 5000 + "}"),  # past Python's int digits
        ("p.py", "--prefixes", DEEP_OBJECT),
        ("p.py", "--rate-limits", DEEP_OBJECT),
        ("why", "p.py", "--kwargs", DEEP_OBJECT),
        ("gc", "p.py", "--kwargs", DEEP_OBJECT),
    ],
    ids=[
        "400 digits",
        "set of lists",
        "1000 deep",
        "101 deep",
        "5000 digits",
        "prefixes",
        "limits",
        "why",
        "gc",
    ],
)
def test_hostile_json_options_are_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "p.py").write_text(HOSTILE_PIPE)
    done = subprocess.run(
        [sys.executable, "-m", "taskproc", *args, "-o", "c"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr) < 400, done.stderr  # the value is shown cut, not whole
