"""The cost of code identities: task classes that reach many helper functions.

    python benchmarks/fingerprint.py [--classes 100] [--helpers 1000] [--repeat 3]

Writes a generated pipeline into a temporary folder: `--helpers` functions in modules of 100,
each calling the next two of its module and reading a module constant (so they form chains,
and the last ones call back into the first: cycles), and `--classes` task classes, each calling
ten helpers spread over the modules, so that together they reach every helper. The modules are
imported first (imports are not timed); then a new `Fingerprints` computes the identity of every
class, as a run does once per class. Prints the best of `--repeat` timings, in seconds, and
exits 1 if it is over the target (0.5 s for 100 classes and 1,000 helpers).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from taskproc.model import Fingerprints  # noqa: E402  (the repository's taskproc)

TARGET_S = 0.5
PER_MODULE = 100


def helpers_module(index: int, count: int) -> str:
    lines = [f'"""Helpers {index}."""', "", f"FACTOR_{index} = {index + 1}", ""]
    for i in range(count):
        nxt, after = (i + 1) % count, (i + 2) % count
        lines += [
            f"def h{index}_{i}(x, depth=0):",
            f'    """Helper {i} of module {index}."""',
            "    if depth > 2:",
            f"        return x * FACTOR_{index}",
            f"    return h{index}_{nxt}(x, depth + 1) + h{index}_{after}(x, depth + 2)",
            "",
        ]
    return "\n".join(lines)


def tasks_module(classes: int, modules: int, per_module: int) -> str:
    lines = ["from taskproc import Task"]
    lines += [f"import bench_helpers_{m}" for m in range(modules)]
    for c in range(classes):
        calls = []
        for k in range(10):
            m = (c + k) % modules
            i = (c * 10 + k * 7) % per_module
            calls.append(f"bench_helpers_{m}.h{m}_{i}(self.x)")
        lines += [
            "",
            f"class Task{c}(Task):",
            "    def __init__(self, x: int):",
            "        self.x = x",
            "",
            "    def run_task(self) -> int:",
            f"        return {' + '.join(calls)}",
        ]
    return "\n".join(lines) + "\n"


def reached(identity_entries: object) -> int:
    return sum(1 for e in identity_entries if e.kind == "function")  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--helpers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    modules = max(1, args.helpers // PER_MODULE)
    per_module = args.helpers // modules
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for m in range(modules):
            (root / f"bench_helpers_{m}.py").write_text(helpers_module(m, per_module))
        (root / "bench_tasks.py").write_text(tasks_module(args.classes, modules, per_module))
        sys.path.insert(0, folder)
        tasks = importlib.import_module("bench_tasks")
        classes = [getattr(tasks, f"Task{c}") for c in range(args.classes)]
        timings = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            code = Fingerprints()
            identities = [code.identity(cls) for cls in classes]
            timings.append(time.perf_counter() - start)
        helpers = {e.key for i in identities for e in i.entries if e.kind == "function"}
    best = min(timings)
    target = TARGET_S * (args.classes / 100) * (args.helpers / 1000) ** 0.5
    print(
        f"fingerprints: {args.classes} task classes reaching {len(helpers)} helper functions "
        f"({sum(reached(i.entries) for i in identities) / len(identities):.0f} per class) "
        f"in {best:.3f} s (best of {args.repeat}; target < {TARGET_S} s for 100 / 1,000)"
    )
    return 0 if best < max(target, TARGET_S) else 1


if __name__ == "__main__":
    sys.exit(main())
