"""Per-label concurrency limits: how many running tasks may carry each label.

Three small operations over a count of running tasks per label: `fits`, `acquire`, `release`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


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
