"""The command line: ``taskproc FILE.py -o CACHE``, its subcommands, and ``Main.cli()``.

Importing this package is cheap: `DefaultCliArguments` is all that `import taskproc` needs;
the parser and the commands load when the command line runs.
"""

from typing import TYPE_CHECKING, Any

from taskproc.cli._defaults import DefaultCliArguments

if TYPE_CHECKING:
    from taskproc.cli._main import main, run_task_cli


def __getattr__(name: str) -> Any:
    if name in ("main", "run_task_cli"):
        from taskproc.cli import _main  # argparse and the commands, on first use

        return getattr(_main, name)
    raise AttributeError(f"module 'taskproc.cli' has no attribute {name!r}")


__all__ = ["DefaultCliArguments", "main", "run_task_cli"]
