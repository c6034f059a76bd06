"""Code identities: what counts as a change to a task's code, and what does not.

Each rule is a pipeline run, edited, and run again in a new process with
``detect_source_change=True``, as a user does; the tasks that ran the second time are the
verdict. Unit tests below pin what the rules rest on: one identity per class per run, the 0.26
digest kept for tasks that reach nothing else, code that cannot be read.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import Project

from taskproc import CodeChangedWarning, Graph, InlineExecutor, Task, TaskDefinitionError
from taskproc.model import Fingerprints
from taskproc.model._fingerprint import fingerprint
from taskproc.store import Holder, MemoryStore, new_runner, read_record

MAIN = """
class Main(Task):
    def __init__(self):
        self.a = UsesHelper()
        self.b = Other()

    def run_task(self):
        return [self.a.get_result(), self.b.get_result()]
"""


def pipeline(body: str) -> str:
    return "from taskproc import Task\n" + textwrap.dedent(body) + MAIN


@pytest.mark.parametrize("executor", ["inline", "thread", "process"])
def test_a_helper_edit_reruns_the_tasks_that_call_it_and_only_those(
    project: Project, executor: str
) -> None:
    project.write(
        pipe=pipeline(
            """
            import helpers

            class UsesHelper(Task):
                def run_task(self):
                    return helpers.scale(3)

            class Other(Task):
                def run_task(self):
                    return helpers.unused_by_scale(3)
            """
        ),
        helpers="""
            def scale(x):
                return x * 2

            def unused_by_scale(x):
                return x + 1
            """,
    )
    first = project.run(executor)
    assert first["result"] == [6, 4]
    assert first["ran"] == {"pipe.Main": 1, "pipe.UsesHelper": 1, "pipe.Other": 1}
    project.edit("helpers", "return x * 2", "return x * 4")
    second = project.run(executor)
    assert second["result"] == [12, 4]
    assert second["ran"] == {"pipe.UsesHelper": 1, "pipe.Main": 1}  # Main: its upstream reran
    assert project.run(executor)["ran"] == {}


def test_a_helper_of_a_helper_in_another_module(project: Project) -> None:
    project.write(
        pipe=pipeline(
            """
            from helpers import outer

            class UsesHelper(Task):
                def run_task(self):
                    return outer(2)

            class Other(Task):
                def run_task(self):
                    return 0
            """
        ),
        helpers="""
            from deep import inner

            def outer(x):
                return inner(x) + 1
            """,
        deep="""
            def inner(x):
                return x * 10
            """,
    )
    assert project.run()["result"] == [21, 0]
    project.edit("deep", "x * 10", "x * 100")
    second = project.run()
    assert second["result"] == [201, 0]
    assert second["ran"] == {"pipe.UsesHelper": 1, "pipe.Main": 1}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("FACTOR = 3", "FACTOR = 4"),
        ("NAMES = ('a', 'b')", "NAMES = ('a', 'c')"),
        ("KEYS = frozenset({1, 2})", "KEYS = frozenset({1, 3})"),
        ("TABLE = {'x': 1}", "TABLE = {'x': 2}"),
    ],
    ids=["number", "tuple", "frozenset", "dict"],
)
def test_a_module_constant(project: Project, old: str, new: str) -> None:
    project.write(
        pipe=pipeline(
            """
            import helpers

            class UsesHelper(Task):
                def run_task(self):
                    return helpers.compute()

            class Other(Task):
                def run_task(self):
                    return 0
            """
        ),
        helpers="""
            FACTOR = 3
            NAMES = ('a', 'b')
            KEYS = frozenset({1, 2})
            TABLE = {'x': 1}

            def compute():
                return [FACTOR, list(NAMES), sorted(KEYS), TABLE['x']]
            """,
    )
    project.run()
    project.edit("helpers", old, new)
    assert project.run()["ran"] == {"pipe.UsesHelper": 1, "pipe.Main": 1}


def test_a_method_of_an_imported_user_class(project: Project) -> None:
    project.write(
        pipe=pipeline(
            """
            from shapes import Square

            class UsesHelper(Task):
                def run_task(self):
                    return Square(3).area()

            class Other(Task):
                def run_task(self):
                    return 0
            """
        ),
        shapes="""
            class Shape:
                def scale(self):
                    return 1

            class Square(Shape):
                def __init__(self, side):
                    self.side = side

                def area(self):
                    return self.side * self.side * self.scale()
            """,
    )
    assert project.run()["result"] == [9, 0]
    project.edit("shapes", "return 1", "return 2")  # a method of its base class, even
    second = project.run()
    assert second["result"] == [18, 0]
    assert second["ran"] == {"pipe.UsesHelper": 1, "pipe.Main": 1}


def test_a_lambda_in_a_module_global(project: Project) -> None:
    project.write(
        pipe=pipeline(
            """
            SCALE = lambda x: x * 2

            class UsesHelper(Task):
                def run_task(self):
                    return SCALE(5)

            class Other(Task):
                def run_task(self):
                    return 0
            """
        )
    )
    assert project.run()["result"] == [10, 0]
    project.edit("pipe", "lambda x: x * 2", "lambda x: x * 3")
    second = project.run()
    assert second["result"] == [15, 0]
    assert second["ran"] == {"pipe.UsesHelper": 1, "pipe.Main": 1}


def test_closures_defaults_and_decorated_helpers(project: Project) -> None:
    project.write(
        pipe=pipeline(
            """
            import functools
            import helpers

            class UsesHelper(Task):
                def run_task(self):
                    return [helpers.TRIPLE(1), helpers.offset(1), helpers.cached(1)]

            class Other(Task):
                def run_task(self):
                    return 0
            """
        ),
        helpers="""
            import functools

            BASE = 10

            def make(k):
                def scaled(x):
                    return x * k
                return scaled

            TRIPLE = make(3)

            def offset(x, by=BASE):
                return x + by

            @functools.lru_cache(maxsize=None)
            def cached(x):
                return x - 1
            """,
    )
    assert project.run()["result"] == [[3, 11, 0], 0]
    for old, new in [("make(3)", "make(4)"), ("BASE = 10", "BASE = 20"), ("x - 1", "x - 2")]:
        project.edit("helpers", old, new)
        assert project.run()["ran"] == {"pipe.UsesHelper": 1, "pipe.Main": 1}, (old, new)


def test_comments_docstrings_blank_lines_and_formatting_rerun_nothing(project: Project) -> None:
    project.write(
        pipe=pipeline(
            '''
            import helpers

            class UsesHelper(Task):
                """Uses a helper."""

                def run_task(self):
                    # the answer
                    return helpers.scale(3)

            class Other(Task):
                def run_task(self):
                    return 0
            '''
        ),
        helpers='''
            def scale(x):
                """Twice x."""
                return x * 2  # doubled
            ''',
    )
    project.run()
    project.edit("helpers", '"""Twice x."""', '"""Two times x, documented at length."""')
    project.edit("helpers", "# doubled", "# multiplied by two\n\n\n")
    project.edit("helpers", "return x * 2", "return (\n        x\n        *   2\n    )")
    project.edit("pipe", '"""Uses a helper."""', '"""Uses the scale helper."""')
    project.edit("pipe", "# the answer", "# the answer, computed\n\n")
    second = project.run()
    assert second["ran"] == {}
    assert second["result"] == [6, 0]


SITE = "site-packages"


def install_fake(root: Path, version: str, body: str) -> None:
    """A distribution `fakedist` (module `fakelib`) installed into ``root/site-packages``."""
    site = root / SITE
    for old in site.glob("fakedist-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"fakedist-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakedist\nVersion: {version}\n")
    (site / "fakelib.py").write_text(textwrap.dedent(body))


def test_a_third_party_upgrade_reruns_nothing_unless_the_task_asks_for_its_version(
    project: Project,
) -> None:
    install_fake(project.root, "1.0", "def value():\n    return 1\n")
    project.env["PYTHONPATH"] = str(project.root / SITE)
    project.write(
        pipe=pipeline(
            """
            import fakelib

            class UsesHelper(Task):
                def run_task(self):
                    return fakelib.value()

            class Other(Task):
                task_requires = ("fakedist",)

                def run_task(self):
                    return fakelib.value()
            """
        )
    )
    assert project.run()["result"] == [1, 1]
    # An upgrade: new code and a new version. Only the task that asked for it reruns.
    install_fake(project.root, "2.0", "def value():\n    # faster now\n    return 0 + 1\n")
    second = project.run()
    assert second["ran"] == {"pipe.Other": 1, "pipe.Main": 1}
    assert project.run()["ran"] == {}


def test_recursion_between_helpers(project: Project) -> None:
    project.write(
        pipe=pipeline(
            """
            from helpers import is_even, Node

            class UsesHelper(Task):
                def run_task(self):
                    return [is_even(10), Node(Node(None)).depth()]

            class Other(Task):
                def run_task(self):
                    return 0
            """
        ),
        helpers="""
            def is_even(n):
                return True if n == 0 else is_odd(n - 1)

            def is_odd(n):
                return False if n == 0 else is_even(n - 1)

            class Node:
                def __init__(self, child):
                    self.child = child

                def depth(self):
                    return 1 + (self.child.depth() if isinstance(self.child, Node) else 0)
            """,
    )
    assert project.run()["result"] == [[True, 2], 0]
    project.edit("helpers", "return False if n == 0", "return (n < 0) if n == 0")
    assert project.run()["ran"] == {"pipe.UsesHelper": 1, "pipe.Main": 1}


def test_code_without_source_counts_by_what_can_be_seen_and_never_fails(
    project: Project,
) -> None:
    project.write(
        pipe=pipeline(
            """
            import math
            import operator

            namespace = {}
            exec("def made(x):\\n    return x * 2\\n", namespace)
            made = namespace["made"]           # a function without source
            root = math.sqrt                   # a function written in C
            getter = operator.itemgetter(0)    # an object of a C type

            class UsesHelper(Task):
                def run_task(self):
                    return made(int(root(16))) + getter([1])

            class Other(Task):
                def run_task(self):
                    return 0
            """
        )
    )
    assert project.run()["result"] == [9, 0]
    assert project.run()["ran"] == {}
    project.edit("pipe", "return x * 2", "return x * 3")
    second = project.run()
    assert second["result"] == [13, 0]
    assert second["ran"] == {"pipe.UsesHelper": 1, "pipe.Main": 1}


def test_another_task_class_is_counted_by_its_result_not_its_code(project: Project) -> None:
    """Main builds UsesHelper and Other; an edit of Other reruns Other, and Main only because
    Other's result is new (it would not if Other's code counted in Main's identity: see
    test_accept's downstream tests)."""
    project.write(
        pipe=pipeline(
            """
            class UsesHelper(Task):
                def run_task(self):
                    return 1

            class Other(Task):
                def run_task(self):
                    return 2
            """
        )
    )
    project.run()
    project.edit("pipe", "return 2", "return 3")
    assert project.run(detect=True)["ran"] == {"pipe.Other": 1, "pipe.Main": 1}


