"""``taskproc graph FILE.py -o CACHE --format dot|mermaid|html``: the task graph with states.

Each task is *cached* (its result is fresh), *stale* (with the reason it would rerun),
*failed* (its last attempt raised; the first line of the error) or *running* (a live runner
holds it). The tasks of a class with more than ``--collapse-above`` instances become one node
with a count and the mix of their states, so a sweep of 10,000 tasks is one box; ``--expand``
draws every task.

The html form is one self-contained file: an SVG laid out here (layers by longest path,
upstream on the left; order within a layer by a few barycenter sweeps), a table of the nodes,
and a little inline script for highlighting. No network, no external files.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskproc.model._fingerprint import fingerprinter
from taskproc.views._status import first_error_line, runner_alive

if TYPE_CHECKING:
    from taskproc.model._task import Task

FORMATS = ("dot", "mermaid", "html")
SUFFIXES = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid", ".html": "html"}
STATE_ORDER = ("running", "failed", "stale", "cached")  # a mixed node shows the first present
COLORS = {  # state: (fill, stroke)
    "cached": ("#d9f2d9", "#3b8a3b"),
    "stale": ("#fff1c7", "#b7860b"),
    "failed": ("#ffd6d6", "#c62828"),
    "running": ("#d6e6ff", "#1f5fbf"),
}
LABEL_MAX = 56


@dataclass(frozen=True, slots=True)
class TaskState:
    """The state of one task, and why (a stale reason or the first line of an error)."""

    state: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class Node:
    """One box: a single task, or every task of a class when collapsed (`count` > 1)."""

    ident: str
    task_name: str
    title: str
    count: int
    states: tuple[tuple[str, int], ...]  # (state, number of tasks), in STATE_ORDER
    details: tuple[str, ...]  # reasons and errors, most frequent first

    @property
    def state(self) -> str:
        return self.states[0][0]

    def state_text(self) -> str:
        if self.count == 1:
            return self.details[0] if self.details else self.state
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

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes:
            for state, n in node.states:
                out[state] = out.get(state, 0) + n
        return {s: out[s] for s in STATE_ORDER if s in out}


# -- states -----------------------------------------------------------------------------


def task_states(
    root: Task, *, detect_source_change: bool
) -> tuple[list[Task], dict[Task, TaskState]]:
    """Every task `root` needs, upstream first, and the state of each. Reads, never writes."""
    from taskproc.run._plan import collect, decide
    from taskproc.store._local import Store, hostname

    order = collect(root)
    with warnings.catch_warnings(record=True):  # a corrupt result shows as stale: unreadable
        warnings.simplefilter("always")
        stale = decide(
            order,
            root,
            force_root=False,
            code=fingerprinter(),
            check_code=detect_source_change,
        )
    store = Store(root._tp.store_root)
    here = hostname()
    states: dict[Task, TaskState] = {}
    for task in order:
        folder = store.task_dir(task.task_name, task._tp.task_id)
        claim = store.read_claim(folder)
        reason = stale.get(task)
        if claim is not None and runner_alive(store, claim, here):
            states[task] = TaskState("running", f"running on {claim.host} pid {claim.pid}")
        elif reason is not None and os.path.exists(os.path.join(folder, "error.txt")):
            states[task] = TaskState("failed", _error(os.path.join(folder, "error.txt")))
        elif reason is not None:
            states[task] = TaskState("stale", reason.value)
        else:
            states[task] = TaskState("cached")
    return order, states


def _error(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return first_error_line(f.read(1 << 20)) or "failed"
    except OSError:
        return "failed"


# -- grouping ---------------------------------------------------------------------------


def build_view(
    root: Task, order: Sequence[Task], states: dict[Task, TaskState], *, collapse_above: int
) -> GraphView:
    """Nodes and edges, collapsing classes with more than `collapse_above` tasks."""
    counts: dict[str, int] = {}
    for task in order:
        counts[task.task_name] = counts.get(task.task_name, 0) + 1
    members: dict[str, list[Task]] = {}
    node_of: dict[Task, str] = {}
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
    return GraphView(repr(root), root._tp.store_root, len(order), nodes, edges)


def _node(ident: str, tasks: list[Task], states: dict[Task, TaskState]) -> Node:
    first = tasks[0]
    by_state: dict[str, int] = {}
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
    title = f"{first.task_name} ×{len(tasks)}" if len(tasks) > 1 else repr(first)
    return Node(ident, first.task_name, title, len(tasks), ordered, details)


def _short(text: str, limit: int = LABEL_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- dot and mermaid --------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(view: GraphView) -> str:
    """Graphviz source: ``dot -Tsvg``."""
    lines = [
        "digraph taskproc {",
        f"  label={_dot_quote(f'{view.root} - {_totals_text(view)}')};",
        "  labelloc=t; rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [color="#777777"];',
    ]
    for node in view.nodes:
        fill, stroke = COLORS[node.state]
        label = f"{_short(node.title)}\n{_short(node.state_text())}"
        tooltip = "\n".join((node.title, *node.details))
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
        title, sub = _mermaid_text(_short(node.title)), _mermaid_text(_short(node.state_text()))
        label = f"{title}<br/>{sub}"
        lines.append(f'  {node.ident}["{label}"]:::{node.state}')
    for e in view.edges:
        arrow = f'-- "{e.count}" -->' if e.count > 1 else "-->"
        lines.append(f"  n{e.src} {arrow} n{e.dst}")
    for state in STATE_ORDER:
        fill, stroke = COLORS[state]
        lines.append(f"  classDef {state} fill:{fill},stroke:{stroke},color:#222")
    return "\n".join(lines) + "\n"


def _totals_text(view: GraphView) -> str:
    return f"{view.tasks} tasks: " + ", ".join(f"{n} {s}" for s, n in view.totals().items())


# -- layout -------------------------------------------------------------------------------

NODE_H = 46
DUMMY_H = 14  # the slot of an edge passing through a layer
H_GAP = 80
V_GAP = 18
CHAR_W = 7.2
MARGIN = 24
MAX_DUMMIES = 50_000  # beyond this, long edges are drawn straight instead of routed


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each node goes, and the route of each edge through the layers between its ends."""

    boxes: tuple[Box, ...]
    routes: tuple[tuple[Box, ...], ...]  # per edge: the boxes of the layers it passes through
    width: float
    height: float


