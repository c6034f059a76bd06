"""`taskproc graph`: dot, mermaid and html views with states, run for real under tmp_path."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest
from headless import CHROMIUM, NEEDS_CHROMIUM, flags

from taskproc import FutureList, Graph, InlineExecutor, Task
from taskproc.run import TaskState
from taskproc.views._graph import Edge, GraphView, Node
from taskproc.views._html import layout

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

TASKPROC = str(Path(sys.executable).with_name("taskproc"))

PIPE = """
from taskproc import Task

class Load(Task):
    def __init__(self, i: int):
        self.i = i

    def run_task(self) -> int:
        return self.i

class Score(Task):
    def __init__(self, i: int):
        self.data = Load(i)

    def run_task(self) -> int:
        if self.data.get_result() == 7:
            raise ValueError("seven is bad")
        return 2 * self.data.get_result()

class Main(Task):
    def __init__(self, n: int = 8):
        self.scores = [Score(i) for i in range(n)]

    def run_task(self) -> int:
        return sum(s.get_result() for s in self.scores)
"""


def taskproc(*args: object, cwd: Path) -> Any:
    return subprocess.run(
        [TASKPROC, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def ok(proc: Any) -> Any:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline whose Score(7) failed (lazy, so the other tasks ran): done, failed, stale."""
    folder = tmp_path_factory.mktemp("graph")
    (folder / "pipe.py").write_text(textwrap.dedent(PIPE))
    proc = taskproc("pipe.py", "-o", "cache", "-e", "lazy", cwd=folder)
    assert proc.returncode == 1, proc.stderr
    return folder


def test_dot_collapses_classes_with_many_tasks(ran: Path) -> None:
    before = snapshot(ran / "cache")
    dot = ok(taskproc("graph", "pipe.py", "-o", "cache", cwd=ran)).stdout
    assert dot.startswith("digraph taskproc {")
    labels = re.findall(r'^  (n\d+) \[label="([^"]*)"', dot, re.M)
    assert [label for _, label in labels] == [
        r"pipe.Load ×8\n8 done",
        r"pipe.Score ×8\n1 failed, 7 done",
        r"pipe.Main(n=8)\nan upstream task reruns",
    ]
    assert '  n0 -> n1 [label="8"];' in dot and '  n1 -> n2 [label="8"];' in dot
    assert "ValueError: seven is bad" in dot  # in the failed node's tooltip
    assert snapshot(ran / "cache") == before  # the graph view only reads


def test_expand_draws_every_task(ran: Path) -> None:
    dot = ok(taskproc("graph", "pipe.py", "-o", "cache", "--expand", cwd=ran)).stdout
    assert len(re.findall(r"^  n\d+ \[", dot, re.M)) == 17
    line = textwrap.dedent(PIPE).splitlines().index('            raise ValueError("seven is bad")')
    failed = rf'"pipe.Score(i=7)\nValueError: seven is bad (at pipe.py:{line + 1} in run_task)"'
    assert failed in dot  # the first line of the error, and where it was raised
    assert r'"pipe.Score(i=6)\ndone"' in dot
    assert len(re.findall(r"^  n\d+ -> n\d+;", dot, re.M)) == 16
    small = ok(taskproc("graph", "pipe.py", "-o", "cache", "--collapse-above", "8", cwd=ran))
    assert small.stdout.count("[label=") == 17  # 8 tasks of a class are not more than 8


def test_mermaid(ran: Path) -> None:
    text = ok(taskproc("graph", "pipe.py", "-o", "cache", "-f", "mermaid", cwd=ran)).stdout
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  n1["pipe.Score ×8<br/>1 failed, 7 done"]:::failed' in lines
    assert '  n0 -- "8" --> n1' in lines
    assert "  classDef failed fill:#ffd6d6,stroke:#c62828,color:#222" in lines


