"""The options of a run: each vocabulary defined once, each option checked once.

`Task.run_graph` and the command line both build a `RunOptions`; its checks raise
`ConfigError.bad(option, rule)`, which the command line reports under its own option names.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from taskproc.errors import ConfigError

if TYPE_CHECKING:
    from taskproc.run._hooks import RunHooks

ErrorHandling = Literal["immediate", "eager", "lazy"]
ERROR_POLICIES: tuple[str, ...] = get_args(ErrorHandling)
EXECUTOR_KINDS = ("process", "thread", "local", "dask")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _one_of(option: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError.bad(option, f" must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def executor_kind(value: object) -> str:
    """A checked executor kind (the command line's ``-t``)."""
    return _one_of("exec_type", value, EXECUTOR_KINDS)


def log_level(value: int | str | None) -> int | None:
    """A checked logging level: an int, or a name such as ``'INFO'``."""
    if value is None or type(value) is int:
        return value
    name = str(value).upper()
    if name not in LOG_LEVELS:
        raise ConfigError.bad(
            "log_level", f" must be one of {', '.join(LOG_LEVELS)} (or a number), got {value!r}"
        )
    return int(logging.getLevelName(name))


def rate_limits(limits: Mapping[str, int] | None) -> dict[str, int]:
    """Checked `rate_limits`: str labels, ints >= 1."""
    if limits is not None and not isinstance(limits, Mapping):
        raise ConfigError.bad(
            "rate_limits", f" must be a mapping label -> int, e.g. {{'gpu': 2}}; got {limits!r}"
        )
    out: dict[str, int] = {}
    for label, n in (limits or {}).items():
        if not isinstance(label, str):
            raise ConfigError.bad("rate_limits", f" keys must be labels (str), got {label!r}")
        if type(n) is not int or n < 1:
            raise ConfigError.bad("rate_limits", f"[{label!r}] must be an int >= 1, got {n!r}")
        out[label] = n
    return out


def batch_sizes(sizes: Mapping[str, int] | None) -> dict[str, int]:
    """Checked `batch_sizes`: str labels, ints >= 1 (the most tasks one prefix command runs)."""
    if sizes is not None and not isinstance(sizes, Mapping):
        raise ConfigError.bad(
            "batch_sizes", f" must be a mapping label -> int, e.g. {{'cpu': 25}}; got {sizes!r}"
        )
    out: dict[str, int] = {}
    for label, n in (sizes or {}).items():
        if not isinstance(label, str):
            raise ConfigError.bad("batch_sizes", f" keys must be labels (str), got {label!r}")
        if type(n) is not int or n < 1:
            raise ConfigError.bad("batch_sizes", f"[{label!r}] must be an int >= 1, got {n!r}")
        out[label] = n
    return out


def batch_seconds(budgets: Mapping[str, float] | None) -> dict[str, float]:
    """Checked `batch_seconds`: str labels, finite numbers of seconds > 0."""
    if budgets is not None and not isinstance(budgets, Mapping):
        raise ConfigError.bad(
            "batch_seconds",
            f" must be a mapping label -> seconds, e.g. {{'cpu': 3000}}; got {budgets!r}",
        )
    out: dict[str, float] = {}
    for label, n in (budgets or {}).items():
        if not isinstance(label, str):
            raise ConfigError.bad("batch_seconds", f" keys must be labels (str), got {label!r}")
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 < n < math.inf:
            raise ConfigError.bad(
                "batch_seconds", f"[{label!r}] must be a number of seconds > 0, got {n!r}"
            )
        out[label] = float(n)
    return out


def prefixes(prefixes: Mapping[str, str] | None) -> dict[str, str]:
    """Checked `prefixes`: str labels, commands that split into words. An empty command
    (``''``, as in taskproc 0.25) means no prefix for that label; it is kept as ``''``."""
    if prefixes is not None and not isinstance(prefixes, Mapping):
        raise ConfigError.bad(
            "prefixes",
            f" must be a mapping label -> command, e.g. {{'gpu': 'srun -p gpu'}}; got {prefixes!r}",
        )
    out: dict[str, str] = {}
    for label, template in (prefixes or {}).items():
        if not isinstance(label, str) or not isinstance(template, str):
            raise ConfigError.bad(
                "prefixes", f" must map labels to command strings, got {label!r}: {template!r}"
            )
        try:
            words = shlex.split(template)
        except ValueError as exc:
            raise ConfigError.bad(
                "prefixes", f"[{label!r}] is not a valid command ({exc}): {template!r}"
            ) from None
        out[label] = template if words else ""
    return out


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError.bad(name, f" must be a number of seconds, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The options of one run, checked when made (see `Task.run_graph` for their meaning).

    ``TASKPROC_HEARTBEAT_INTERVAL``, ``TASKPROC_STALE_AFTER`` and ``TASKPROC_POLL_INTERVAL``
    (seconds) tune how runners sharing a cache watch each other.
    """

    executor: Executor | None = None
    rate_limits: Mapping[str, int] | None = None
    prefixes: Mapping[str, str] | None = None
    batch_sizes: Mapping[str, int] | None = None
    batch_seconds: Mapping[str, float] | None = None
    error_handling: str = "eager"
    show_progress: bool = False
    detect_source_change: bool = False
    force_entrypoint: bool = False
    max_workers: int | None = None
    log_level: int | str | None = None
    hooks: tuple[RunHooks, ...] = ()
    heartbeat_interval: float = field(init=False)
    stale_after: float = field(init=False)
    poll_interval: float = field(init=False)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        _one_of("error_handling", self.error_handling, ERROR_POLICIES)
        if self.executor is not None and not isinstance(self.executor, Executor):
            raise ConfigError.bad(
                "executor",
                " must be a concurrent.futures.Executor (e.g. ThreadPoolExecutor(4)), "
                f"got {type(self.executor).__name__}",
            )
        n = self.max_workers
        if n is not None and (type(n) is not int or n < 1):
            raise ConfigError.bad("max_workers", f" must be an int >= 1, got {n!r}")
        put("rate_limits", rate_limits(self.rate_limits))
        put("prefixes", prefixes(self.prefixes))
        put("batch_sizes", batch_sizes(self.batch_sizes))
        put("batch_seconds", batch_seconds(self.batch_seconds))
        put("log_level", log_level(self.log_level))
        put("hooks", tuple(self.hooks))
        put("heartbeat_interval", _env_seconds("TASKPROC_HEARTBEAT_INTERVAL", 5.0))
        put("stale_after", _env_seconds("TASKPROC_STALE_AFTER", 60.0))
        put("poll_interval", _env_seconds("TASKPROC_POLL_INTERVAL", 0.2))

    @property
    def limits(self) -> Mapping[str, int]:
        return self.rate_limits or {}

    @property
    def prefix_commands(self) -> Mapping[str, str]:
        return self.prefixes or {}

    @property
    def batches(self) -> Mapping[str, int]:
        return self.batch_sizes or {}

    @property
    def budgets(self) -> Mapping[str, float]:
        return self.batch_seconds or {}

    @property
    def labelled(self) -> tuple[tuple[str, Mapping[str, object]], ...]:
        """The options keyed by label, by name: those whose labels must be labels of tasks."""
        return (
            ("rate_limits", self.limits),
            ("prefixes", self.prefix_commands),
            ("batch_sizes", self.batches),
            ("batch_seconds", self.budgets),
        )

    @property
    def worker_log_level(self) -> int | None:
        """The logging level for workers (a number: checked and converted when made)."""
        level = self.log_level
        return level if isinstance(level, int) else None
