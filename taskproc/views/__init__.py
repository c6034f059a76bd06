"""Views of a cache and of a graph: `taskproc status`, `ls`, `clear`, `--dry-run` and `graph`.

Plain modules with no argparse: they read (the store, the graph) and return records and text;
the command line (`taskproc.cli`) parses arguments and prints.
"""

from taskproc.views._graph import TaskStatus, build_view, task_states
from taskproc.views._html import FORMATS, RENDERERS
from taskproc.views._live import LiveRun, mean_times, read_history, read_runs, with_eta
from taskproc.views._report import (
    by_name,
    dry_run_report,
    format_clear_list,
    format_cleared,
    format_names,
    format_status,
    format_tasks,
    human_size,
    human_time,
    printable,
    status_json,
)
from taskproc.views._scan import (
    Selection,
    TaskEntry,
    first_error_line,
    open_cache,
    scan,
    select,
)
from taskproc.views._serve import DashboardServer, is_loopback, serve
from taskproc.views._state import TaskFacts, facts_of, state_of
from taskproc.views._why import (
    Explainer,
    Planned,
    Why,
    WhyKind,
    WhyReport,
    code_changes,
    format_why,
    plan_of,
    select_tasks,
    why_json,
    why_report,
)

__all__ = [
    "DashboardServer",
    "Explainer",
    "Planned",
    "TaskFacts",
    "code_changes",
    "facts_of",
    "plan_of",
    "select_tasks",
    "state_of",
    "FORMATS",
    "RENDERERS",
    "LiveRun",
    "Selection",
    "TaskEntry",
    "TaskStatus",
    "Why",
    "WhyKind",
    "WhyReport",
    "build_view",
    "by_name",
    "dry_run_report",
    "first_error_line",
    "format_clear_list",
    "format_cleared",
    "format_names",
    "format_status",
    "format_tasks",
    "human_size",
    "human_time",
    "is_loopback",
    "mean_times",
    "printable",
    "open_cache",
    "read_history",
    "read_runs",
    "scan",
    "select",
    "serve",
    "status_json",
    "task_states",
    "format_why",
    "why_json",
    "why_report",
    "with_eta",
]