def test_states_follow_source_changes_and_kwargs(ran: Path, tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        textwrap.dedent(PIPE).replace("return self.i", "return self.i + 0")
    )
    shutil.copytree(ran / "cache", tmp_path / "cache", symlinks=True)
    args = ["graph", "pipe.py", "-o", "cache", "-f", "dot", "--kwargs", '{"n": 9}']
    dot = ok(taskproc(*args, cwd=tmp_path)).stdout
    assert r"pipe.Load ×9\n8 stale, 1 missing" in dot  # the new one never ran
    assert "8 stale: its source code changed" in dot and "1 missing: no cached result" in dot
    dot = ok(taskproc(*args, "-D", cwd=tmp_path)).stdout
    assert r"pipe.Load ×9\n1 missing, 8 done" in dot


def test_graph_of_a_cache_that_does_not_exist_yet(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(textwrap.dedent(PIPE))
    out = ok(taskproc("graph", "pipe.py", "-o", "cahce", "-w", "g.mmd", cwd=tmp_path))
    assert out.stdout == ""
    assert out.stderr.splitlines() == [
        "taskproc: cache folder 'cahce' does not exist; nothing is cached - every task would run",
        "wrote g.mmd",
    ]
    text = (tmp_path / "g.mmd").read_text()
    assert text.startswith("flowchart LR")  # the format follows the file name
    assert "8 missing" in text and ":::missing" in text  # never run: not "stale"
    assert not (tmp_path / "cahce").exists()


def test_output_is_the_cache_folder_as_on_a_run(ran: Path, tmp_path: Path) -> None:
    by_o = ok(taskproc("graph", "pipe.py", "-o", "cache", cwd=ran))
    by_output = ok(taskproc("graph", "pipe.py", "--output", "cache", cwd=ran))
    assert by_output.stdout == by_o.stdout and by_output.stderr == ""
    old = taskproc("graph", "pipe.py", "-o", "cache", "--output", "g.html", cwd=ran)
    assert old.returncode == 2 and old.stdout == ""
    assert "write the graph to a file with -w/--write g.html" in old.stderr
    assert len(old.stderr.splitlines()) == 1 and not (ran / "g.html").exists()
    ok(taskproc("graph", "pipe.py", "-o", "cache", "--write", tmp_path / "g.html", cwd=ran))
    assert (tmp_path / "g.html").read_text().startswith("<!DOCTYPE html>")


def test_html_is_self_contained(ran: Path, tmp_path: Path) -> None:
    out = tmp_path / "graph.html"
    ok(taskproc("graph", "pipe.py", "-o", "cache", "--format", "html", "-w", out, cwd=ran))
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]  # xmlns
    assert not re.search(r"<(script|link|img|iframe)[^>]*(src|href)=", page)
    assert page.count('<g class="node ') == 3


def dump_dom(page: Path, profile: Path) -> str:
    assert CHROMIUM is not None
    args = [
        CHROMIUM,
        *flags(profile),
        "--dump-dom",
        page.as_uri(),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason=NEEDS_CHROMIUM)
@pytest.mark.parametrize("expand", [False, True])
def test_html_renders_its_nodes_in_chromium(ran: Path, tmp_path: Path, expand: bool) -> None:
    page = tmp_path / "graph.html"
    extra = ["--expand"] if expand else []
    ok(taskproc("graph", "pipe.py", "-o", "cache", "-w", page, *extra, cwd=ran))
    nodes = 17 if expand else 3
    dom = dump_dom(page, tmp_path / "profile")
    # The page's script counts the nodes the browser laid out with a non-empty box.
    assert re.search(rf'<body data-nodes="{nodes}" data-rendered="{nodes}"', dom), dom[:2000]
    states = "done|failed|stale|missing|incomplete|running"
    assert len(re.findall(rf'<g class="node ({states})" id="n\d+"', dom)) == nodes
    assert "pipe.Score(i=7)" in dom if expand else "pipe.Score ×8" in dom


# -- a graph wider than the window -------------------------------------------------------

WIDE = """
from taskproc import Task

class Step(Task):
    def __init__(self, i: int, valid_frac: float, learning_rate_schedule: str):
        self.i = i
        self.before = Step(i - 1, valid_frac, learning_rate_schedule) if i else None

    def run_task(self) -> int:
        return self.i

class Main(Task):
    def __init__(self):
        self.last = Step(7, 0.125, "cosine-with-warm-restarts-and-a-long-name")

    def run_task(self) -> int:
        return self.last.get_result()
"""
WINDOW = (1200, 900)


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit truecolour PNG (what chromium
    writes): the chunks, zlib, and the five row filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + size
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line[i] for i in range(stride) if i % bpp < 3))
        prev = line
    return width, height, rows


