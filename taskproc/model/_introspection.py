"""The records a task gives of itself: `TaskConfig` (``task_config``) and `TaskLocation`
(``task_worker``, named `TaskWorker` in taskproc 0.25).

Imported on first use, not with the task model: a worker process imports the model and asks
for neither before its task's first line, and `dataclasses` would cost its start about 15 ms
(see docs/design.md, "A fast worker start").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TaskConfig:
    """The class options of a task, as validated when the class was defined."""

    task_name: str
    labels: tuple[str, ...]
    compress_level: int
    version: str | int | None
    retries: int
    retry_delay: float
    timeout: float | None
    requires: tuple[str, ...] = ()  # distributions whose version is part of the code identity
    resources: tuple[tuple[str, str], ...] = ()  # placeholders of prefix templates, as text


@dataclass(frozen=True, slots=True)
class TaskLocation:
    """Where one task instance lives in the cache, and what it is (`task_worker`, a name kept
    from taskproc 0.25)."""

    task: str
    task_name: str
    task_id: str
    task_dir: Path
    result_path: Path
    labels: tuple[str, ...]
    upstream: tuple[str, ...]


# The name taskproc 0.25 gave the record (it is no worker).
TaskWorker = TaskLocation
