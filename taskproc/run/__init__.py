"""Running a graph: the plan, the run state and its driver, jobs, workers, prefixes, executors.

Only the names below are for the layers above; everything else is private to the run layer.
Importing this package is cheap (every worker process imports taskproc): `run` brings in the
driver on first use, and nothing here imports cloudpickle or tqdm.
"""

from typing import TYPE_CHECKING, Any

from taskproc.run._executors import (
    InlineExecutor,
    default_workers,
    make_executor,
    process_pool,
)
from taskproc.run._hooks import RunHooks, Stats, TaskState
from taskproc.run._limits import did_you_mean
from taskproc.run._options import (
    ERROR_POLICIES,
    EXECUTOR_KINDS,
    LOG_LEVELS,
    ErrorHandling,
    RunOptions,
    executor_kind,
)

if TYPE_CHECKING:
    from taskproc.run._driver import run
    from taskproc.run._progress import ProgressBars
    from taskproc.run._resources import sigterm_as_exit


def __getattr__(name: str) -> Any:
    if name == "run":
        from taskproc.run._driver import run  # the driver, on first use

        return run
    if name == "ProgressBars":
        from taskproc.run._progress import ProgressBars

        return ProgressBars
    if name == "sigterm_as_exit":
        from taskproc.run._resources import sigterm_as_exit

        return sigterm_as_exit
    raise AttributeError(f"module 'taskproc.run' has no attribute {name!r}")


__all__ = [
    "ERROR_POLICIES",
    "EXECUTOR_KINDS",
    "LOG_LEVELS",
    "ErrorHandling",
    "InlineExecutor",
    "ProgressBars",
    "RunHooks",
    "RunOptions",
    "Stats",
    "TaskState",
    "default_workers",
    "did_you_mean",
    "executor_kind",
    "make_executor",
    "process_pool",
    "run",
    "sigterm_as_exit",
]
