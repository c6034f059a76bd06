"""Per-label concurrency limits: how many running tasks may carry each label.

Three small operations over a count of running tasks per label: `fits`, `acquire`, `release`;
and the check that the labels a run limits or prefixes are labels some task has.
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
    order: Sequence[Any], limits: Mapping[str, int], prefixes: Mapping[str, str]
) -> None:
    """One warning per option whose labels no task of the graph (`order`, its tasks) has: a
    typo, most likely. Called where the graph is known: a run, a dry run."""
    if not limits and not prefixes:
        return
    known = graph_labels({type(t) for t in order})
    for option, given in (("rate_limits", limits), ("prefixes", prefixes)):
        message = unknown_labels_message(option, given, known)
        if message is not None:
            warnings.warn(message, stacklevel=3)
