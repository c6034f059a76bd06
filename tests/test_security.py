"""Security: nothing a user passes in escapes the cache folder, prefix values are shell-quoted,
cache files are never world-writable, and the README warns that a cache holds pickles.

Rows that reveal an engine gap assert the right behaviour and are marked
``xfail(strict=True)`` with ``engine: ...`` as the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pytest

from taskproc import Graph, InlineExecutor, Task, TaskDefinitionError

REPO = Path(__file__).resolve().parents[1]
HEX_ID = re.compile(r"[0-9a-f]{32}")


def created_outside(root: Path, cache: Path, before: set[Path]) -> list[Path]:
    """Paths under `root` that are new since `before` and not inside `cache`."""
    out = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if path not in before and not path.is_relative_to(cache):
                out.append(path)
    return sorted(out)


def every_path(root: Path) -> set[Path]:
    out: set[Path] = set()
    for folder, dirs, files in os.walk(root):
        out.update(Path(folder, name) for name in dirs + files)
    return out


# -- task names ------------------------------------------------------------------------------

BAD_NAMES = [
    "../evil",
    "../../evil",
    "a/../../evil",
    "/etc/evil",
    "/abs",
    "a/b",
    "a\\b",
    "..",
    ".",
    ".hidden",
    "a..b",
    "",
    "a\x00b",
    "~/evil",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_task_name_with_path_parts_is_rejected_at_definition(name: str) -> None:
    with pytest.raises(TaskDefinitionError, match="task_name must be dotted identifiers"):
        type("Evil", (Task,), {"task_name": name, "__module__": __name__})


@pytest.mark.parametrize(
    ("qualname", "module"),
    [("../../Evil", __name__), ("Evil", "../../evil"), ("Evil", "/abs/evil")],
)
def test_class_and_module_names_with_path_parts_are_rejected(qualname: str, module: str) -> None:
    with pytest.raises(TaskDefinitionError, match="task_name"):
        type(qualname, (Task,), {"__module__": module})


class RenamesItself(Task):
    """Shadows the class's task_name with an instance attribute."""

    def __init__(self, name: str) -> None:
        self.task_name = name  # type: ignore[misc]

    def run_task(self) -> int:
        return 1


GAP_INSTANCE_NAME = (
    "engine: 'self.task_name = ...' in __init__ is not rejected, and the scheduler builds the "
    "task folder from the instance attribute: '../../escaped' or an absolute path writes "
    "outside the cache; expected TaskDefinitionError naming task_name (like the other built-ins)"
)


@pytest.mark.parametrize("name", ["../../escaped", "{tmp}/abs_escaped"])
def test_instance_task_name_cannot_escape(tmp_path: Path, name: str) -> None:
    cache = tmp_path / "a" / "cache"  # so that an escape stays inside tmp_path
    cache.parent.mkdir()
    before = every_path(tmp_path)
    rejected = False
    try:
        with Graph(cache):
            task = RenamesItself(name.replace("{tmp}", str(tmp_path)))
        task.run_graph(executor=InlineExecutor())
    except TaskDefinitionError as exc:
        rejected = "task_name" in str(exc)
    assert created_outside(tmp_path, cache, before) == []
    assert rejected, "assigning task_name on an instance must be refused"


GAP_CLASS_NAME = (
    "engine: 'Cls.task_name = ...' after the class is defined bypasses the check in "
    "__init_subclass__, so '../../escaped' writes outside the cache; expected "
    "TaskDefinitionError on assignment (a metaclass __setattr__) or at construction"
)


def test_task_name_reassigned_on_the_class_cannot_escape(tmp_path: Path) -> None:
    class Renamed(Task):
        def run_task(self) -> int:
            return 1

    cache = tmp_path / "a" / "cache"
    cache.parent.mkdir()
    before = every_path(tmp_path)
    rejected = False
    try:
        Renamed.task_name = "../../escaped"
        with Graph(cache):
            task = Renamed()
        task.run_graph(executor=InlineExecutor())
    except TaskDefinitionError as exc:
        rejected = "task_name" in str(exc)
    assert created_outside(tmp_path, cache, before) == []
    assert rejected, "a task_name with '..' must be refused wherever it is set"


# -- arguments ------------------------------------------------------------------------------


class Save(Task):
    def __init__(self, where: Any) -> None:
        self.where = where

    def run_task(self) -> str:
        (self.task_directory / "out.txt").write_text(repr(self.where))
        return repr(self.where)


class Gather(Task):
    """Upstream tasks under keys and attribute names that look like paths (deps/ link names)."""

    def __init__(self, wheres: list[Any], root: str) -> None:
        self.saves = [Save(w) for w in wheres]
        self.by_key = {
            "../../victim_link": Save(1),
            f"{root}/victim_link": Save(2),
            "..": Save(3),
            "/": Save(4),
        }
        setattr(self, "../../victim_attr", Save(5))

    def run_task(self) -> int:
        return len(self.saves) + sum(len(s.get_result()) > 0 for s in self.by_key.values())


