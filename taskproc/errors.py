"""Exceptions raised by taskproc.

Every exception also subclasses the builtin a caller would naturally catch, carries its
details as attributes, and pickles across processes::

    TaskprocError
     ├── UsageError (ValueError)            bad command-line input (exit status 2)
     ├── GraphError (RuntimeError)          no Graph open, Graphs nested, built during a run
     ├── TaskDefinitionError (TypeError)    a Task subclass is defined wrongly
     ├── ArgumentError (TypeError)          a task argument cannot be part of its identity
     ├── CycleError (ValueError)            upstream tasks form a cycle
     ├── ConfigError (ValueError)           bad run_graph / CLI option
     ├── CacheError (OSError)               the cache folder cannot be used
     ├── ResultMissingError (LookupError)   get_result() on a task that has no result yet
     ├── CorruptResultError (ValueError)    a result file exists but cannot be loaded
     └── FailedTaskError (RuntimeError)     one task failed; raised inside an ExceptionGroup

    CodeChangedWarning (UserWarning)        cached results computed by other code are used
                                            as they are (detect_source_change is off)
"""

from __future__ import annotations

import os
from typing import Any

# Frames of files under this folder are taskproc's own, not the user's (tracebacks skip them).
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class TaskprocError(Exception):
    """Base class of all taskproc errors."""


class UsageError(TaskprocError, ValueError):
    """Bad command-line input: reported in one line, exit status 2."""


class GraphError(TaskprocError, RuntimeError):
    """Tasks were built outside a `Graph`, or `Graph` blocks were nested."""


class TaskDefinitionError(TaskprocError, TypeError):
    """A `Task` subclass sets an option wrongly or overrides a built-in."""


class ArgumentError(TaskprocError, TypeError):
    """A task's arguments do not fit its signature, or one cannot be part of its identity.

    `task_name` names the task and `problem` is the rest of the message.
    """

    def __init__(self, message: str, task_name: str = "", problem: str = "") -> None:
        super().__init__(message)
        self.task_name = task_name
        self.problem = problem

    @classmethod
    def of(cls, task_name: str, problem: str) -> ArgumentError:
        """``<task_name>: <problem>``."""
        return cls(f"{task_name}: {problem}", task_name, problem)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.task_name, self.problem))


class CycleError(TaskprocError, ValueError):
    """The upstream tasks of a graph form a cycle. `cycle` lists the tasks on it."""

    def __init__(self, message: str, cycle: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.cycle = cycle

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.cycle))


class ConfigError(TaskprocError, ValueError):
    """An option of `run_graph` or of the command line is invalid.

    `option` names it as `run_graph` spells it and `rule` is the rest of the message, so that
    the command line can name its own spelling of the option (``--rate-limits``).
    """

    def __init__(self, message: str, option: str = "", rule: str = "") -> None:
        super().__init__(message)
        self.option = option
        self.rule = rule

    @classmethod
    def bad(cls, option: str, rule: str) -> ConfigError:
        """``<option><rule>``, e.g. ``bad('rate_limits', "['gpu'] must be an int >= 1")``."""
        return cls(f"{option}{rule}", option, rule)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.option, self.rule))


class CacheError(TaskprocError, OSError):
    """The cache folder cannot be read or written."""


class ResultMissingError(TaskprocError, LookupError):
    """`get_result()` was called on a task whose result is not in the cache."""


class CorruptResultError(TaskprocError, ValueError):
    """A result file exists but is truncated, garbled or cannot be unpickled. `path` is where
    (for a store: the location of the task whose result it is)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.path))


class FailedTaskError(TaskprocError, RuntimeError):
    """One task failed. Raised, with the others that failed, inside an `ExceptionGroup`.

    Attributes: `task` (e.g. ``mymodule.Choose(n=3, k=2)``), `task_name`, `task_id`,
    `task_dir` (its cache folder), `error_type`, `error_message`, `traceback` (the text of the
    child's traceback) and `output_tail` (the last lines it printed).
    """

    def __init__(
        self,
        task: str,
        *,
        task_name: str = "",
        task_id: str = "",
        task_dir: str = "",
        error_type: str = "",
        error_message: str = "",
        traceback: str = "",
        output_tail: str = "",
    ) -> None:
        self.task = task
        self.task_name = task_name
        self.task_id = task_id
        self.task_dir = task_dir
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        self.output_tail = output_tail
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.task} failed: {self.error_type}: {self.error_message}".rstrip(": ")
        parts = [head]
        if self.traceback:
            parts.append(self.traceback.rstrip())
        if self.output_tail:
            parts.append("--- last lines of output ---\n" + self.output_tail.rstrip())
        if self.task_dir:
            parts.append(f"task id {self.task_id}; see {self.task_dir}")
        return "\n".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "task_name": self.task_name,
            "task_id": self.task_id,
            "task_dir": self.task_dir,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "traceback": self.traceback,
            "output_tail": self.output_tail,
        }
        return (_rebuild_failed, (self.task, kwargs))


class Terminated(SystemExit):
    """SIGTERM reached the runner (exit status 143). Not a task's own ``sys.exit``: a task that
    calls ``sys.exit`` has failed, but a terminated runner stops."""

    def __init__(self) -> None:
        super().__init__(143)


def _rebuild_failed(task: str, kwargs: dict[str, str]) -> FailedTaskError:
    return FailedTaskError(task, **kwargs)


class CodeChangedWarning(UserWarning):
    """A run used cached results whose code identity differs from the code now running,
    because ``detect_source_change`` is off. Silence it with
    ``warnings.simplefilter('ignore', taskproc.CodeChangedWarning)``."""
