"""Names of task classes and argument types, stable across `python x.py` and the CLI."""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Task names become folder names: keep them to identifier characters and dots.
TASK_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def main_module_name() -> str:
    """The name `__main__` stands for: the module run with -m, or the main file's stem.

    Code with no file (``python -c``, a notebook) or a file that is not a path but a name
    such as ``<stdin>`` (``python - < pipeline.py``) stays ``__main__``.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return str(spec.name)
    file = getattr(main, "__file__", None)
    if file and not is_pseudo_file(str(file)):
        return Path(file).stem
    return "__main__"


def is_pseudo_file(name: str) -> bool:
    """Whether a module's or a code object's file name stands for no file (``<stdin>``,
    ``<string>``, ``<input>``): Python's convention is angle brackets."""
    return name.startswith("<") and name.endswith(">")


def module_name(module: str) -> str:
    """`module`, with `__main__` replaced by the name of the script that is running."""
    return main_module_name() if module == "__main__" else module


def qualified_name(cls: type) -> str:
    """`module.QualName` of a class, with `__main__` resolved (see `main_module_name`)."""
    # Classes defined inside functions (tests, notebooks) have '<locals>' in their qualname.
    qualname = cls.__qualname__.replace("<locals>.", "")
    return f"{module_name(cls.__module__)}.{qualname}"


def is_valid_task_name(name: str) -> bool:
    """Whether `name` can be a folder of the cache (no separators, no `..`, no leading dot)."""
    return TASK_NAME_RE.fullmatch(name) is not None and "<" not in name