def _layers(view: GraphView) -> list[int]:
    """Longest-path layer of each node over the forward edges (node order is topological
    for single tasks; an edge into an earlier collapsed node is drawn as a back edge)."""
    layer = [0] * len(view.nodes)
    incoming: dict[int, list[int]] = {}
    for e in view.edges:
        if e.src < e.dst:
            incoming.setdefault(e.dst, []).append(e.src)
    for v in range(len(view.nodes)):
        ups = incoming.get(v)
        if ups:
            layer[v] = max(layer[u] for u in ups) + 1
    return layer


def _chains(view: GraphView, layer: list[int]) -> tuple[list[int], list[list[int]]]:
    """Layers of the real nodes then of the dummy nodes that long edges pass through, and
    each edge's chain of node ids from source to destination."""
    layers = list(layer)
    chains: list[list[int]] = []
    budget = MAX_DUMMIES
    for e in view.edges:
        span = layer[e.dst] - layer[e.src]
        chain = [e.src]
        if 1 < span <= budget:
            budget -= span - 1
            for lv in range(layer[e.src] + 1, layer[e.dst]):
                chain.append(len(layers))
                layers.append(lv)
        chain.append(e.dst)
        chains.append(chain)
    return layers, chains


def _order_rows(layers: list[int], chains: list[list[int]], sweeps: int = 4) -> list[list[int]]:
    """Nodes of each layer, ordered to reduce crossings (barycenter sweeps)."""
    rows: list[list[int]] = [[] for _ in range(max(layers, default=0) + 1)]
    for v, lv in enumerate(layers):
        rows[lv].append(v)
    ups: dict[int, list[int]] = {}
    downs: dict[int, list[int]] = {}
    for chain in chains:
        for a, b in zip(chain, chain[1:], strict=False):
            if layers[b] == layers[a] + 1:
                ups.setdefault(b, []).append(a)
                downs.setdefault(a, []).append(b)
    pos = {v: i for row in rows for i, v in enumerate(row)}
    for sweep in range(sweeps):
        forward = sweep % 2 == 0
        neighbours = ups if forward else downs
        for row in rows if forward else reversed(rows):
            bary = {}
            for v in row:
                ns = neighbours.get(v)
                bary[v] = sum(pos[n] for n in ns) / len(ns) if ns else float(pos[v])
            row.sort(key=bary.__getitem__)
            pos.update({v: i for i, v in enumerate(row)})
    return rows


