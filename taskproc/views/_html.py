"""The html graph view: one self-contained file.

An SVG laid out here (layers by longest path, upstream on the left; order within a layer by a
few barycenter sweeps), a table of the nodes, and a little inline script for highlighting. No
network, no external files.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

from taskproc.views._graph import (
    COLORS,
    STATE_ORDER,
    GraphView,
    Node,
    short,
    to_dot,
    to_mermaid,
    totals_text,
)

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
    chars = max(len(node.heading), len(short(node.state_text())) * 0.9)
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
    tooltip = "\n".join((node.full_title, node.state_text(), *node.details[:12]))
    # The box shows the names cut short; its title (on hover) and the table show them whole.
    parts = [
        f'<g class="node {node.state}" id="{node.ident}" data-task-name="{e(node.task_name)}" '
        f'data-count="{node.count}" tabindex="0" title="{e(node.full_title)}">',
        f"<title>{e(tooltip)}</title>",
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
        f'rx="7" fill="{fill}" stroke="{stroke}" stroke-width="1.4"/>',
        f'<text x="{box.x + 10:.1f}" y="{box.y + 19:.1f}" class="title">{e(node.heading)}</text>',
        f'<text x="{box.x + 10:.1f}" y="{box.y + 35:.1f}" class="sub">'
        f"{e(short(node.state_text()))}</text>",
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
#graph{max-width:100%;height:auto}
#canvas.actual #graph{max-width:none}
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
table{max-width:calc(100% - 40px)}
td,th{border-bottom:1px solid #eee;padding:4px 10px;text-align:left;vertical-align:top}
th,td.n{white-space:nowrap}
td.name,td.why{overflow-wrap:anywhere}
td.n{text-align:right}
tr.failed td:first-child{border-left:4px solid #c62828}
tr.stale td:first-child{border-left:4px solid #b7860b}
tr.running td:first-child{border-left:4px solid #1f5fbf}
tr.cached td:first-child{border-left:4px solid #3b8a3b}
"""

# Clicking a node highlights its neighbours; the filter box dims tasks that do not match; the
# graph fits the window's width (no node cut off) unless "actual size" is ticked (then it
# scrolls).
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
  var actual=document.getElementById('actual');
  actual.addEventListener('change',function(){
    document.getElementById('canvas').classList.toggle('actual',actual.checked);});
  var shown=nodes.filter(function(g){var b=g.getBBox();return b.width>0&&b.height>0;});
  document.body.setAttribute('data-rendered',String(shown.length));
})();
"""


def _table_row(node: Node) -> str:
    e = html.escape
    states = ", ".join(f"{n} {s}" for s, n in node.states) if node.count > 1 else node.state.value
    why = "<br>".join(e(d) for d in node.details[:12])
    name = e(node.full_title)
    return (
        f'<tr class="{node.state}"><td class="name" title="{name}">{name}</td>'
        f'<td class="n">{node.count}</td><td>{e(states)}</td><td class="why">{why}</td></tr>'
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
<p class="meta">{e(totals_text(view))} &middot; {len(view.nodes)} nodes &middot; cache
{e(view.cache)} &middot; {stamp}</p>
<div class="legend">{legend}<input id="filter" type="search"
 placeholder="dim tasks that do not match..."> <small>click a node to see its neighbours;
hover for its full name</small> <label><input id="actual" type="checkbox"> actual size</label>
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


FORMATS = ("dot", "mermaid", "html")
RENDERERS = {"dot": to_dot, "mermaid": to_mermaid, "html": to_html}
