"""Per-label concurrency limits: how many running tasks may carry each label.

Three small operations over a count of running tasks per label: `fits`, `acquire`, `release`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from taskproc.errors import ConfigError


def check_limits(limits: Mapping[str, int] | None) -> dict[str, int]:
    """Validated `rate_limits`: str labels, ints >= 1."""
    out: dict[str, int] = {}
    if limits is not None and not isinstance(limits, Mapping):
        raise ConfigError(
            f"rate_limits must be a mapping label -> int, e.g. {{'gpu': 2}}; got {limits!r}"
        )
    for label, n in (limits or {}).items():
        if not isinstance(label, str):
            raise ConfigError(f"rate_limits keys must be labels (str), got {label!r}")
        if type(n) is not int or n < 1:
            raise ConfigError(f"rate_limits[{label!r}] must be an int >= 1, got {n!r}")
        out[label] = n
    return out


class LabelCounter:
    """Running tasks per limited label."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.limits = dict(limits)
        self.running: dict[str, int] = dict.fromkeys(self.limits, 0)

    def limited(self, labels: Iterable[str]) -> tuple[str, ...]:
        """The labels among `labels` that have a limit."""
        return tuple(label for label in labels if label in self.limits)

    def fits(self, limited: Iterable[str]) -> bool:
        """Whether one more task with these (limited) labels may start."""
        running, limits = self.running, self.limits
        return all(running[label] < limits[label] for label in limited)

    def acquire(self, limited: Iterable[str]) -> None:
        for label in limited:
            self.running[label] += 1

    def release(self, limited: Iterable[str]) -> None:
        for label in limited:
            self.running[label] -= 1