# -- the warning when detection is off ------------------------------------------------------------


def test_with_detection_off_a_changed_helper_is_used_with_one_warning(project: Project) -> None:
    project.write(
        pipe=pipeline(
            """
            import helpers

            class UsesHelper(Task):
                def run_task(self):
                    return helpers.scale(3)

            class Other(Task):
                def run_task(self):
                    return 0
            """
        ),
        helpers="def scale(x):\n    return x * 2\n",
    )
    assert project.run(detect=False)["warnings"] == []
    project.edit("helpers", "x * 2", "x * 4")
    second = project.run(detect=False)
    assert second["ran"] == {} and second["result"] == [6, 0]  # used as it is
    (message,) = second["warnings"]
    assert "1 cached result of pipe.UsesHelper" in message
    for action in ("detect_source_change=True", "taskproc why", "taskproc accept"):
        assert action in message
    assert project.run(detect=True)["ran"] == {"pipe.UsesHelper": 1, "pipe.Main": 1}
    assert project.run(detect=False)["warnings"] == []


def test_the_command_line_warns_in_one_line_and_the_warning_can_be_silenced(
    project: Project,
) -> None:
    project.write(
        pipe=pipeline(
            """
            import warnings
            import taskproc
            # warnings.simplefilter("ignore", taskproc.CodeChangedWarning)

            class UsesHelper(Task):
                def run_task(self):
                    return 1

            class Other(Task):
                def run_task(self):
                    return 0
            """
        )
    )
    run = ("pipe.py", "-o", "cache", "-D", "--dont-show-progress", "-t", "local")
    project.cli(*run)
    project.edit("pipe", "return 1", "return 2")
    shown = project.cli(*run).stderr.splitlines()
    assert [line for line in shown if "warning" in line] == [
        line for line in shown if line.startswith("taskproc: warning: 1 cached result of ")
    ]
    assert len(shown) == 2 and shown[1].startswith("taskproc: 1 done, ")  # and the summary
    project.edit("pipe", "# warnings.simplefilter", "warnings.simplefilter")
    project.edit("pipe", "return 2", "return 3")
    quiet = project.cli(*run).stderr.splitlines()
    assert len(quiet) == 1 and quiet[0].startswith("taskproc: 1 done, ")  # the summary alone


