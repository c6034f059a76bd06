"""The class options of a task (`task_label`, `task_version`, ...): the reserved names, their
checks when a class is defined (or an option reassigned). Their record, `TaskConfig`, is in
`_introspection.py`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from taskproc.errors import TaskDefinitionError
from taskproc.model._naming import is_valid_task_name, qualified_name

if TYPE_CHECKING:
    from taskproc.model._task import TaskBase

# Names users must not redefine on a Task subclass or assign in __init__.
BUILTINS = frozenset(
    {
        "task_directory",
        "run_graph",
        "cli",
        "clear_task",
        "clear_all_tasks",
        "get_task_config",
        "task_worker",
        "task_config",
        "get_result",
        "to_json",
        "get_workers",
        "task_id",
    }
)
CLASS_OPTIONS = frozenset(
    {
        "task_name",
        "task_label",
        "task_compress_level",
        "task_version",
        "task_retries",
        "task_retry_delay",
        "task_timeout",
        "task_requires",
        "task_resources",
    }
)
RESERVED = BUILTINS | CLASS_OPTIONS
FACADE_MODULE = "taskproc._task"  # defines the public Task, which adds built-ins of its own


# Placeholders every prefix template may use; `task_resources` cannot redefine them.
PREFIX_PLACEHOLDERS = ("task_name", "task_id", "task_dir", "log_dir")
_RESOURCE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# A distribution's name as packaging spells it (PEP 508), e.g. ``numpy``, ``scikit-learn``.
_DISTRIBUTION = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


def _requires_of(cls: type[TaskBase]) -> tuple[str, ...]:
    raw = cls.task_requires
    items = (raw,) if isinstance(raw, str) else raw
    if not isinstance(items, Sequence) or not all(
        isinstance(x, str) and _DISTRIBUTION.fullmatch(x) for x in items
    ):
        raise TaskDefinitionError(
            f"{cls.task_name}: task_requires must be a distribution name or a sequence of them "
            f"(as pip spells them, e.g. ('numpy', 'scikit-learn')), got {raw!r}"
        )
    return tuple(sorted(set(items)))


def _resources_of(cls: type[TaskBase]) -> tuple[tuple[str, str], ...]:
    """`task_resources` as (key, text) pairs, sorted: what fills ``{key}`` in a prefix."""
    raw = cls.task_resources
    example = "e.g. {'mem': '4G', 'cpus': 2}"
    if not isinstance(raw, Mapping):
        raise TaskDefinitionError(
            f"{cls.task_name}: task_resources must be a mapping of names to values ({example}), "
            f"got {raw!r}"
        )
    out = []
    for key, value in raw.items():
        if not isinstance(key, str) or not _RESOURCE_KEY.fullmatch(key):
            raise TaskDefinitionError(
                f"{cls.task_name}: task_resources keys must be identifiers (they fill {{key}} in "
                f"prefix templates, {example}), got {key!r}"
            )
        if key in PREFIX_PLACEHOLDERS:
            raise TaskDefinitionError(
                f"{cls.task_name}: task_resources cannot define {key!r}, which taskproc fills "
                "itself in prefix templates; rename it"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TaskDefinitionError(
                f"{cls.task_name}: task_resources[{key!r}] must be a str or a number, got {value!r}"
            )
        out.append((key, str(value)))
    return tuple(sorted(out))


def _labels_of(cls: type[TaskBase]) -> tuple[str, ...]:
    raw = cls.__dict__.get("task_label", getattr(cls, "task_label", ()))
    if isinstance(raw, str):
        extra: tuple[str, ...] = (raw,)
    elif isinstance(raw, Sequence) and all(isinstance(x, str) for x in raw):
        extra = tuple(raw)
    else:
        raise TaskDefinitionError(
            f"{cls.task_name}: task_label must be a str or a sequence of str, "
            f"got {type(raw).__name__} ({raw!r})"
        )
    return (cls.task_name, *dict.fromkeys(x for x in extra if x != cls.task_name), "*")


def validate_class(cls: type[TaskBase]) -> None:
    """Check the class options and derive the labels (at definition and on reassignment)."""
    name = cls.task_name
    if not isinstance(name, str) or not is_valid_task_name(name):
        raise TaskDefinitionError(
            f"{qualified_name(cls)}: task_name must be dotted identifiers "
            f"(letters, digits, '_' and '.'), got {name!r}"
        )
    _check_options(cls)
    type.__setattr__(cls, "_tp_requires", _requires_of(cls))
    type.__setattr__(cls, "_tp_resources", _resources_of(cls))
    type.__setattr__(cls, "_tp_labels", _labels_of(cls))


def _check_options(cls: type[TaskBase]) -> None:
    name = cls.task_name
    level = cls.task_compress_level
    if type(level) is not int or not 0 <= level <= 9:
        raise TaskDefinitionError(
            f"{name}: task_compress_level must be an int from 0 to 9, got {level!r}"
        )
    if type(cls.task_retries) is not int or cls.task_retries < 0:
        raise TaskDefinitionError(
            f"{name}: task_retries must be an int >= 0, got {cls.task_retries!r}"
        )
    delay = cls.task_retry_delay
    if not isinstance(delay, (int, float)) or not math.isfinite(delay) or delay < 0:
        raise TaskDefinitionError(
            f"{name}: task_retry_delay must be a finite number of seconds >= 0, got {delay!r}"
        )
    timeout = cls.task_timeout
    if timeout is not None and (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise TaskDefinitionError(
            f"{name}: task_timeout must be None or a finite number of seconds > 0, got {timeout!r}"
        )
    if cls.task_version is not None and type(cls.task_version) not in (str, int):
        raise TaskDefinitionError(
            f"{name}: task_version must be a str or an int, got {cls.task_version!r}"
        )
