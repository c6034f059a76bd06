"""Label limits as small pure operations (table tests)."""

from __future__ import annotations

import pytest

from taskproc.errors import ConfigError
from taskproc.run._limits import LabelCounter
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
