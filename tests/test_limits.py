"""Label limits as small pure operations (table tests)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from taskproc import Graph, InlineExecutor, Task
from taskproc.errors import ConfigError
from taskproc.run._limits import (
    LabelCounter,
    batch_size,
    fill_batch,
    graph_labels,
    unknown_labels_message,
)
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


def test_a_run_warns_about_batch_options_too(tmp_path: Path) -> None:
    with Graph(tmp_path / "cache"):
        task = Labeled(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task.run_graph(executor=InlineExecutor(), batch_sizes={"trian": 4}, batch_seconds={"x": 1})
    messages = [str(w.message).split(";")[0].split(" (")[0] for w in caught]
    assert messages == [
        "batch_sizes names label 'trian' that no task in the graph has, so it is ignored",
        "batch_seconds names label 'x' that no task in the graph has, so it is ignored",
    ]


def test_room() -> None:
    counter = LabelCounter({"gpu": 2, "cpu": 5})
    assert counter.room(()) is None
    counter.acquire(("gpu", "cpu"))
    assert counter.room(("gpu",)) == 1
    assert counter.room(("gpu", "cpu")) == 1
    assert counter.room(("cpu",)) == 4


@pytest.mark.parametrize(
    ("most", "ready", "room", "size"),
    [
        (25, 200, None, 25),  # no limit: full batches
        (25, 10, None, 10),  # never waits to fill
        (25, 200, 8, 25),
        (25, 30, 8, 4),  # spread over the 8 places, not 25 in one beside 7 idle
        (25, 8, 8, 1),
        (25, 9, 8, 2),
        (25, 30, 1, 25),  # one place: as full as allowed
        (1, 30, 4, 1),
    ],
)
def test_batch_size(most: int, ready: int, room: int | None, size: int) -> None:
    assert batch_size(most, ready, room) == size


@pytest.mark.parametrize(
    ("costs", "size", "budget", "n"),
    [
        ([1.0] * 10, 5, None, 5),
        ([1.0] * 10, 5, 3.0, 3),  # 3 fit, a 4th would pass the budget
        ([1.0] * 10, 5, 2.5, 2),
        ([9.0, 1.0], 5, 3.0, 1),  # the first goes alone, whatever it costs
        ([1.0, 9.0, 1.0], 5, 3.0, 1),  # stops at the first that does not fit (order kept)
        ([0.0] * 10, 4, 3.0, 4),  # unknown times (0): the size decides
        ([], 4, 3.0, 0),
    ],
)
def test_fill_batch(costs: list[float], size: int, budget: float | None, n: int) -> None:
    assert fill_batch(iter(costs), size, budget) == n
