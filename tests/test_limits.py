"""Label limits as small pure operations (table tests)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from taskproc import Graph, InlineExecutor, Task
from taskproc.errors import ConfigError
from taskproc.run._limits import LabelCounter, graph_labels, unknown_labels_message
from taskproc.run._options import rate_limits as check_limits

CASES = [
    # limits, running before, labels of the new task, fits?
    ({"gpu": 2}, {"gpu": 1}, ("gpu",), True),
    ({"gpu": 2}, {"gpu": 2}, ("gpu",), False),
    ({"gpu": 2, "mem": 1}, {"gpu": 0, "mem": 1}, ("gpu", "mem"), False),
    ({"gpu": 2, "mem": 1}, {"gpu": 1, "mem": 0}, ("gpu", "mem"), True),
    ({"gpu": 1}, {"gpu": 1}, (), True),  # a task without limited labels always fits
]


@pytest.mark.parametrize(("limits", "running", "labels", "fits"), CASES)
def test_fits(
    limits: dict[str, int], running: dict[str, int], labels: tuple[str, ...], fits: bool
) -> None:
    counter = LabelCounter(limits)
    counter.running.update(running)
    assert counter.fits(counter.limited(labels)) is fits


def test_acquire_release_round_trip() -> None:
    counter = LabelCounter({"a": 1, "b": 3})
    limited = counter.limited(("x.Task", "a", "b", "*"))
    assert limited == ("a", "b")
    counter.acquire(limited)
    assert counter.running == {"a": 1, "b": 1} and not counter.fits(limited)
    counter.release(limited)
    assert counter.running == {"a": 0, "b": 0}


@pytest.mark.parametrize("bad", [{"gpu": 0}, {"gpu": -1}, {"gpu": 1.5}, {"gpu": "2"}, {3: 1}])
def test_bad_limits(bad: dict[object, object]) -> None:
    with pytest.raises(ConfigError, match="rate_limits"):
        check_limits(bad)  # type: ignore[arg-type]


# -- labels no task has --------------------------------------------------------------------

KNOWN = frozenset({"train", "gpu", "pipe.Train", "pipe.Load", "*"})
MESSAGES = [
    # given labels, the message (None: every label is known)
    ({"train": 2, "*": 4, "pipe.Load": 1}, None),
    (
        {"trian": 2},
        "rate_limits names label 'trian' that no task in the graph has, so it is ignored; "
        "did you mean 'train'? (labels: 'gpu', 'train', 'pipe.Load', 'pipe.Train', '*')",
    ),
    (
        {"gpu": 1, "zzz": 1, "qqq": 1},
        "rate_limits names labels 'zzz', 'qqq' that no task in the graph has, so they are "
        "ignored (labels: 'gpu', 'train', 'pipe.Load', 'pipe.Train', '*')",
    ),
]


@pytest.mark.parametrize(("given", "message"), MESSAGES)
def test_unknown_labels_message(given: dict[str, int], message: str | None) -> None:
    assert unknown_labels_message("rate_limits", given, KNOWN) == message


def test_unknown_labels_message_names_a_few_labels_only() -> None:
    known = frozenset(f"label{i:02d}" for i in range(30))
    message = unknown_labels_message("prefixes", ["nope"], known)
    assert message is not None and message.endswith("'label11' and 18 more)")


class Labeled(Task):
    task_label = "train"

    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        return self.i


def test_graph_labels_are_names_labels_and_star() -> None:
    assert graph_labels([Labeled]) == {"test_limits.Labeled", "train", "*"}


def test_a_run_warns_once_about_a_label_no_task_has(tmp_path: Path) -> None:
    with Graph(tmp_path / "cache"):
        tasks = [Labeled(i) for i in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks[0].run_graph(
            executor=InlineExecutor(), rate_limits={"trian": 1, "*": 2}, prefixes={"train": ""}
        )
    messages = [str(w.message) for w in caught]
    assert messages == [
        "rate_limits names label 'trian' that no task in the graph has, so it is ignored; did "
        "you mean 'train'? (labels: 'train', 'test_limits.Labeled', '*')"
    ]