def screenshot(page: Path, profile: Path) -> bytes:
    """A PNG of `page` in a headless chromium window of WINDOW pixels (killed if it hangs)."""
    assert CHROMIUM is not None
    png = profile / "shot.png"
    args = [
        CHROMIUM,
        *flags(profile),
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={png}",
        page.as_uri(),
    ]
    # In a session of its own, so that its helper processes go too if it has to be killed.
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0 and png.exists(), err
    return png.read_bytes()


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The html graph of a chain of 9 tasks with long arguments: far wider than the window."""
    folder = tmp_path_factory.mktemp("wide")
    (folder / "wide.py").write_text(textwrap.dedent(WIDE))
    ok(taskproc("graph", "wide.py", "-o", "cache", "--expand", "-w", "wide.html", cwd=folder))
    return folder / "wide.html"


def test_html_names_every_task_in_full(wide: Path) -> None:
    page = wide.read_text()
    full = html.escape(
        "wide.Step(i=3, valid_frac=0.125, learning_rate_schedule='cosine-with-warm-restarts-and-"
        "a-long-name')"
    )
    assert f'data-count="1" tabindex="0" title="{full}">' in page  # the node, on hover
    assert f"<title>{full}\n" in page  # its tooltip, in SVG
    assert f'<td class="name" title="{full}">{full}</td>' in page  # the side table, in full
    assert "…" in page  # the box itself is labelled short


@pytest.mark.skipif(CHROMIUM is None, reason=NEEDS_CHROMIUM)
def test_html_graph_fits_the_window(wide: Path, tmp_path: Path) -> None:
    """No node is cut off at the right edge: each row of pixels ends as it starts (the page's
    background), which a graph running off the right of the window breaks."""
    width, height, rows = read_png(screenshot(wide, tmp_path))
    assert (width, height) == WINDOW
    cut = [y for y, row in enumerate(rows) if row[-3:] != row[:3]]
    assert not cut, f"rows {cut[:5]}... have something at the right edge: the graph is cut off"
    drawn = [
        y
        for y, row in enumerate(rows)
        if len(set(row[i : i + 3] for i in range(0, len(row), 3))) > 4
    ]
    assert len(drawn) > 100  # the graph is there, not an empty page


# -- layout ----------------------------------------------------------------------------------


def view(n: int, edges: list[tuple[int, int]]) -> GraphView:
    nodes = tuple(
        Node(f"n{i}", f"m.T{i}", f"m.T{i}()", 1, ((TaskState.DONE, 1),), ()) for i in range(n)
    )
    return GraphView("m.Main()", "/c", n, nodes, tuple(Edge(s, d, 1) for s, d in edges))


def test_layout_puts_upstream_left_and_keeps_boxes_apart() -> None:
    g = view(5, [(0, 2), (1, 2), (2, 3), (0, 4), (3, 4)])
    plan = layout(g)
    for e in g.edges:
        assert plan.boxes[e.src].x + plan.boxes[e.src].w < plan.boxes[e.dst].x
    for i, a in enumerate(plan.boxes):
        for b in plan.boxes[i + 1 :]:
            apart_x = a.x + a.w <= b.x or b.x + b.w <= a.x
            apart_y = a.y + a.h <= b.y or b.y + b.h <= a.y
            assert apart_x or apart_y
    long_edge = plan.routes[3]  # 0 -> 4 goes from layer 0 to 3, through layers 1 and 2
    assert len(long_edge) == 4 and [b.h for b in long_edge[1:3]] == [0, 0]
    assert all(0 <= b.x <= plan.width and 0 <= b.y <= plan.height for b in plan.boxes)


def test_layout_of_a_collapsed_cycle() -> None:
    """Collapsed classes can depend on each other both ways, and on themselves."""
    plan = layout(view(2, [(0, 1), (1, 0), (1, 1)]))
    assert len(plan.boxes) == 2 and len(plan.routes) == 3


# Measures, in the browser, the lines each header and each count of the table is laid out on.
LINES_SCRIPT = """<script>
(function(){
  function lines(el){var r=document.createRange();r.selectNodeContents(el);
    return r.getClientRects().length;}
  var cells=[].slice.call(document.querySelectorAll('#nodes th, #nodes td.n'));
  var broken=cells.filter(function(c){return lines(c)>1;}).map(function(c){
    return c.textContent;});
  document.body.setAttribute('data-broken', broken.join('|'));
  document.body.setAttribute('data-cells', String(cells.length));
})();
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium: apt-get install -y chromium")
def test_html_table_headers_and_counts_stay_on_one_line(wide: Path, tmp_path: Path) -> None:
    """Long task names take the room they need, but the headers and counts are never broken
    inside a word ("tas ks")."""
    page = tmp_path / "measured.html"
    page.write_text(wide.read_text().replace("</body>", LINES_SCRIPT))
    dom = dump_dom(page, tmp_path / "profile")
    assert re.search(r'data-broken="" data-cells="13"', dom), dom[dom.find("<body") :][:300]