def _traversal_values(root: Path) -> list[Any]:
    return [
        "../../victim1",
        f"{root}/victim2",
        Path("../../victim3"),
        root / "victim4",
        "/etc/passwd",
        Path("/etc/passwd"),
        {"../../k": "/abs", "/abs": "../.."},
        ("..", "/", "."),
        "..",
        "/",
    ]


def test_arguments_never_escape_the_cache(tmp_path: Path, executor: Executor) -> None:
    cache = tmp_path / "a" / "cache"
    cache.parent.mkdir()
    passwd = os.stat("/etc/passwd")
    before = every_path(tmp_path)
    with Graph(cache):
        root = Gather(_traversal_values(tmp_path), str(tmp_path))
    assert root.run_graph(executor=executor)[0] == 14

    assert created_outside(tmp_path, cache, before) == []
    after = os.stat("/etc/passwd")
    assert (after.st_size, after.st_mtime_ns) == (passwd.st_size, passwd.st_mtime_ns)
    real_cache = cache.resolve()
    for entry in cache.iterdir():  # task names and the marker folder only
        assert entry.name == ".taskproc" or entry.name.startswith("test_security."), entry
    for folder in cache.glob("*/results/*"):
        assert HEX_ID.fullmatch(folder.name), folder
    links = [p for p in cache.rglob("*") if p.is_symlink()]
    assert links, "no deps/ links were made"
    for link in links:
        assert link.parent.name == "deps" and link.parent.parent.parent.name == "results", link
        assert Path(os.path.realpath(link)).is_relative_to(real_cache), link


def test_cli_clear_cannot_reach_outside_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    with Graph(cache):
        task = Save("x")
    task.run_graph(executor=InlineExecutor())
    before = every_path(tmp_path)
    patterns = [
        "../victim",
        str(victim),
        "*/../../victim",
        "test_security.Save/../../../victim",
        "..",
        "/",
    ]
    for pattern in patterns:
        proc = subprocess.run(
            [sys.executable, "-m", "taskproc", "clear", str(cache), pattern],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, (pattern, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert every_path(tmp_path) == before
    assert (victim / "keep.txt").read_text() == "precious"


# -- prefix templates ------------------------------------------------------------------------


class Report(Task):
    task_label = "wrapped"

    def __init__(self, arg: str) -> None:
        self.arg = arg

    def run_task(self) -> dict[str, str | None]:
        names = ("TP_DIR", "TP_LOG", "TP_NAME", "TP_ID")
        return {"arg": self.arg, **{k: os.environ.get(k) for k in names}}


CACHE_NAMES = [
    "a; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "q'; touch pwned; echo '",
    'd"; touch pwned; echo "',
    "s p & touch pwned | cat",
]
TEMPLATES = {
    "env": "env TP_DIR={task_dir} TP_LOG={log_dir} TP_NAME={task_name} TP_ID={task_id}",
    # the values pass through a real shell as arguments and must arrive intact
    "sh": 'sh -c \'d="$1"; shift; test -d "$d" && exec env TP_DIR="$d" "$@"\' sh '
    "{task_dir} TP_LOG={log_dir} TP_NAME={task_name} TP_ID={task_id}",
}


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("cache_name", CACHE_NAMES)
def test_prefix_values_are_shell_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_name: str, template: str
) -> None:
    monkeypatch.chdir(tmp_path)  # a stray 'touch pwned' would land here
    cache = tmp_path / cache_name
    with Graph(cache):
        task = Report("x; touch pwned $(touch pwned)")
    result, _ = task.run_graph(executor=InlineExecutor(), prefixes={"wrapped": TEMPLATES[template]})
    task_dir = str(task.task_worker.task_dir)
    assert result == {
        "arg": "x; touch pwned $(touch pwned)",
        "TP_DIR": task_dir,
        "TP_LOG": task_dir,
        "TP_NAME": "test_security.Report",
        "TP_ID": task.task_id,
    }
    assert not list(tmp_path.rglob("pwned"))


# -- file modes ------------------------------------------------------------------------------

UMASK_SCRIPT = """
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from taskproc import Graph, InlineExecutor, Task
from taskproc.run import process_pool


class Leaf(Task):
    def __init__(self, i: int):
        self.i = i

    def run_task(self) -> int:
        print("leaf", self.i)
        self.task_directory  # taskproc makes the data folder
        return self.i


class Root(Task):
    def __init__(self):
        self.leaves = [Leaf(i) for i in range(4)]

    def run_task(self) -> int:
        return sum(leaf.get_result() for leaf in self.leaves)


class Wrapped(Task):
    task_label = "wrapped"

    def run_task(self) -> int:
        return 1


class Fails(Task):
    def run_task(self) -> int:
        raise ValueError("fails")


class Main(Task):
    def __init__(self):
        self.root = Root()

    def run_task(self) -> int:
        return self.root.get_result()


if __name__ == "__main__":
    os.umask(int(sys.argv[2], 8))  # the command line below inherits it
    cache = sys.argv[1]
    with Graph(cache):
        with ThreadPoolExecutor(2) as ex:
            Root().run_graph(executor=ex)
        with process_pool(2) as ex:
            Leaf(9).run_graph(executor=ex)
        Wrapped().run_graph(executor=InlineExecutor(), prefixes={"wrapped": "env A=1"})
        try:
            Fails().run_graph(executor=InlineExecutor())
        except Exception:
            pass
        Leaf(0).clear_task()
    cli = [sys.executable, "-m", "taskproc", __file__, "-o", cache + "-cli", "-t", "process"]
    subprocess.run(cli, check=True, capture_output=True)
"""


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077], ids=["000", "022", "077"])
def test_cache_files_follow_the_umask_and_are_never_world_writable(
    tmp_path: Path, umask: int
) -> None:
    script = tmp_path / "pipe.py"
    script.write_text(textwrap.dedent(UMASK_SCRIPT))
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, str(script), str(cache), f"{umask:o}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    checked = 0
    for root in (cache, tmp_path / "cache-cli"):
        for path in [root, *root.rglob("*")]:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue  # a symlink's own mode is always 0o777 and never used
            checked += 1
            mode = stat.S_IMODE(st.st_mode)
            assert not mode & 0o002, f"{path} is world-writable ({mode:o})"
            assert not mode & umask, f"{path} ignores the umask {umask:o} ({mode:o})"
            assert mode & 0o600 == 0o600 or stat.S_ISDIR(st.st_mode), f"{path} ({mode:o})"
    names = {p.name for p in cache.rglob("*")}
    expected = {"result.pkl.gz", "args.json", "stdout.txt", "error.txt", "data", "deps"}
    expected |= {"prefix_stdout.txt", "cache.json"}
    assert expected <= names, expected - names
    assert checked > 40


