"""`DefaultCliArguments`: command-line defaults a pipeline file sets for itself.

Kept apart from `cli` so that importing taskproc (in every worker) does not load argparse.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DefaultCliArguments:
    """Defaults for the command line, set by the pipeline file itself::

        DefaultCliArguments(num_workers=4, prefixes={'gpu': 'jbsub -wait -queue x86_1h'}).populate()

    Options given on the command line override these.
    """

    cache_dir: str | None = None
    loglevel: str | None = None
    num_workers: int | None = None
    kwargs: Mapping[str, Any] | None = None
    prefixes: Mapping[str, str] | None = None
    rate_limits: Mapping[str, int] | None = None
    batch_sizes: Mapping[str, int] | None = None
    batch_seconds: Mapping[str, float] | None = None
    disable_detect_source_change: bool | None = None
    exec_type: str | None = None
    error_handling: str | None = None
    dont_force_entrypoint: bool | None = None
    dont_show_progress: bool | None = None
    dry_run: bool | None = None
    scheduler: str | None = None

    def populate(self) -> None:
        """Make these the defaults of the command line run in this context."""
        _DEFAULTS.set(self)


_DEFAULTS: contextvars.ContextVar[DefaultCliArguments | None] = contextvars.ContextVar(
    "taskproc_cli_defaults", default=None
)
