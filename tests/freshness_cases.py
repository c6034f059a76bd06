"""Kinds of code edit, each with its cosmetic twin, for the freshness matrix
(`test_freshness_matrix.py`) and the command-line tests (`test_code_reach.py`).

Each case is a small project: ``pipe.py`` with a task ``Uses`` that reaches the construct and
a task ``Other`` that does not, plus the modules the case needs. `edit` changes what ``Uses``
returns; `cosmetic` changes nothing it computes (a comment, a docstring, formatting, an
annotation, code it does not reach). With detection on, the edit must rerun ``Uses`` and only
it, and the cosmetic edit nothing.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

Edit = tuple[str, str, str]  # file, old text, new text


@dataclass(frozen=True)
class Case:
    name: str
    uses: str  # the body of Uses.run_task
    files: dict[str, str]
    edit: Edit
    cosmetic: Edit
    prelude: str = "import helpers"  # pipe.py's imports
    pipe_extra: str = ""  # more of pipe.py (after the imports)
    methods: str = ""  # more methods of Uses

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        body = textwrap.indent(textwrap.dedent(self.uses).strip(), " " * 8)
        pipe = (
            "from taskproc import Task\n"
            f"{self.prelude}\n\n"
            f"{textwrap.dedent(self.pipe_extra)}\n\n"
            "class Uses(Task):\n"
            "    def run_task(self):\n"
            f"{body}\n\n"
            f"{textwrap.indent(textwrap.dedent(self.methods), ' ' * 4)}\n\n"
            "class Other(Task):\n"
            "    def run_task(self):\n"
            "        return 'other'\n\n\n"
            "class Main(Task):\n"
            "    def __init__(self):\n"
            "        self.uses = Uses()\n"
            "        self.other = Other()\n\n"
            "    def run_task(self):\n"
            "        print('RESULT', repr(self.uses.get_result()))\n"
            "        return [self.uses.get_result(), self.other.get_result()]\n"
        )
        (folder / "pipe.py").write_text(pipe)
        for name, text in self.files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip())

    @staticmethod
    def apply(folder: Path, edit: Edit) -> None:
        name, old, new = edit
        path = folder / name
        text = path.read_text()
        if old not in text:
            raise AssertionError(f"{folder.name}: {old!r} is not in {name}")
        path.write_text(text.replace(old, new, 1))


def helper(text: str) -> dict[str, str]:
    return {"helpers.py": text}


COMMENT = "# a comment that changes nothing\n"

CASES: list[Case] = [
    Case(
        "helper function body",
        "return helpers.scale(3)",
        helper("def scale(x):\n    return x * 2\n"),
        ("helpers.py", "x * 2", "x * 3"),
        ("helpers.py", "def scale(x):\n", 'def scale(x):\n    """Scale x."""\n'),
    ),
    Case(
        "helper in the pipeline file",
        "return double(3)",
        {},
        ("pipe.py", "return x * 2", "return x * 5"),
        ("pipe.py", "def double(x):\n", "def double(x):  # doubles\n"),
        prelude="",
        pipe_extra="def double(x):\n    return x * 2\n",
    ),
    Case(
        "from-import at the top",
        "return scale(3)",
        helper("def scale(x):\n    return x * 2\n"),
        ("helpers.py", "x * 2", "x * 3"),
        ("helpers.py", "    return x * 2", "    return (\n        x * 2\n    )"),
        prelude="from helpers import scale",
    ),
    Case(
        "import inside run_task",
        "import lazyhelp\nreturn lazyhelp.scale(3)",
        {"lazyhelp.py": "def scale(x):\n    return x * 2\n"},
        ("lazyhelp.py", "x * 2", "x * 3"),
        ("lazyhelp.py", "def scale", COMMENT + "def scale"),
        prelude="",
    ),
    Case(
        "from-import inside run_task",
        "from lazyhelp import scale\nreturn scale(3)",
        {"lazyhelp.py": "def scale(x):\n    return x * 2\n"},
        ("lazyhelp.py", "x * 2", "x * 3"),
        ("lazyhelp.py", "def scale(x):\n", 'def scale(x):\n    """Doc."""\n'),
        prelude="",
    ),
    Case(
        "import inside a helper",
        "return helpers.scale(3)",
        {
            "helpers.py": "def scale(x):\n    import util\n    return util.k() * x\n",
            "util.py": "def k():\n    return 2\n",
        },
        ("util.py", "return 2", "return 7"),
        ("util.py", "def k():\n", COMMENT + "def k():\n"),
    ),
    Case(
        "from-import of a submodule inside a function",
        "from pkg import mod\nreturn mod.value()",
        {"pkg/__init__.py": "", "pkg/mod.py": "def value():\n    return 1\n"},
        ("pkg/mod.py", "return 1", "return 4"),
        ("pkg/mod.py", "return 1", "return 1  # one"),
        prelude="",
    ),
    Case(
        "relative import inside a package function",
        "from pkg import api\nreturn api.go()",
        {
            "pkg/__init__.py": "",
            "pkg/api.py": "def go():\n    from . import impl\n    return impl.value()\n",
            "pkg/impl.py": "def value():\n    return 1\n",
        },
        ("pkg/impl.py", "return 1", "return 9"),
        ("pkg/impl.py", "def value():\n", "\n\ndef value():\n"),
        prelude="",
    ),
    Case(
        "helper of a helper",
        "return helpers.outer(3)",
        {
            "helpers.py": "import deep\n\n\ndef outer(x):\n    return deep.inner(x) + 1\n",
            "deep.py": "def inner(x):\n    return x * 2\n",
        },
        ("deep.py", "x * 2", "x * 6"),
        ("deep.py", "x * 2", "x*2"),
    ),
    Case(
        "int constant",
        "return helpers.scale(3)",
        helper("FACTOR = 2\n\n\ndef scale(x):\n    return x * FACTOR\n"),
        ("helpers.py", "FACTOR = 2", "FACTOR = 3"),
        ("helpers.py", "FACTOR = 2", "FACTOR = 2  # two"),
    ),
    Case(
        "str constant",
        "return helpers.greet()",
        helper("NAME = 'ann'\n\n\ndef greet():\n    return 'hi ' + NAME\n"),
        ("helpers.py", "'ann'", "'bob'"),
        ("helpers.py", "'ann'", '"ann"'),
    ),
    Case(
        "tuple constant",
        "return helpers.total()",
        helper("VALUES = (1, 2)\n\n\ndef total():\n    return sum(VALUES)\n"),
        ("helpers.py", "(1, 2)", "(1, 5)"),
        ("helpers.py", "(1, 2)", "(\n    1,\n    2,\n)"),
    ),
    Case(
        "list constant",
        "return helpers.total()",
        helper("VALUES = [1, 2]\n\n\ndef total():\n    return sum(VALUES)\n"),
        ("helpers.py", "[1, 2]", "[1, 2, 3]"),
        ("helpers.py", "[1, 2]", "[1, 2,]"),
    ),
    Case(
        "dict constant",
        "return helpers.get()",
        helper("TABLE = {'k': 2}\n\n\ndef get():\n    return TABLE['k']\n"),
        ("helpers.py", "{'k': 2}", "{'k': 3}"),
        ("helpers.py", "{'k': 2}", "{'k':2}"),
    ),
    Case(
        "dict insertion order",
        "return helpers.first()",
        helper("TABLE = {'a': 1, 'b': 2}\n\n\ndef first():\n    return next(iter(TABLE))\n"),
        ("helpers.py", "{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}"),
        ("helpers.py", "{'a': 1, 'b': 2}", "dict(a=1, b=2)"),
    ),
    Case(
        "set constant",
        "return helpers.total()",
        helper("VALUES = {1, 2}\n\n\ndef total():\n    return sum(VALUES)\n"),
        ("helpers.py", "{1, 2}", "{1, 2, 4}"),
        ("helpers.py", "{1, 2}", "{2, 1}"),
    ),
    Case(
        "frozenset constant",
        "return helpers.total()",
        helper("VALUES = frozenset({'a', 'b'})\n\n\ndef total():\n    return sorted(VALUES)\n"),
        ("helpers.py", "{'a', 'b'}", "{'a', 'c'}"),
        ("helpers.py", "{'a', 'b'}", "{'b', 'a'}"),
    ),
    Case(
        "NamedTuple constant",
        "return helpers.area()",
        helper(
            """
            from typing import NamedTuple


            class Size(NamedTuple):
                w: int
                h: int


            SIZE = Size(2, 3)


            def area():
                return SIZE.w * SIZE.h
            """
        ),
        ("helpers.py", "Size(2, 3)", "Size(2, 4)"),
        ("helpers.py", "Size(2, 3)", "Size(w=2, h=3)"),
    ),
    Case(
        "dataclass constant",
        "return helpers.rate()",
        helper(
            """
            from dataclasses import dataclass


            @dataclass
            class Cfg:
                lr: float


            CFG = Cfg(0.1)


            def rate():
                return CFG.lr
            """
        ),
        ("helpers.py", "Cfg(0.1)", "Cfg(0.2)"),
        ("helpers.py", "Cfg(0.1)", "Cfg(lr=0.1)"),
    ),
    Case(
        "dataclass with slots",
        "return helpers.rate()",
        helper(
            """
            from dataclasses import dataclass


            @dataclass(slots=True)
            class Cfg:
                lr: float


            CFG = Cfg(0.1)


            def rate():
                return CFG.lr
            """
        ),
        ("helpers.py", "Cfg(0.1)", "Cfg(0.2)"),
        ("helpers.py", "class Cfg:\n", 'class Cfg:\n    """Settings."""\n\n'),
    ),
    Case(
        "frozen dataclass",
        "return helpers.rate()",
        helper(
            """
            from dataclasses import dataclass


            @dataclass(frozen=True)
            class Cfg:
                lr: float


            CFG = Cfg(0.1)


            def rate():
                return CFG.lr
            """
        ),
        ("helpers.py", "Cfg(0.1)", "Cfg(0.3)"),
        ("helpers.py", "CFG = ", COMMENT + "CFG = "),
    ),
    Case(
        "nested dataclasses",
        "return helpers.rate()",
        helper(
            """
            from dataclasses import dataclass


            @dataclass
            class Opt:
                lr: float


            @dataclass
            class Cfg:
                opt: Opt


            CFG = Cfg(opt=Opt(lr=0.1))


            def rate():
                return CFG.opt.lr
            """
        ),
        ("helpers.py", "lr=0.1", "lr=0.5"),
        ("helpers.py", "Cfg(opt=Opt(lr=0.1))", "Cfg(Opt(0.1))"),
    ),
    Case(
        "object holding a function",
        "return helpers.run(3)",
        helper(
            """
            class Proc:
                def __init__(self, fn):
                    self.fn = fn


            def scale(x):
                return x * 2


            PROC = Proc(scale)


            def run(x):
                return PROC.fn(x)
            """
        ),
        ("helpers.py", "x * 2", "x * 8"),
        ("helpers.py", "def scale(x):\n", 'def scale(x):\n    """Doc."""\n'),
    ),
    Case(
        "date constant",
        "return helpers.when()",
        helper(
            "import datetime\n\nDAY = datetime.date(2024, 1, 1)\n\n\n"
            "def when():\n    return str(DAY)\n"
        ),
        ("helpers.py", "2024, 1, 1", "2024, 1, 2"),
        ("helpers.py", "2024, 1, 1", "2024, 1, 1 "),
    ),
    Case(
        "datetime constant",
        "return helpers.when()",
        helper(
            "from datetime import datetime\n\nAT = datetime(2024, 1, 1, 12)\n\n\n"
            "def when():\n    return AT.hour\n"
        ),
        ("helpers.py", "2024, 1, 1, 12", "2024, 1, 1, 13"),
        ("helpers.py", "2024, 1, 1, 12", "2024, 1, 1, 12, 0"),
    ),
    Case(
        "Decimal constant",
        "return helpers.price()",
        helper(
            "from decimal import Decimal\n\nPRICE = Decimal('1.50')\n\n\n"
            "def price():\n    return str(PRICE)\n"
        ),
        ("helpers.py", "'1.50'", "'1.75'"),
        ("helpers.py", "'1.50'", '"1.50"'),
    ),
    Case(
        "OrderedDict constant",
        "return helpers.keys()",
        helper(
            "from collections import OrderedDict\n\nTABLE = OrderedDict(a=1, b=2)\n\n\n"
            "def keys():\n    return list(TABLE)\n"
        ),
        ("helpers.py", "OrderedDict(a=1, b=2)", "OrderedDict(b=2, a=1)"),
        ("helpers.py", "OrderedDict(a=1, b=2)", "OrderedDict([('a', 1), ('b', 2)])"),
    ),
    Case(
        "SimpleNamespace constant",
        "return helpers.get()",
        helper(
            "from types import SimpleNamespace\n\nNS = SimpleNamespace(k=2)\n\n\n"
            "def get():\n    return NS.k\n"
        ),
        ("helpers.py", "k=2", "k=3"),
        ("helpers.py", "k=2", "k = 2"),
    ),
    Case(
        "enum member's value",
        "return helpers.level()",
        helper(
            """
            import enum


            class Level(enum.Enum):
                LOW = 1
                HIGH = 2


            def level():
                return Level.LOW.value
            """
        ),
        ("helpers.py", "LOW = 1", "LOW = 5"),
        ("helpers.py", "class Level(enum.Enum):\n", 'class Level(enum.Enum):\n    """Levels."""\n'),
    ),
    Case(
        "enum constant",
        "return helpers.level()",
        helper(
            """
            import enum


            class Level(enum.Enum):
                LOW = 1
                HIGH = 2


            MODE = Level.LOW


            def level():
                return MODE.value
            """
        ),
        ("helpers.py", "MODE = Level.LOW", "MODE = Level.HIGH"),
        ("helpers.py", "MODE = Level.LOW", "MODE = (Level.LOW)"),
    ),
    Case(
        "a list of 200,000 items",
        "return helpers.pick()",
        helper(
            "BIG = list(range(200_000))\nBIG[150_000] = -1\n\n\n"
            "def pick():\n    return BIG[150_000]\n"
        ),
        ("helpers.py", "= -1", "= -2"),
        ("helpers.py", "= -1", "= (-1)"),
    ),
    Case(
        "a global bound to a builtin",
        "return helpers.agg([1, 5])",
        helper("agg = max\n"),
        ("helpers.py", "agg = max", "agg = min"),
        ("helpers.py", "agg = max", "agg = max  # the largest"),
    ),
    Case(
        "a global bound to a C function",
        "return helpers.rnd(2.5)",
        helper("import math\n\nrnd = math.floor\n"),
        ("helpers.py", "math.floor", "math.ceil"),
        ("helpers.py", "import math\n", "import math\n\n"),
    ),
    Case(
        "class made by a factory",
        "return helpers.Scaler().scale(3)",
        helper(
            """
            def make_scaler(k):
                class Scaler:
                    def scale(self, x):
                        return x * k

                return Scaler


            Scaler = make_scaler(2)
            """
        ),
        ("helpers.py", "make_scaler(2)", "make_scaler(3)"),
        ("helpers.py", "make_scaler(2)", "make_scaler(k=2)"),
    ),
    Case(
        "function made by a factory",
        "return helpers.double(3)",
        helper(
            """
            def make_mul(k):
                def mul(x):
                    return x * k

                return mul


            double = make_mul(2)
            """
        ),
        ("helpers.py", "make_mul(2)", "make_mul(4)"),
        ("helpers.py", "def make_mul(k):\n", 'def make_mul(k):\n    """A multiplier."""\n'),
    ),
    Case(
        "a module named like the standard library's",
        "return statistics.middle([1, 2, 9])",
        {"statistics.py": "def middle(xs):\n    return xs[len(xs) // 2]\n"},
        ("statistics.py", "xs[len(xs) // 2]", "xs[-1]"),
        ("statistics.py", "def middle", COMMENT + "def middle"),
        prelude="import statistics",
    ),
    Case(
        "a static method of another task class",
        "return Prep.clean(' x ')",
        {},
        ("pipe.py", "return s.strip()", "return s.strip().upper()"),
        ("pipe.py", "def clean(s):\n", 'def clean(s):\n        """Strip."""\n'),
        prelude="",
        pipe_extra="""
        class Prep(Task):
            @staticmethod
            def clean(s):
                return s.strip()

            def run_task(self):
                return 0
        """,
    ),
    Case(
        "a class method of another task class",
        "return Prep.tag('x')",
        {},
        ("pipe.py", "return cls.__name__ + s", "return s + cls.__name__"),
        ("pipe.py", "def tag(cls, s):\n", "def tag(cls, s):  # tags\n"),
        prelude="",
        pipe_extra="""
        class Prep(Task):
            @classmethod
            def tag(cls, s):
                return cls.__name__ + s

            def run_task(self):
                return 0
        """,
    ),
    Case(
        "a class attribute set after the class statement",
        "return helpers.Scaler().scale(3)",
        helper(
            """
            class Scaler:
                k = 1

                def scale(self, x):
                    return x * self.k


            Scaler.k = 3
            """
        ),
        ("helpers.py", "Scaler.k = 3", "Scaler.k = 4"),
        ("helpers.py", "Scaler.k = 3", "Scaler.k = 3  # three"),
    ),
    Case(
        "a class attribute",
        "return helpers.Scaler().scale(3)",
        helper("class Scaler:\n    k = 2\n\n    def scale(self, x):\n        return x * self.k\n"),
        ("helpers.py", "k = 2", "k = 7"),
        ("helpers.py", "k = 2", "k = 2  # two"),
    ),
    Case(
        "a method of a helper class",
        "return helpers.Scaler().scale(3)",
        helper("class Scaler:\n    def scale(self, x):\n        return x * 2\n"),
        ("helpers.py", "x * 2", "x * 9"),
        ("helpers.py", "def scale(self, x):\n", 'def scale(self, x):\n        """Doc."""\n'),
    ),
    Case(
        "a method of a base class",
        "return helpers.Child().scale(3)",
        helper(
            "class Base:\n    def scale(self, x):\n        return x * 2\n\n\n"
            "class Child(Base):\n    pass\n"
        ),
        ("helpers.py", "x * 2", "x * 11"),
        ("helpers.py", "class Child(Base):\n", COMMENT + "class Child(Base):\n"),
    ),
    Case(
        "a lambda in a global",
        "return helpers.f(3)",
        helper("f = lambda x: x + 1  # noqa: E731\n"),
        ("helpers.py", "x + 1", "x + 2"),
        ("helpers.py", "x + 1", "x+1"),
    ),
    Case(
        "a default argument",
        "return helpers.scale(3)",
        helper("def scale(x, k=2):\n    return x * k\n"),
        ("helpers.py", "k=2", "k=5"),
        ("helpers.py", "k=2", "k = 2"),
    ),
    Case(
        "functools.partial",
        "return helpers.triple(3)",
        helper(
            "import functools\n\n\ndef mul(x, k):\n    return x * k\n\n\n"
            "triple = functools.partial(mul, k=3)\n"
        ),
        ("helpers.py", "k=3)", "k=4)"),
        ("helpers.py", "k=3)", "k = 3)"),
    ),
    Case(
        "a decorated helper's body",
        "return helpers.scale(3)",
        helper(
            """
            import functools


            def logged(fn):
                @functools.wraps(fn)
                def wrapper(*args):
                    return fn(*args)

                return wrapper


            @logged
            def scale(x):
                return x * 2
            """
        ),
        ("helpers.py", "x * 2", "x * 3"),
        ("helpers.py", "def wrapper(*args):\n", 'def wrapper(*args):\n        """Log."""\n'),
    ),
    Case(
        "a decorator's argument",
        "return helpers.scale(3)",
        helper(
            """
            import functools


            def times(n):
                def deco(fn):
                    @functools.wraps(fn)
                    def wrapper(x):
                        return fn(x) * n

                    return wrapper

                return deco


            @times(2)
            def scale(x):
                return x + 1
            """
        ),
        ("helpers.py", "@times(2)", "@times(3)"),
        ("helpers.py", "@times(2)", "@times( 2 )"),
    ),
    Case(
        "a decorator's code",
        "return helpers.scale(3)",
        helper(
            """
            import functools


            def logged(fn):
                @functools.wraps(fn)
                def wrapper(*args):
                    return fn(*args) + 1

                return wrapper


            @logged
            def scale(x):
                return x * 2
            """
        ),
        ("helpers.py", "fn(*args) + 1", "fn(*args) + 2"),
        ("helpers.py", "def logged(fn):\n", 'def logged(fn):\n    """Logs."""\n'),
    ),
    Case(
        "an lru_cache helper",
        "return helpers.scale(3)",
        helper("import functools\n\n\n@functools.lru_cache\ndef scale(x):\n    return x * 2\n"),
        ("helpers.py", "x * 2", "x * 3"),
        ("helpers.py", "def scale(x):\n", "def scale(x: int) -> int:\n"),
    ),
    Case(
        "a nested function",
        "return helpers.outer(3)",
        helper("def outer(x):\n    def inner(y):\n        return y * 2\n\n    return inner(x)\n"),
        ("helpers.py", "y * 2", "y * 3"),
        ("helpers.py", "def inner(y):\n", "def inner(y: int) -> int:\n"),
    ),
    Case(
        "the task's own method",
        "return self.part() + '!'",
        {},
        ("pipe.py", "return 'part'", "return 'PART'"),
        ("pipe.py", "return 'part'", 'return "part"'),
        prelude="",
        methods="def part(self):\n    return 'part'\n",
    ),
    Case(
        "a property of a helper class",
        "return helpers.Box().size",
        helper("class Box:\n    @property\n    def size(self):\n        return 2\n"),
        ("helpers.py", "return 2", "return 3"),
        ("helpers.py", "def size(self):\n", "def size(self) -> int:\n"),
    ),
    Case(
        "a constant computed from another module",
        "return helpers.scale(3)",
        {
            "helpers.py": "import base\n\nFACTOR = base.BASE * 2\n\n\n"
            "def scale(x):\n    return x * FACTOR\n",
            "base.py": "BASE = 1\n",
        },
        ("base.py", "BASE = 1", "BASE = 2"),
        ("base.py", "BASE = 1", "BASE = 1  # one"),
    ),
    Case(
        "an edit beside a helper, not reached",
        "return helpers.scale(3)",
        helper("def scale(x):\n    return x * 2\n\n\ndef unused(x):\n    return x\n"),
        ("helpers.py", "x * 2", "x * 4"),
        ("helpers.py", "return x\n", "return -x\n"),
    ),
]
