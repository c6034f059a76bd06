"""The task graph with states, for ``taskproc graph``: nodes, edges, dot and mermaid.

Each task has the state `status` gives it (`_scan.scan`, `_state.state_of`): *done*, *stale*
(with the reason it would rerun: the run's plan adds what only the code shows), *failed* (the
first line of the error), *running* (a live runner holds it), *incomplete* (started, never
finished); or *missing* (never run). The tasks of a class with more than ``--collapse-above``
instances become one node with a count and the mix of their states, so a sweep of 10,000
tasks is one box; ``--expand`` draws every task.

The html form is in `_html.py`.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass

from taskproc.model import TaskBase, readable_name
from taskproc.run import TaskState
from taskproc.views._scan import TaskEntry, scan
from taskproc.views._why import plan_of

# A node of tasks in several states shows the first present.
STATE_ORDER = (
    TaskState.RUNNING,
    TaskState.FAILED,
    TaskState.INCOMPLETE,
    TaskState.STALE,
    TaskState.MISSING,
    TaskState.DONE,
)
COLORS = {  # state: (fill, stroke)
    TaskState.DONE: ("#d9f2d9", "#3b8a3b"),
    TaskState.STALE: ("#fff1c7", "#b7860b"),
    TaskState.MISSING: ("#f2f2f2", "#8a8a8a"),
    TaskState.INCOMPLETE: ("#ffe3c2", "#c25e00"),
    TaskState.FAILED: ("#ffd6d6", "#c62828"),
    TaskState.RUNNING: ("#d6e6ff", "#1f5fbf"),
}
LABEL_MAX = 56
TITLE_MAX = 300  # a tooltip or a table row: wider than a box
# The full name on hover and in the html table; bounded only so that a root over 10,000
# upstream tasks does not put megabytes into one attribute.
FULL_MAX = 4000


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """The state of one task, and why (a stale reason or the first line of an error)."""

    state: TaskState
    why: str = ""


@dataclass(frozen=True, slots=True)
class Node:
    """One box: a single task, or every task of a class when collapsed (`count` > 1)."""

    ident: str
    task_name: str
    title: str
    count: int
    states: tuple[tuple[TaskState, int], ...]  # (state, number of tasks), in STATE_ORDER
    details: tuple[str, ...]  # reasons and errors, most frequent first
    label: str = ""  # the title as a box shows it (shortened in the middle); "": the title
    full: str = ""  # the title with every argument in full ("": the title is whole)

    @property
    def full_title(self) -> str:
        return self.full or self.title

    @property
    def state(self) -> TaskState:
        return self.states[0][0]

    @property
    def heading(self) -> str:
        """The title as its box shows it."""
        return self.label or self.title

    def state_text(self) -> str:
        if self.count == 1:
            return self.details[0] if self.details else self.state.value
        return ", ".join(f"{n} {s}" for s, n in self.states)


@dataclass(frozen=True, slots=True)
class Edge:
    """Upstream node -> downstream node; `count` task-level edges."""

    src: int
    dst: int
    count: int


@dataclass(frozen=True, slots=True)
class GraphView:
    """The nodes (in topological order of their first task) and edges to draw."""

    root: str
    cache: str
    tasks: int
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def totals(self) -> dict[TaskState, int]:
        out: dict[TaskState, int] = {}
        for node in self.nodes:
            for state, n in node.states:
                out[state] = out.get(state, 0) + n
        return {s: out[s] for s in STATE_ORDER if s in out}


# -- states -----------------------------------------------------------------------------


def _failure(entry: TaskEntry) -> str:
    """A failure's first line and where it was raised (the file's name and the line)."""
    first = entry.error or "failed"
    origin = entry.raised_at
    if origin is None:
        return first
    return f"{first} (at {os.path.basename(origin.file)}:{origin.line} in {origin.function})"


def task_states(
    root: TaskBase, *, detect_source_change: bool
) -> tuple[list[TaskBase], dict[TaskBase, TaskStatus]]:
    """Every task `root` needs, upstream first, and the state of each: the state `status`
    gives it from the store (`scan`), made stale where the run's plan (which sees the code)
    says it would rerun; `missing` if the store has nothing of it. Reads, never writes."""
    planned = plan_of(root, detect_source_change=detect_source_change, force_entrypoint=False)
    order, stale = planned.order, planned.plan.stale
    names = sorted({t.task_name for t in order})
    stored = {e.key: e for e in scan(root._tp.store, names, describe_done=False)}
    states: dict[TaskBase, TaskStatus] = {}
    for task in order:
        entry = stored.get(f"{task.task_name}/{task._tp.task_id}")
        reason = stale.get(task)
        planned_why = reason.value if reason is not None else ""
        if entry is None:
            states[task] = TaskStatus(TaskState.MISSING, planned_why)
        elif entry.state is TaskState.RUNNING and entry.holder is not None:
            holder = entry.holder
            states[task] = TaskStatus(entry.state, f"running on {holder.host} pid {holder.pid}")
        elif entry.state is TaskState.FAILED:
            states[task] = TaskStatus(entry.state, _failure(entry))
        elif entry.state is TaskState.DONE and reason is not None:
            states[task] = TaskStatus(TaskState.STALE, planned_why)
        elif entry.state in (TaskState.STALE, TaskState.INCOMPLETE):
            states[task] = TaskStatus(entry.state, planned_why or entry.error)
        else:
            states[task] = TaskStatus(entry.state)
    return order, states


# -- grouping ---------------------------------------------------------------------------


def build_view(
    root: TaskBase,
    order: Sequence[TaskBase],
    states: dict[TaskBase, TaskStatus],
    *,
    collapse_above: int,
) -> GraphView:
    """Nodes and edges, collapsing classes with more than `collapse_above` tasks."""
    counts: dict[str, int] = {}
    for task in order:
        counts[task.task_name] = counts.get(task.task_name, 0) + 1
    members: dict[str, list[TaskBase]] = {}
    node_of: dict[TaskBase, str] = {}
    for task in order:
        name = task.task_name
        key = f"{name} *" if counts[name] > collapse_above else f"{name}/{task._tp.task_id}"
        node_of[task] = key
        members.setdefault(key, []).append(task)
    index = {key: i for i, key in enumerate(members)}
    nodes = tuple(_node(f"n{index[key]}", tasks, states) for key, tasks in members.items())
    edge_counts: dict[tuple[int, int], int] = {}
    for task in order:
        dst = index[node_of[task]]
        for up in task._tp.upstream:
            pair = (index[node_of[up]], dst)
            edge_counts[pair] = edge_counts.get(pair, 0) + 1
    edges = tuple(Edge(s, d, n) for (s, d), n in edge_counts.items())
    return GraphView(repr(root), root._tp.store.root, len(order), nodes, edges)


def _node(ident: str, tasks: list[TaskBase], states: dict[TaskBase, TaskStatus]) -> Node:
    first = tasks[0]
    by_state: dict[TaskState, int] = {}
    why: dict[str, int] = {}
    for task in tasks:
        st = states[task]
        by_state[st.state] = by_state.get(st.state, 0) + 1
        if st.why:
            text = f"{st.state}: {st.why}" if len(tasks) > 1 else st.why
            why[text] = why.get(text, 0) + 1
    ordered = tuple((s, by_state[s]) for s in STATE_ORDER if s in by_state)
    details = tuple(
        f"{n} {text}" if len(tasks) > 1 else text
        for text, n in sorted(why.items(), key=lambda kv: -kv[1])
    )
    if len(tasks) > 1:
        title = label = full = f"{first.task_name} ×{len(tasks)}"
    else:
        title, label = readable_name(first, TITLE_MAX), readable_name(first, LABEL_MAX)
        full = readable_name(first, FULL_MAX)
    return Node(ident, first.task_name, title, len(tasks), ordered, details, label, full)


def short(text: str, limit: int = LABEL_MAX) -> str:
    """A state or an error, cut at its end to fit a box (task names are cut in the middle,
    `Node.label`)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- dot and mermaid --------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(view: GraphView) -> str:
    """Graphviz source: ``dot -Tsvg``."""
    lines = [
        "digraph taskproc {",
        f"  label={_dot_quote(f'{view.root} - {totals_text(view)}')};",
        "  labelloc=t; rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [color="#777777"];',
    ]
    for node in view.nodes:
        fill, stroke = COLORS[node.state]
        label = f"{node.heading}\n{short(node.state_text())}"
        tooltip = "\n".join((node.full_title, *node.details))
        lines.append(
            f"  {node.ident} [label={_dot_quote(label)}, fillcolor={_dot_quote(fill)}, "
            f"color={_dot_quote(stroke)}, tooltip={_dot_quote(tooltip)}];"
        )
    for e in view.edges:
        extra = f" [label={_dot_quote(str(e.count))}]" if e.count > 1 else ""
        lines.append(f"  n{e.src} -> n{e.dst}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return (
        html.escape(text, quote=True)
        .replace("&quot;", "#quot;")
        .replace("&#x27;", "'")
        .replace("&lt;", "#lt;")
        .replace("&gt;", "#gt;")
        .replace("&amp;", "#amp;")
    )


def to_mermaid(view: GraphView) -> str:
    """Mermaid flowchart source (GitHub and GitLab render it in Markdown)."""
    lines = ["flowchart LR"]
    for node in view.nodes:
        title = _mermaid_text(node.heading)
        sub = _mermaid_text(short(node.state_text()))
        label = f"{title}<br/>{sub}"
        lines.append(f'  {node.ident}["{label}"]:::{node.state.value}')
    for e in view.edges:
        arrow = f'-- "{e.count}" -->' if e.count > 1 else "-->"
        lines.append(f"  n{e.src} {arrow} n{e.dst}")
    for state in STATE_ORDER:
        fill, stroke = COLORS[state]
        lines.append(f"  classDef {state} fill:{fill},stroke:{stroke},color:#222")
    return "\n".join(lines) + "\n"


def totals_text(view: GraphView) -> str:
    return f"{view.tasks} tasks: " + ", ".join(f"{n} {s}" for s, n in view.totals().items())
