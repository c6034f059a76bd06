"""What reruns: recorded fingerprints (upstream stamps, code, version), never file times."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from taskproc import Graph, InlineExecutor, Task


class Source(Task):
    def __init__(self, x: int) -> None:
        self.x = x

    def run_task(self) -> int:
        return self.x


class Double(Task):
    def __init__(self, x: int) -> None:
        self.src = Source(x)

    def run_task(self) -> int:
        return 2 * self.src.get_result()


def run(cache: Path, task_cls: type[Task], *args: int, **kw: object) -> dict[str, int]:
    with Graph(cache):
        task = task_cls(*args)
    return task.run_graph(executor=InlineExecutor(), **kw)[1]["stats"]  # type: ignore[arg-type]


def test_upstream_rerun_elsewhere_makes_downstream_stale(cache: Path) -> None:
    assert run(cache, Double, 3) == {"test_staleness.Double": 1, "test_staleness.Source": 1}
    # Rerun only the upstream task, in a separate run: it gets a new stamp.
    with Graph(cache):
        Source(3).clear_task()
    assert run(cache, Source, 3) == {"test_staleness.Source": 1}
    assert run(cache, Double, 3) == {"test_staleness.Double": 1, "test_staleness.Source": 0}
    assert run(cache, Double, 3) == {"test_staleness.Double": 0, "test_staleness.Source": 0}


def test_file_times_do_not_matter(cache: Path) -> None:
    run(cache, Double, 4)
    with Graph(cache):
        up = Source(4).task_worker.result_path
        down = Double(4).task_worker.result_path
    os.utime(up, (4_000_000_000, 4_000_000_000))  # upstream "newer" than downstream
    os.utime(down, (1, 1))
    assert run(cache, Double, 4) == {"test_staleness.Double": 0, "test_staleness.Source": 0}


def test_force_entrypoint_reruns_only_the_root(cache: Path) -> None:
    run(cache, Double, 5)
    stats = run(cache, Double, 5, force_entrypoint=True)
    assert stats == {"test_staleness.Double": 1, "test_staleness.Source": 0}


PIPELINE = """
from taskproc import Graph, InlineExecutor, Task

class Up(Task):
    task_version = {version!r}

    def run_task(self) -> int:
        # a comment: {comment}
        return {value}

class Main(Task):
    def __init__(self) -> None:
        self.up = Up()

    def run_task(self) -> int:
        return self.up.get_result() + 1

if __name__ == "__main__":
    import sys
    with Graph("cache"):
        ans, stats = Main().run_graph(executor=InlineExecutor(),
                                      detect_source_change=sys.argv[1] == "detect")
    print(ans, stats["stats"]["pipe.Up"], stats["stats"]["pipe.Main"])
"""


def _pipe(
    tmp_path: Path, mode: str, value: int = 1, comment: str = "a", version: object = None
) -> str:
    (tmp_path / "pipe.py").write_text(
        textwrap.dedent(PIPELINE.format(value=value, comment=comment, version=version))
    )
    out = subprocess.run(
        [sys.executable, "pipe.py", mode], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_source_change_detection(tmp_path: Path) -> None:
    assert _pipe(tmp_path, "detect") == "2 1 1"
    assert _pipe(tmp_path, "detect", comment="b") == "2 0 0"  # comment-only edit
    assert _pipe(tmp_path, "ignore", value=5) == "2 0 0"  # changed, but detection is off
    assert _pipe(tmp_path, "detect", value=5) == "6 1 1"  # changed and detected


def test_task_version_invalidates_always(tmp_path: Path) -> None:
    assert _pipe(tmp_path, "ignore") == "2 1 1"
    assert _pipe(tmp_path, "ignore", version=2) == "2 1 1"
    assert _pipe(tmp_path, "ignore", version=2) == "2 0 0"


@pytest.mark.parametrize("damage", ["truncate", "garble", "empty", "header"])
def test_damaged_results_are_recomputed_with_a_warning(cache: Path, damage: str) -> None:
    run(cache, Double, 6)
    with Graph(cache):
        path = Source(6).task_worker.result_path
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garble":
        path.write_bytes(data[:-12] + bytes(b ^ 0xFF for b in data[-12:-8]) + data[-8:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(data[:12] + b"X" + data[13:])
    with Graph(cache):
        Double(6).clear_task()  # so the damaged upstream result must be loaded
        task = Double(6)
    with pytest.warns(UserWarning, match="test_staleness.Source"):
        ans, stats = task.run_graph(executor=InlineExecutor())
    assert ans == 12
    assert stats["stats"]["test_staleness.Source"] == 1


# -- an indexed FutureList or FutureDict depends on its one entry -----------------------------


class Entry(Task):
    def __init__(self, k: int) -> None:
        self.k = k

    def run_task(self) -> int:
        return self.k * self.k


class UsesOne(Task):
    def __init__(self, x: object) -> None:
        self.x = x

    def run_task(self) -> object:
        return self.x.get_result()  # type: ignore[attr-defined]


def _indexed() -> tuple[list[UsesOne], Task]:
    from taskproc import FutureDict, FutureList

    entries = FutureDict({k: Entry(k) for k in range(6)})
    listed = FutureList([entries[k] for k in range(6)])
    users = [UsesOne(entries[k]) for k in range(3)] + [UsesOne(listed[k]) for k in range(3, 6)]
    return users, UsesOne(listed)


def test_an_indexed_entry_depends_on_that_entry_alone(cache: Path) -> None:
    """`d[k]` and `FutureList(...)[i]` need their one entry: the links, the upstream tasks,
    and what reruns when one entry changes."""
    with Graph(cache):
        users, whole = _indexed()
        assert [len(u._tp_upstream()) for u in users] == [1] * 6
        assert len(whole._tp_upstream()) == 6
        for u in users:
            u.run_graph(executor=InlineExecutor())
        assert [u.get_result() for u in users] == [0, 1, 4, 9, 16, 25]
        links = sorted(os.listdir(users[4].task_worker.task_dir / "deps"))
        assert links == ["x.4.4"]  # item 4 of the list: key 4 of the dict
        Entry(2).clear_task()
        executed = []
        for u in users:
            executed.append(u.run_graph(executor=InlineExecutor())[1]["executed"])
    assert executed == [0, 0, 2, 0, 0, 0]  # Entry(2) and its one user


NO_SOURCE = """
class Sourceless:
    def run_task(self):
        return [x for x in range(3) if x in {"a", "b", "c"}]
"""


def test_code_without_source_has_a_stable_fingerprint() -> None:
    """Classes whose source cannot be read (``python -c``, ``python - < file``, exec) are
    fingerprinted by their bytecode: the same code gives the same fingerprint in every
    process (no addresses of nested code objects, no set order)."""
    from taskproc.model._fingerprint import fingerprint

    def make() -> type:
        namespace: dict[str, object] = {"__name__": "nosource"}
        exec(compile(NO_SOURCE, "<string>", "exec"), namespace)
        cls = namespace["Sourceless"]
        assert isinstance(cls, type)
        return cls

    one, two = make(), make()
    assert fingerprint(one) == fingerprint(two)
    script = f"from taskproc.model._fingerprint import fingerprint\nexec({NO_SOURCE!r})\n"
    script += "print(fingerprint(Sourceless))"
    prints = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(prints) == 1