def layout(view: GraphView) -> Layout:
    """Boxes for the nodes (upstream on the left) and routes for the edges."""
    n = len(view.nodes)
    layers, chains = _chains(view, _layers(view))
    rows = _order_rows(layers, chains)
    slot = [NODE_H + V_GAP if v < n else DUMMY_H for v in range(len(layers))]
    heights = [sum(slot[v] for v in row) for row in rows]
    tallest = max(heights, default=0.0)
    boxes: list[Box] = [Box(0, 0, 0, 0)] * len(layers)
    x = float(MARGIN)
    for row, row_h in zip(rows, heights, strict=True):
        width = max((_node_width(view.nodes[v]) for v in row if v < n), default=24.0)
        y = MARGIN + (tallest - row_h) / 2
        for v in row:
            h = NODE_H if v < n else 0.0
            boxes[v] = Box(x, y + (slot[v] - V_GAP - h) / 2 if v >= n else y, width, h)
            y += slot[v]
        x += width + H_GAP
    routes = tuple(tuple(boxes[v] for v in chain) for chain in chains)
    return Layout(tuple(boxes[:n]), routes, x - H_GAP + MARGIN, tallest + 2 * MARGIN)


def _node_width(node: Node) -> float:
    chars = max(len(_short(node.title)), len(_short(node.state_text())) * 0.9)
    return max(110.0, min(440.0, chars * CHAR_W + 24))


def _edge_path(route: tuple[Box, ...]) -> tuple[str, float, float]:
    """SVG path data through `route`, and a point for the edge's label."""
    a, b = route[0], route[-1]
    if len(route) == 2 and a is b:  # a collapsed class that depends on itself
        x0, x1, y = a.x + a.w * 0.62, a.x + a.w * 0.38, a.y
        d = f"M{x0:.1f},{y:.1f} C{x0:.1f},{y - 34:.1f} {x1:.1f},{y - 34:.1f} {x1:.1f},{y:.1f}"
        return d, (x0 + x1) / 2, y - 28
    x, y = a.x + a.w, a.y + a.h / 2
    parts = [f"M{x:.1f},{y:.1f}"]
    label = (x + 14, y - 5)
    for box in route[1:]:
        x1, y1 = box.x, box.y + box.h / 2
        dx = max(30.0, abs(x1 - x) / 2)
        parts.append(f"C{x + dx:.1f},{y:.1f} {x1 - dx:.1f},{y1:.1f} {x1:.1f},{y1:.1f}")
        x, y = box.x + box.w, y1
        if box is not b:  # pass straight through the layer of a dummy node
            parts.append(f"L{x:.1f},{y:.1f}")
    return " ".join(parts), label[0], label[1]


# -- html ---------------------------------------------------------------------------------


def _svg_node(node: Node, box: Box) -> str:
    e = html.escape
    fill, stroke = COLORS[node.state]
    tooltip = "\n".join((node.title, node.state_text(), *node.details[:12]))
    parts = [
        f'<g class="node {node.state}" id="{node.ident}" data-task-name="{e(node.task_name)}" '
        f'data-count="{node.count}" tabindex="0">',
        f"<title>{e(tooltip)}</title>",
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
        f'rx="7" fill="{fill}" stroke="{stroke}" stroke-width="1.4"/>',
        f'<text x="{box.x + 10:.1f}" y="{box.y + 19:.1f}" class="title">'
        f"{e(_short(node.title))}</text>",
        f'<text x="{box.x + 10:.1f}" y="{box.y + 35:.1f}" class="sub">'
        f"{e(_short(node.state_text()))}</text>",
    ]
    if node.count > 1:  # the mix of states as a thin stacked bar along the bottom
        x = box.x + 7
        for state, n in node.states:
            w = (box.w - 14) * n / node.count
            parts.append(
                f'<rect x="{x:.1f}" y="{box.y + box.h - 6:.1f}" width="{w:.1f}" height="3" '
                f'fill="{COLORS[state][1]}"/>'
            )
            x += w
    parts.append("</g>")
    return "".join(parts)


