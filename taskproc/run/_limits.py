"""Per-label concurrency limits: how many running tasks may carry each label.

Three small operations over a count of running tasks per label: `fits`, `acquire`, `release`
(a batch of tasks in one prefix command counts once: it is what runs); how many tasks the
next batch takes (`batch_size`, `fill_batch`); and the check that the labels a run names in
its options are labels some task has.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any


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

    def room(self, limited: Iterable[str]) -> int | None:
        """How many more tasks (or batches) with these labels may start now; None: no limit."""
        running, limits = self.running, self.limits
        return min((limits[label] - running[label] for label in limited), default=None)


def batch_size(most: int, ready: int, room: int | None) -> int:
    """How many of `ready` tasks the next batch takes: at most `most`, spread evenly over the
    `room` batches the labels' limits let start now (None: no limit), so that no place stays
    idle while one batch holds tasks that could run beside it."""
    if room is None or room <= 1:
        return min(most, ready)
    return min(most, -(-ready // room))


def fill_batch(costs: Iterable[float], size: int, budget: float | None) -> int:
    """How many tasks, of those ready in order with these estimated `costs` (seconds), one
    batch of at most `size` takes: it stops before the task whose cost would take the total
    past `budget` (None: no budget). The first task always goes, whatever its cost: alone it
    cannot be split."""
    total = 0.0
    n = 0
    for cost in costs:
        if n == size or (n and budget is not None and total + cost > budget):
            break
        total += cost
        n += 1
    return n


SHOWN_LABELS = 12  # labels named in a warning, at most


def graph_labels(classes: Iterable[type]) -> frozenset[str]:
    """Every label the given task classes carry (their names and ``'*'`` included)."""
    return frozenset(label for cls in classes for label in getattr(cls, "_tp_labels", ()))


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``; did you mean 'train'?`` for the known word closest to a mistyped `word` ("" if none
    is close): the hint every "no such name" message ends with."""
    # 0.7, not difflib's 0.6: names that share a module prefix ('pipe.') are not close for it
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.7)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_labels_message(option: str, given: Iterable[str], known: Collection[str]) -> str | None:
    """The one line that says which labels of `option` (``rate_limits``, ``prefixes``) no
    task has, with a close match and the labels that exist; None if every label is known.

    A typo (``'trian'`` for ``'train'``) would otherwise be ignored without a word.
    """
    unknown = [label for label in given if label not in known]
    if not unknown:
        return None
    # Labels people chose first, then task names; '*' (every task) last.
    ordered = sorted(known, key=lambda lb: (lb == "*", "." in lb, lb))
    shown = ", ".join(repr(lb) for lb in ordered[:SHOWN_LABELS])
    more = f" and {len(ordered) - SHOWN_LABELS} more" if len(ordered) > SHOWN_LABELS else ""
    hint = did_you_mean(unknown[0], ordered)
    names = ", ".join(repr(lb) for lb in unknown)
    which = "label" if len(unknown) == 1 else "labels"
    return (
        f"{option} names {which} {names} that no task in the graph has, so "
        f"{'it is' if len(unknown) == 1 else 'they are'} ignored{hint} (labels: {shown}{more})"
    )


def warn_unknown_labels(
    order: Sequence[Any], labelled: Sequence[tuple[str, Collection[str]]]
) -> None:
    """One warning per option keyed by label (`labelled`: (option, its labels), such as
    ``rate_limits``) whose labels no task of the graph (`order`, its tasks) has: a typo, most
    likely. Called where the graph is known: a run, a dry run."""
    if not any(given for _, given in labelled):
        return
    known = graph_labels({type(t) for t in order})
    for option, given in labelled:
        message = unknown_labels_message(option, given, known)
        if message is not None:
            warnings.warn(message, stacklevel=3)