class Leaf(Task):
    def __init__(self, n: int, flag: str) -> None:
        self.n = n
        self.flag = flag

    def run_task(self) -> int:
        if self.n == 1 and not os.path.exists(self.flag):
            raise ValueError("one is bad")
        return self.n


class Mid(Task):
    def __init__(self, n: int, flag: str) -> None:
        self.leaf = Leaf(n, flag)

    def run_task(self) -> int:
        return self.leaf.get_result() * 10


class Top(Task):
    def __init__(self, flag: str) -> None:
        self.mids = FutureList([Mid(n, flag) for n in range(5)])

    def run_task(self) -> int:
        return sum(self.mids.get_result())


def test_status_and_graph_agree_on_every_task(tmp_path: Path) -> None:
    """One cache with done, failed, running, abandoned (incomplete), stale and never-run
    tasks: `graph` gives every stored task the state `status` gives it (the code is the code
    that ran), and the never-run ones `missing`."""
    from taskproc.store import Holder, LocalStore, hostname, new_runner
    from taskproc.views import scan, task_states

    cache, flag = tmp_path / "cache", str(tmp_path / "flag")
    with Graph(cache):
        top = Top(flag)
        leaves = [Leaf(n, flag) for n in range(5)]
    with pytest.raises(ExceptionGroup):
        top.run_graph(executor=InlineExecutor(), error_handling="lazy")
    store = LocalStore(cache)
    # stale: a leaf computed again (a new stamp) after its Mid ran
    leaves[2].clear_task()
    leaves[2].run_graph(executor=InlineExecutor())
    # running: a live runner (this process, beating) holds a leaf that has a result
    me = new_runner()
    store.write_meta(f"runners/{me.runner}.json", b'{"beat": 1}')
    held = store.claim(leaves[3]._tp_loc(), me)
    assert not isinstance(held, Holder)
    # abandoned: a dead runner's claim on a leaf whose result is gone
    leaves[4].clear_task()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost = store.claim(leaves[4]._tp_loc(), Holder("gone", hostname(), dead.pid))
    assert not isinstance(lost, Holder)
    lost.start("{}", [], keep_output=False)
    try:
        status = {e.key: e.state for e in scan(store)}
        order, states = task_states(top, detect_source_change=True)
    finally:
        held.release()
    graph = {f"{t.task_name}/{t._tp.task_id}": s.state for t, s in states.items()}
    assert {k: graph[k] for k in status} == status
    assert sorted(set(status.values()), key=str) == sorted(
        {
            TaskState.DONE,
            TaskState.FAILED,
            TaskState.RUNNING,
            TaskState.INCOMPLETE,
            TaskState.STALE,
        },
        key=str,
    )
    never_run = {k for k in graph if k not in status}  # Mid(1), after the failed leaf, and Top
    assert {k.split("/")[0] for k in never_run} == {Mid.task_name, Top.task_name}
    assert [graph[k] for k in never_run] == [TaskState.MISSING] * 2