def to_svg(view: GraphView) -> str:
    """The graph as an SVG element (no external references)."""
    plan = layout(view)
    boxes, width, height = plan.boxes, plan.width, plan.height
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="graph" width="{width:.0f}" '
        f'height="{height + 20:.0f}" viewBox="0 -20 {width:.0f} {height + 20:.0f}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#777"/></marker></defs>',
    ]
    for e, route in zip(view.edges, plan.routes, strict=True):
        d, lx, ly = _edge_path(route)
        out.append(
            f'<path class="edge" data-src="n{e.src}" data-dst="n{e.dst}" d="{d}" '
            'marker-end="url(#arrow)"/>'
        )
        if e.count > 1:
            out.append(f'<text class="count" x="{lx:.1f}" y="{ly:.1f}">{e.count}</text>')
    out += [_svg_node(node, boxes[i]) for i, node in enumerate(view.nodes)]
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body{font:14px system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222}
header{padding:12px 20px;border-bottom:1px solid #ddd;background:#fafafa}
h1{font-size:17px;margin:0 0 4px}
.meta{color:#555;margin:0 0 8px}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;border:1px solid;border-radius:3px;
  vertical-align:-1px;margin-right:5px}
#filter{margin-left:8px;padding:3px 6px;width:240px}
#canvas{overflow:auto;padding:8px}
svg text{font:12px system-ui,Helvetica,Arial,sans-serif;fill:#222}
svg text.title{font-weight:600}
svg text.sub{fill:#444;font-size:11px}
svg text.count{fill:#666;font-size:10px;text-anchor:middle}
.edge{fill:none;stroke:#999;stroke-width:1.2}
.node{cursor:pointer}
.dim{opacity:.18}
.hot rect:first-of-type{stroke-width:3}
.edge.hot{stroke:#333;stroke-width:2}
table{border-collapse:collapse;margin:8px 20px 30px}
td,th{border-bottom:1px solid #eee;padding:4px 10px;text-align:left;vertical-align:top}
td.n{text-align:right}
tr.failed td:first-child{border-left:4px solid #c62828}
tr.stale td:first-child{border-left:4px solid #b7860b}
tr.running td:first-child{border-left:4px solid #1f5fbf}
tr.cached td:first-child{border-left:4px solid #3b8a3b}
"""

# Clicking a node highlights its neighbours; the filter box dims tasks that do not match.
# `data-rendered` counts the nodes the browser laid out (used by the tests).
_JS = """
(function(){
  var svg=document.getElementById('graph');
  var nodes=[].slice.call(svg.querySelectorAll('g.node'));
  var edges=[].slice.call(svg.querySelectorAll('path.edge'));
  function clear(){nodes.concat(edges).forEach(function(el){el.classList.remove('dim','hot');});}
  function focus(id){
    var near={};near[id]=true;
    edges.forEach(function(p){
      var s=p.getAttribute('data-src'),d=p.getAttribute('data-dst');
      var on=(s===id||d===id);p.classList.toggle('hot',on);p.classList.toggle('dim',!on);
      if(on){near[s]=true;near[d]=true;}
    });
    nodes.forEach(function(g){g.classList.toggle('dim',!near[g.id]);
      g.classList.toggle('hot',g.id===id);});
  }
  nodes.forEach(function(g){g.addEventListener('click',function(ev){
    ev.stopPropagation();focus(g.id);});});
  svg.addEventListener('click',clear);
  var box=document.getElementById('filter');
  box.addEventListener('input',function(){
    var q=box.value.toLowerCase();clear();if(!q)return;
    nodes.forEach(function(g){var t=g.querySelector('title').textContent.toLowerCase();
      g.classList.toggle('dim',t.indexOf(q)<0);});
    edges.forEach(function(p){p.classList.add('dim');});
  });
  var shown=nodes.filter(function(g){var b=g.getBBox();return b.width>0&&b.height>0;});
  document.body.setAttribute('data-rendered',String(shown.length));
})();
"""


def _table_row(node: Node) -> str:
    e = html.escape
    states = ", ".join(f"{n} {s}" for s, n in node.states) if node.count > 1 else node.state
    why = "<br>".join(e(d) for d in node.details[:12])
    return (
        f'<tr class="{node.state}"><td>{e(node.title)}</td><td class="n">{node.count}</td>'
        f"<td>{e(states)}</td><td>{why}</td></tr>"
    )


def to_html(view: GraphView) -> str:
    """A single self-contained html page: the SVG, a legend, and a table of the nodes."""
    e = html.escape
    legend = "".join(
        f'<span><i style="background:{COLORS[s][0]};border-color:{COLORS[s][1]}"></i>{s}</span>'
        for s in reversed(STATE_ORDER)
    )
    rows = "".join(_table_row(n) for n in view.nodes)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>taskproc graph: {e(view.root)}</title>
<style>{_CSS}</style>
</head>
<body data-nodes="{len(view.nodes)}">
<header>
<h1>{e(view.root)}</h1>
<p class="meta">{e(_totals_text(view))} &middot; {len(view.nodes)} nodes &middot; cache
{e(view.cache)} &middot; {stamp}</p>
<div class="legend">{legend}<input id="filter" type="search"
 placeholder="dim tasks that do not match..."> <small>click a node to see its neighbours</small>
</div>
</header>
<div id="canvas">
{to_svg(view)}
</div>
<table id="nodes"><thead><tr><th>node</th><th>tasks</th><th>state</th><th>why</th></tr></thead>
<tbody>{rows}</tbody></table>
<script>{_JS}</script>
</body>
</html>
"""


RENDERERS = {"dot": to_dot, "mermaid": to_mermaid, "html": to_html}


# -- the subcommand -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from taskproc.cli._main import OneLineParser, json_option

    p = OneLineParser(
        prog="taskproc graph",
        description="Draw the task graph of FILE's Main task with each task's state: cached, "
        "stale (and why), failed, running. Reads the cache; runs and writes nothing.",
    )
    p.add_argument("file", metavar="FILE.py", help="pipeline file defining a Task named Main")
    p.add_argument(
        "-o", "--cache-dir", metavar="CACHE", help="cache folder (required unless the file sets it)"
    )
    p.add_argument(
        "--kwargs", metavar="JSON", type=json_option(dict), help="JSON object of Main's parameters"
    )
    p.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        help="output format (default: from the --output suffix, else dot)",
    )
    p.add_argument("--output", metavar="PATH", help="write to PATH instead of standard output")
    p.add_argument("--expand", action="store_true", help="one node per task, never collapse")
    p.add_argument(
        "--collapse-above",
        type=int,
        default=5,
        metavar="N",
        help="draw a class with more than N tasks as one node (default 5)",
    )
    p.add_argument(
        "-D",
        "--disable-detect-source-change",
        action="store_true",
        default=None,
        help="do not count source changes as stale",
    )
    return p


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = os.path.splitext(args.output or "")[1].lower()
    return SUFFIXES.get(suffix, "dot")


def main(argv: list[str]) -> int:
    """``taskproc graph FILE.py -o CACHE [--format dot|mermaid|html] [--expand]``."""
    from taskproc.cli._main import build_main, load_main
    from taskproc.errors import UsageError

    args = _parser().parse_args(argv[1:])
    if args.collapse_above < 1:
        raise UsageError(f"--collapse-above must be >= 1, got {args.collapse_above}")
    cls, opts = load_main(args.file, args)
    root = build_main(cls, opts)
    order, states = task_states(root, detect_source_change=not opts.disable_detect_source_change)
    limit = len(order) if args.expand else args.collapse_above
    view = build_view(root, order, states, collapse_above=limit)
    text = RENDERERS[_format(args)](view)
    if len(view.nodes) > 3000:
        print(
            f"taskproc graph: {len(view.nodes)} nodes is a lot to draw; "
            "omit --expand or lower --collapse-above",
            file=sys.stderr,
        )
    if args.output:
        _write(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _write(path: str, text: str) -> None:
    from taskproc.errors import UsageError

    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"--output {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}", file=sys.stderr)