# -- unit tests ------------------------------------------------------------------------------------


class Leaf(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        return self.i


class Root(Task):
    def __init__(self, n: int) -> None:
        self.leaves = [Leaf(i) for i in range(n)]

    def run_task(self) -> int:
        return sum(leaf.get_result() for leaf in self.leaves)


@pytest.mark.parametrize("detect", [True, False])
def test_an_identity_is_computed_once_per_class_per_run(
    monkeypatch: pytest.MonkeyPatch, detect: bool
) -> None:
    computed: list[type] = []
    original = Fingerprints._identity

    def counting(self: Fingerprints, cls: type) -> Any:
        computed.append(cls)
        return original(self, cls)

    monkeypatch.setattr(Fingerprints, "_identity", counting)
    with Graph("memory", store=MemoryStore()):
        root = Root(30)
    root.run_graph(executor=InlineExecutor(), detect_source_change=detect)
    assert sorted(c.__name__ for c in computed) == ["Leaf", "Root"]
    computed.clear()
    root.run_graph(executor=InlineExecutor(), detect_source_change=detect)  # all cached
    assert sorted(c.__name__ for c in computed) == ["Leaf", "Root"]


def legacy_fingerprint(cls: type) -> str:
    """taskproc 0.26's fingerprint (f7bf927), kept here to pin that it is unchanged for tasks
    that reach nothing but their own classes."""
    h = hashlib.blake2b(digest_size=12)
    for klass in cls.__mro__:
        top = klass.__module__.partition(".")[0]
        if top == "taskproc" or top in sys.stdlib_module_names or top == "builtins":
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
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
        h.update(klass.__qualname__.encode())
        h.update(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
    return h.hexdigest()


FACTOR = 3


def helper(x: int) -> int:
    return x * FACTOR


class Base(Task):
    """A task base class of the user's."""

    task_version = 2

    def run_task(self) -> int:
        return 1


class SelfContained(Base):
    def __init__(self, n: int = 1) -> None:
        self.leaf = Leaf(n)  # another task class: not part of the identity

    def run_task(self) -> int:
        return sorted([self.leaf.get_result(), len("ab")])[0]


class ReachesHelper(Task):
    def run_task(self) -> int:
        return helper(2)


def test_a_task_that_reaches_nothing_else_keeps_its_digest_of_0_26() -> None:
    for cls in (Leaf, Root, Base, SelfContained):
        assert fingerprint(cls) == legacy_fingerprint(cls), cls
    assert fingerprint(ReachesHelper) != legacy_fingerprint(ReachesHelper)
    keys = [e.key for e in Fingerprints().identity(ReachesHelper).entries]
    assert keys == [
        "test_fingerprint.ReachesHelper",
        "test_fingerprint.FACTOR",
        "test_fingerprint.helper",
    ]


def test_entries_keep_the_source_for_why() -> None:
    identity = Fingerprints().identity(ReachesHelper)
    by_key = {e.key: e for e in identity.entries}
    assert by_key["test_fingerprint.helper"].kind == "function"
    assert by_key["test_fingerprint.helper"].source.startswith("def helper(x: int) -> int:")
    assert by_key["test_fingerprint.FACTOR"].source == "FACTOR = 3"


class Explodes:
    """An object whose attributes raise: it must not make fingerprinting fail."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


EXPLODES = Explodes()
MODULE_WITHOUT_FILE = types.ModuleType("made_up_module")


class ReachesOddThings(Task):
    def run_task(self) -> Any:
        return [EXPLODES, MODULE_WITHOUT_FILE, print, len, sys.maxsize]


def test_code_that_cannot_be_read_never_raises() -> None:
    identity = Fingerprints().identity(ReachesOddThings)
    assert identity.digest == Fingerprints()(ReachesOddThings)  # the same in every process
    assert "test_fingerprint.EXPLODES" in {e.key for e in identity.entries}


def test_task_requires_is_checked_when_the_class_is_defined() -> None:
    class Ok(Task):
        task_requires = ("numpy", "scikit-learn", "numpy")

    assert Ok.get_task_config().requires == ("numpy", "scikit-learn")

    class One(Task):
        task_requires = "pydantic"

    assert One.get_task_config().requires == ("pydantic",)
    with pytest.raises(TaskDefinitionError, match=r"Bad: task_requires must be a distribution"):

        class Bad(Task):
            task_name = "Bad"
            task_requires = ("numpy", 3)  # type: ignore[assignment]

    with pytest.raises(TaskDefinitionError, match="task_requires"):

        class Spaces(Task):
            task_requires = ("not a name",)


def test_a_required_distribution_counts_by_its_version() -> None:
    class NeedsPytest(Task):
        task_requires = ("pytest",)

    entries = {e.key: e for e in Fingerprints().identity(NeedsPytest).entries}
    assert entries["pytest (distribution)"].source == pytest.__version__

    class NeedsNothingInstalled(Task):
        task_requires = ("surely-not-installed-here",)

    entries = {e.key: e for e in Fingerprints().identity(NeedsNothingInstalled).entries}
    assert entries["surely-not-installed-here (distribution)"].source == "not installed"


def test_a_result_of_0_26_for_a_task_that_reaches_a_helper_is_not_taken_as_fresh() -> None:
    """0.26 hashed the class alone: such a record cannot vouch for the helper, so it reruns
    with detection on, and is reported (not silently used) with detection off."""
    with Graph("memory", store=MemoryStore()):
        task = ReachesHelper()
    task.run_graph(executor=InlineExecutor())
    store, loc = task._tp.store, task._tp_loc()
    record = read_record(store, loc)
    assert record is not None
    lease = store.claim(loc, new_runner())
    assert not isinstance(lease, Holder)
    with lease:
        assert lease.rekey(record, record._replace(code_id=legacy_fingerprint(ReachesHelper)))
    with pytest.warns(
        CodeChangedWarning, match="1 cached result of test_fingerprint.ReachesHelper"
    ):
        _, stats = task.run_graph(executor=InlineExecutor())
    assert stats["executed"] == 0
    _, stats = task.run_graph(executor=InlineExecutor(), detect_source_change=True)
    assert stats["executed"] == 1