# -- documentation ---------------------------------------------------------------------------


def test_readme_warns_that_a_cache_holds_pickles() -> None:
    """One paragraph of README.md says that a cache holds pickles and that only caches from
    trusted places may be loaded (loading a result unpickles it, which can run code)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    warnings = [
        paragraph
        for paragraph in re.split(r"\n\s*\n", text)
        if all(word in paragraph.lower() for word in ("pickle", "trust", "cache"))
    ]
    assert warnings, (
        "README.md has no paragraph warning that a cache holds pickles and must only be "
        "loaded from places you trust"
    )


# -- links planted in the cache ---------------------------------------------------------------


class Talks(Task):
    task_label = "talk"

    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> int:
        print("to stdout", self.n)
        print("to stderr", self.n, file=sys.stderr)
        return self.n


PLANTED = ("args.json", "stdout.txt", "stderr.txt", "prefix_stdout.txt", "prefix_stderr.txt")


@pytest.mark.parametrize("prefix", [False, True], ids=["direct", "prefix"])
def test_a_rerun_never_writes_through_links_planted_in_the_cache(
    tmp_path: Path, executor: Executor, prefix: bool
) -> None:
    """A planted link (or a cache copied with `cp -rs`) where the cache writes a file: the
    link is replaced by a file of the cache, and the file it pointed to is left as it was."""
    cache = tmp_path / "cache"
    outside = tmp_path / "outside"
    outside.mkdir()
    prefixes = {"talk": "env X=1"} if prefix else None
    with Graph(cache):
        task = Talks(1)
        task.run_graph(executor=executor, prefixes=prefixes)
        folder = task.task_worker.task_dir
        (folder / "result.pkl.gz").unlink()  # so that it runs again, in the same folder
        for name in PLANTED:
            target = outside / name
            target.write_text("precious\n")
            (folder / name).unlink(missing_ok=True)
            (folder / name).symlink_to(target)
        assert Talks(1).run_graph(executor=executor, prefixes=prefixes)[0] == 1
    for name in PLANTED:
        assert (outside / name).read_text() == "precious\n", name
    args = folder / "args.json"
    assert not args.is_symlink() and args.read_text() == '{"n":1}\n'  # replaced, not followed


def test_clear_deletes_in_place_when_the_trash_is_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trash folder on another file system (rename gives EXDEV), or one that is a link the
    cache did not make: `clear` deletes in place, and nothing outside is touched."""
    import errno

    from taskproc.store import LocalStore

    store = LocalStore(tmp_path / "cache")
    store.ensure()
    for n in ("a", "b"):
        (tmp_path / "cache" / "m.T" / "results" / n / "data").mkdir(parents=True)
    real_rename = os.rename

    def cross_device(src: str, dst: str) -> None:
        if "/trash/" in dst:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", cross_device)
    store.clear("m.T", "a")
    monkeypatch.undo()
    assert not (tmp_path / "cache" / "m.T" / "results" / "a").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    trash = tmp_path / "cache" / ".taskproc" / "trash"
    shutil.rmtree(trash, ignore_errors=True)
    trash.symlink_to(elsewhere)
    store.clear("m.T", "b")
    assert not (tmp_path / "cache" / "m.T" / "results" / "b").exists()
    assert list(elsewhere.iterdir()) == []
