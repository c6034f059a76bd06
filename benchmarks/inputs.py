"""The cost of input files (`InputFile`) on a cached rerun: nothing of them is read.

    python benchmarks/inputs.py [--files 10000] [--repeat 3] [--work DIR]

Writes `--files` small files into a temporary folder (under `--work`, default the system's
temporary folder) and a pipeline over them, in three shapes of the same size:

    plain    one task per file, its argument the file's name (no input file): the baseline
    files    one task per file, each holding ``InputFile(path)``
    folder   one task per file as in `plain`, and one ``InputFile(folder)`` over all of them

Each is run once to fill its cache, then rerun fully cached, each rerun in a new process (as
`benchmarks/run.py`'s cached case does), its graph building, staleness check and root load
timed. An audit hook in that process counts the files it opens under the data folder. Prints,
per shape, the best rerun time of `--repeat`, its cost per task, its ratio to `plain`, and the
files opened; exits 1 if a cached rerun opened any input file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

PIPELINE = '''
from pathlib import Path

from taskproc import Future, InputFile, Task

SHAPE = {shape!r}
FILES = {files}


class Plain(Task):
    def __init__(self, name: str) -> None:
        self.name = name

    def run_task(self) -> int:
        return len(self.name)


class Read(Task):
    def __init__(self, file: Future[Path]) -> None:
        self.file = file

    def run_task(self) -> int:
        return len(self.file.get_result().read_bytes())


class Main(Task):
    def __init__(self) -> None:
        names = [f"data/{{i:05d}}.txt" for i in range(FILES)]
        if SHAPE == "files":
            self.parts = [Read(InputFile(n)) for n in names]
        else:
            self.parts = [Plain(n) for n in names]
        self.folder = InputFile("data") if SHAPE == "folder" else None

    def run_task(self) -> int:
        return sum(p.get_result() for p in self.parts)
'''

RERUN = """
import json, os, sys, time
sys.path.insert(0, {repo!r})
data = os.path.abspath("data")
opened = []

def audit(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(data):
        opened.append(args[0])

sys.addaudithook(audit)
from taskproc import Graph, InlineExecutor
import pipe

start = time.perf_counter()
with Graph("cache"):
    result, stats = pipe.Main().run_graph(executor=InlineExecutor())
took = time.perf_counter() - start
assert stats["executed"] == 0, stats
print(json.dumps({{"seconds": took, "opened": len(opened), "result": result}}))
"""


def prepare(folder: Path, shape: str, files: int) -> None:
    folder.mkdir(parents=True)
    (folder / "pipe.py").write_text(PIPELINE.format(shape=shape, files=files))
    (folder / "rerun.py").write_text(textwrap.dedent(RERUN.format(repo=str(REPO_ROOT))))
    data = folder / "data"
    data.mkdir()
    old = time.time() - 3600  # written well before they are read: not read again for that
    for i in range(files):
        path = data / f"{i:05d}.txt"
        path.write_text(f"file {i}\n")
        os.utime(path, (old, old))
    fill = (
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); import pipe; "
        "from taskproc import Graph, InlineExecutor\n"
        "with Graph('cache'): pipe.Main().run_graph(executor=InlineExecutor())"
    )
    subprocess.run([sys.executable, "-c", fill], cwd=folder, check=True)


def rerun(folder: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "rerun.py"], cwd=folder, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{folder.name}: the rerun failed:\n{proc.stderr}")
    measured: dict[str, float] = json.loads(proc.stdout.splitlines()[-1])
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    shapes = ("plain", "files", "folder")
    with tempfile.TemporaryDirectory(dir=args.work, prefix="taskproc-inputs-") as tmp:
        for shape in shapes:
            prepare(Path(tmp) / shape, shape, args.files)
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.repeat):  # alternated, so a drifting load weighs on all alike
            for shape in shapes:
                got = rerun(Path(tmp) / shape)
                if shape not in best or got["seconds"] < best[shape]["seconds"]:
                    best[shape] = got
    tasks = args.files + 1
    base = best["plain"]["seconds"]
    print(f"cached rerun of {args.files:,} files (best of {args.repeat}, a new process each):")
    for shape in shapes:
        b = best[shape]
        count = tasks + (args.files if shape == "files" else 1 if shape == "folder" else 0)
        print(
            f"  {shape:7} {b['seconds']:7.3f} s  {b['seconds'] / count * 1e6:6.1f} µs a task  "
            f"{b['seconds'] / base:5.2f}x plain  input files opened: {int(b['opened'])}"
        )
    return 1 if any(best[s]["opened"] for s in shapes) else 0


if __name__ == "__main__":
    sys.exit(main())
