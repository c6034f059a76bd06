"""The records that flow through the suite: a planned case and its measurement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    OK = "OK"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    SKIPPED = "SKIPPED"


# Workload -> the unit its rate is reported in.
TASK_RATE = ("fanin", "choose", "chain", "cpu")
PER_TASK = ("cached",)
BYTE_RATE = ("big_save", "big_load")


@dataclass(frozen=True, slots=True)
class Case:
    """One planned measurement: a workload at one size on one system.

    ``reuse`` names cases whose work folder this case runs in (the first that succeeded):
    a cached rerun runs on the cache a fresh run left behind. Cases of one ``batch`` are
    measured in rounds, one run of each per round, so that a ratio between them does not
    depend on how the machine's load drifted while they ran.
    """

    workload: str
    variant: str
    size: int
    system: str
    params: Mapping[str, Any]
    reuse: tuple[str, ...] = ()
    repeats: int = 1  # best of this many runs, for short cases that noise can swamp
    batch: str = ""

    @property
    def id(self) -> str:
        return f"{self.workload}/{self.variant}/{self.size}/{self.system}"

    @property
    def series(self) -> tuple[str, str, str]:
        """Cases of one series differ only in size; a failure skips the larger sizes."""
        return (self.workload, self.variant, self.system)

    @property
    def slug(self) -> str:
        return self.id.replace("/", "_")


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one case produced. ``time_s`` is the workload's own timing of its measured phase;
    ``peak_rss`` is the peak of the largest process in its tree (``wait4``)."""

    case: Case
    status: Status
    time_s: float | None = None
    n_tasks: int | None = None
    nbytes: int | None = None
    peak_rss: int | None = None
    wall_s: float | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK and self.time_s is not None and self.time_s > 0

    @property
    def tasks_per_s(self) -> float | None:
        if not self.ok or not self.n_tasks or self.time_s is None:
            return None
        return self.n_tasks / self.time_s

    @property
    def us_per_task(self) -> float | None:
        if not self.ok or not self.n_tasks or self.time_s is None:
            return None
        return self.time_s / self.n_tasks * 1e6

    @property
    def mb_per_s(self) -> float | None:
        if not self.ok or not self.nbytes or self.time_s is None:
            return None
        return self.nbytes / 1e6 / self.time_s

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "workload": self.case.workload,
            "variant": self.case.variant,
            "size": self.case.size,
            "system": self.case.system,
            "params": dict(self.case.params),
            "status": self.status.value,
            "time_s": self.time_s,
            "n_tasks": self.n_tasks,
            "nbytes": self.nbytes,
            "peak_rss": self.peak_rss,
            "wall_s": self.wall_s,
            "tasks_per_s": self.tasks_per_s,
            "us_per_task": self.us_per_task,
            "mb_per_s": self.mb_per_s,
            "fields": dict(self.fields),
            "error": self.error,
        }
