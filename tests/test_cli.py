"""The `taskproc` command, run for real in subprocesses on caches under tmp_path."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TASKPROC = str(Path(sys.executable).with_name("taskproc"))

PIPE = """
import os
from taskproc import Task

class Square(Task):
    def __init__(self, x: int):
        self.x = x

    def run_task(self) -> int:
        print(f"square {self.x} prefix={os.environ.get('VIA_PREFIX', '-')}")
        return self.x * self.x

class Main(Task):
    def __init__(self, n: int = 3):
        self.squares = [Square(i) for i in range(n)]

    def run_task(self) -> int:
        total = sum(s.get_result() for s in self.squares)
        print(f"total {total}")
        return total
"""

FAILING = """
import os, time
from taskproc import Task

class Ok(Task):
    def __init__(self, i: int):
        self.i = i

    def run_task(self) -> int:
        return self.i

class Bad(Task):
    def run_task(self) -> int:
        raise ValueError("boom")

class Main(Task):
    def __init__(self):
        self.bad = Bad()
        self.oks = [Ok(i) for i in range(3)]

    def run_task(self) -> int:
        return 0
"""

SLOW = """
import os, time
from taskproc import Task

class Slow(Task):
    def run_task(self) -> int:
        open(os.environ["MARKER"], "w").close()
        time.sleep(60)
        return 1

class Main(Task):
    def __init__(self):
        self.slow = Slow()

    def run_task(self) -> int:
        return 0
"""


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def taskproc(
    *args: object,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    as_module: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the `taskproc` command (or `python -m taskproc`, with `as_module`)."""
    command = [sys.executable, "-m", "taskproc"] if as_module else [TASKPROC]
    return subprocess.run(
        [*command, *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and mtime (links not followed)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return out


def info_mtime(cache: Path, task_name: str) -> float:
    (result,) = (cache / task_name / "results").glob("*/result.pkl.gz")
    return result.stat().st_mtime


# -- running Main --------------------------------------------------------------------------


def test_runs_main_and_shows_its_captured_output(tmp_path: Path) -> None:
    write(tmp_path, "pipe.py", PIPE)
    first = ok(taskproc("pipe.py", "-o", "cache", cwd=tmp_path))
    assert first.stdout.splitlines() == ["total 5"]
    assert (tmp_path / "cache" / "pipe.Square" / "results").is_dir()
    squares = snapshot(tmp_path / "cache" / "pipe.Square")
    main_done = info_mtime(tmp_path / "cache", "pipe.Main")
    time.sleep(0.01)

    again = ok(taskproc("pipe.py", "-o", "cache", cwd=tmp_path))
    assert again.stdout.splitlines() == ["total 5"]  # Main itself is rerun by default
    assert info_mtime(tmp_path / "cache", "pipe.Main") > main_done
    assert snapshot(tmp_path / "cache" / "pipe.Square") == squares  # upstream stays cached

    main_done = info_mtime(tmp_path / "cache", "pipe.Main")
    ok(taskproc("pipe.py", "-o", "cache", "--dont-force-entrypoint", cwd=tmp_path))
    assert info_mtime(tmp_path / "cache", "pipe.Main") == main_done


def test_python_m_taskproc_with_kwargs(tmp_path: Path) -> None:
    write(tmp_path, "pipe.py", PIPE)
    proc = taskproc("pipe.py", "-o", "cache", "--kwargs", '{"n": 4}', cwd=tmp_path, as_module=True)
    assert ok(proc).stdout.splitlines() == ["total 14"]
    assert len(list((tmp_path / "cache" / "pipe.Square" / "results").iterdir())) == 4


def test_help_lists_every_option() -> None:
    proc = ok(subprocess.run([TASKPROC, "--help"], capture_output=True, text=True, timeout=30))
    for option in (
        "-o CACHE, --cache-dir CACHE",
        "-l LEVEL, --loglevel LEVEL",
        "-n N, --num-workers N",
        "--kwargs JSON",
        "--prefixes JSON",
        "--rate-limits JSON",
        "-D, --disable-detect-source-change",
        "-t TYPE, --exec-type TYPE",
        "-e POLICY, --error-handling POLICY",
        "--dont-force-entrypoint",
        "--dont-show-progress",
        "--dry-run",
        "--watch PATH",
        "taskproc status CACHE",
        "taskproc graph FILE.py",
        "taskproc ls CACHE",
        "taskproc clear CACHE",
    ):
        # Python 3.13 prints "-o, --cache-dir CACHE" where 3.10-3.12 print "-o CACHE, ...":
        # check every flag and the metavar, not the layout.
        for word in option.replace(",", "").split():
            assert re.search(rf"(^|[\s\[,]){re.escape(word)}\b", proc.stdout), (option, word)


@pytest.mark.parametrize("exec_type", ["process", "thread", "local"])
def test_exec_types(tmp_path: Path, exec_type: str) -> None:
    write(tmp_path, "pipe.py", PIPE)
    args = ["pipe.py", "-o", "cache", "-t", exec_type, "-n", "2", "-l", "info"]
    out = ok(taskproc(*args, cwd=tmp_path)).stdout.splitlines()
    assert out[-1] == "total 5"
    if exec_type == "local":  # not captured: printed as the tasks run
        assert "square 2 prefix=-" in out
    else:
        assert out == ["total 5"]


def test_rate_limits_and_prefixes(tmp_path: Path) -> None:
    write(tmp_path, "pipe.py", PIPE)
    prefixes = json.dumps({"pipe.Square": "env VIA_PREFIX=yes"})
    args = ["pipe.py", "-o", "cache", "--prefixes", prefixes, "--rate-limits", '{"pipe.Square": 1}']
    ok(taskproc(*args, cwd=tmp_path))
    outputs = (tmp_path / "cache" / "pipe.Square" / "results").glob("*/stdout.txt")
    assert sorted(p.read_text().strip() for p in outputs) == [
        f"square {i} prefix=yes" for i in range(3)
    ]


def test_an_empty_prefix_overrides_one_further_right(tmp_path: Path) -> None:
    """``{"pipe.Square": ""}``: no prefix for Square, although '*' (right of its task name in
    its labels) has one; Main still runs through the '*' prefix."""
    write(tmp_path, "pipe.py", PIPE)
    prefixes = json.dumps({"pipe.Square": "", "*": "env VIA_PREFIX=yes"})
    ok(taskproc("pipe.py", "-o", "cache", "--prefixes", prefixes, "-n", "2", cwd=tmp_path))
    outputs = (tmp_path / "cache" / "pipe.Square" / "results").glob("*/stdout.txt")
    assert sorted(p.read_text().strip() for p in outputs) == [
        f"square {i} prefix=-" for i in range(3)
    ]
    assert len(list((tmp_path / "cache" / "pipe.Main").glob("results/*/prefix_stdout.txt"))) == 1


def test_error_handling_and_exit_status_1(tmp_path: Path) -> None:
    write(tmp_path, "failing.py", FAILING)
    proc = taskproc("failing.py", "-o", "cache", "-e", "lazy", "-t", "local", cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAILED failing.Bad() failed: ValueError: boom" in proc.stderr
    assert "Traceback" in proc.stderr  # the task's own traceback is shown
    # lazy: every task that does not depend on the failure ran
    assert len(list((tmp_path / "cache" / "failing.Ok" / "results").glob("*/result.pkl.gz"))) == 3
    assert not (tmp_path / "cache" / "failing.Main").exists()

    proc = taskproc("failing.py", "-o", "cache2", "-e", "immediate", cwd=tmp_path)
    assert proc.returncode == 1


EXPLODES = """
from taskproc import Task

def explode(i):
    raise RuntimeError(f"leaf {i} exploded")

class Leaf(Task):
    task_label = "leaf"

    def __init__(self, i: int):
        self.i = i

    def run_task(self) -> int:
        return explode(self.i)

class Main(Task):
    def __init__(self):
        self.leaf = Leaf(7)

    def run_task(self) -> int:
        return self.leaf.get_result()
"""

# How a failing task may run: each executor, a prefix command, and a prefix command that
# runs its worker where the pipeline file cannot be read (so its code must travel by value).
WHERE = {
    "process": ["-t", "process"],
    "thread": ["-t", "thread"],
    "local": ["-t", "local"],
    "prefix": ["--prefixes", '{"leaf": "env X=1"}'],
    "prefix-no-file": [
        "--prefixes",
        '{"leaf": "sh -c \'mv boom.py gone.py && exec \\"$@\\"\' --"}',
    ],
}


@pytest.mark.parametrize("where", WHERE)
def test_a_failure_shows_the_pipeline_file_and_its_lines(tmp_path: Path, where: str) -> None:
    """The failure report, error.txt, status and the graph name the pipeline file and the
    line, and show the line where the file can be read: never cloudpickle's <dynamic-code>."""
    file = write(tmp_path, "boom.py", EXPLODES).resolve()
    proc = taskproc("boom.py", "-o", "cache", "-n", "1", *WHERE[where], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    (error_file,) = (tmp_path / "cache" / "boom.Leaf").glob("results/*/error.txt")
    status = ok(taskproc("status", "cache", cwd=tmp_path)).stdout
    raised_at = json.loads(ok(taskproc("status", "cache", "--json", cwd=tmp_path)).stdout)
    if where == "prefix-no-file":
        (tmp_path / "gone.py").rename(file)  # for the graph, which imports it
    graph = ok(taskproc("graph", "boom.py", "-o", "cache", "--format", "dot", cwd=tmp_path))
    frames = [f'File "{file}", line 5, in explode', f'File "{file}", line 14, in run_task']
    source = 'raise RuntimeError(f"leaf {i} exploded")'
    readable = where != "prefix-no-file"
    for text in (proc.stderr, error_file.read_text()):
        assert "<dynamic-code>" not in text
        assert all(frame in text for frame in frames), text
        assert (source in text) is readable, text
    assert f"raised at: {file}:5 in explode" + (f": {source}" if readable else "\n") in status
    (failed,) = [t for t in raised_at["failed"] if t["task_name"] == "boom.Leaf"]
    assert failed["raised_at"] == {
        "file": str(file),
        "line": 5,
        "function": "explode",
        "source": source if readable else "",
    }
    assert "leaf 7 exploded (at boom.py:5 in explode)" in graph.stdout


def test_main_cli_in_a_script_with_default_arguments(tmp_path: Path) -> None:
    """`Main.cli()` with `DefaultCliArguments(...).populate()`, an LSF-style prefix."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    jbsub = bin_dir / "jbsub"
    # A stand-in for LSF's jbsub: logs its options, then runs the command after them.
    jbsub.write_text(
        "#!/bin/sh\n"
        'echo "$@" >> "$JBSUB_LOG"\n'
        "while [ $# -gt 0 ]; do case $1 in\n"
        "  -wait) shift ;; -queue|-cores|-mem) shift 2 ;; *) break ;; esac; done\n"
        'exec env VIA_PREFIX=jbsub "$@"\n'
    )
    jbsub.chmod(0o755)
    write(
        tmp_path,
        "script.py",
        PIPE.replace("class Square(Task):", "class Square(Task):\n    task_label = 'gpu'")
        + textwrap.dedent(
            """
            from taskproc import DefaultCliArguments

            if __name__ == "__main__":
                DefaultCliArguments(
                    cache_dir="default_cache",
                    kwargs={"n": 2},
                    prefixes={"gpu": "jbsub -wait -queue x86_1h -cores 4+1 -mem 8g"},
                    dont_show_progress=True,
                ).populate()
                Main.cli()
            """
        ),
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "JBSUB_LOG": str(tmp_path / "jbsub.log"),
    }
    run = [sys.executable, "script.py"]
    proc = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert ok(proc).stdout.splitlines() == ["total 1"]
    # dont_show_progress from the defaults: no bars, only the summary line
    assert proc.stderr.startswith("taskproc: 3 done, 0 cached, 0 failed in "), proc.stderr
    log = (tmp_path / "jbsub.log").read_text().splitlines()
    assert len(log) == 2 and all(line.startswith("-wait -queue x86_1h") for line in log)
    outputs = (tmp_path / "default_cache" / "script.Square" / "results").glob("*/stdout.txt")
    assert {p.read_text().strip() for p in outputs} == {
        "square 0 prefix=jbsub",
        "square 1 prefix=jbsub",
    }

    # The command line overrides the defaults.
    over = [*run, "-o", "other", "--kwargs", '{"n": 3}', "--prefixes", "{}"]
    proc = subprocess.run(over, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert ok(proc).stdout.splitlines() == ["total 5"]
    assert len((tmp_path / "jbsub.log").read_text().splitlines()) == 2


# -- dry run -----------------------------------------------------------------------------


def test_dry_run_says_what_would_run_and_why(tmp_path: Path) -> None:
    pipe = write(tmp_path, "pipe.py", PIPE)
    fresh = ok(taskproc("pipe.py", "-o", "cache", "--dry-run", cwd=tmp_path))
    assert "4 of 4 tasks would run" in fresh.stdout
    assert "pipe.Square(x=0): no cached result" in fresh.stdout
    assert fresh.stderr == (  # a typo in -o must not look like an empty cache
        "taskproc: cache folder 'cache' does not exist; nothing is cached - every task would run\n"
    )
    assert not (tmp_path / "cache").exists()  # nothing written, not even the cache folder

    ok(taskproc("pipe.py", "-o", "cache", cwd=tmp_path))
    before = snapshot(tmp_path / "cache")
    dry = ok(taskproc("pipe.py", "-o", "cache", "--dry-run", cwd=tmp_path))
    assert "1 of 4 tasks would run" in dry.stdout and dry.stderr == ""
    assert "pipe.Main(n=3): forced (entry point)" in dry.stdout
    out = ok(
        taskproc("pipe.py", "-o", "cache", "--dry-run", "--dont-force-entrypoint", cwd=tmp_path)
    ).stdout
    assert "nothing to run" in out

    pipe.write_text(PIPE.replace("return self.x * self.x", "return self.x * self.x * 1"))
    out = ok(taskproc("pipe.py", "-o", "cache", "--dry-run", cwd=tmp_path)).stdout
    assert "pipe.Square(x=1): its source code changed" in out
    assert "pipe.Main(n=3): an upstream task reruns" in out
    out = ok(taskproc("pipe.py", "-o", "cache", "--dry-run", "-D", cwd=tmp_path)).stdout
    assert "source code changed" not in out

    pipe.write_text(
        PIPE.replace("class Square(Task):", "class Square(Task):\n    task_version = 2")
    )
    out = ok(taskproc("pipe.py", "-o", "cache", "--dry-run", "-D", cwd=tmp_path)).stdout
    assert "pipe.Square(x=2): task_version changed" in out
    out = ok(taskproc("pipe.py", "-o", "cache", "--dry-run", "--kwargs", '{"n": 4}', cwd=tmp_path))
    assert "pipe.Square(x=3): no cached result" in out.stdout
    assert snapshot(tmp_path / "cache") == before


@pytest.mark.parametrize("command", ["why", "accept"])
def test_read_only_commands_say_the_cache_folder_does_not_exist(
    tmp_path: Path, command: str
) -> None:
    write(tmp_path, "pipe.py", PIPE)
    proc = taskproc(command, "pipe.py", "-o", "cahce", cwd=tmp_path)
    assert proc.stderr.splitlines()[0] == (
        "taskproc: cache folder 'cahce' does not exist; nothing is cached - every task would run"
    )
    assert "pipe.Square(x=0)" in proc.stdout and not (tmp_path / "cahce").exists()


def test_a_run_warns_of_rate_limits_for_a_label_no_task_has(tmp_path: Path) -> None:
    write(tmp_path, "pipe.py", PIPE)
    proc = ok(
        taskproc("pipe.py", "-o", "cache", "--rate-limits", '{"pipe.Sqare": 1}', cwd=tmp_path)
    )
    (line,) = [line for line in proc.stderr.splitlines() if "rate_limits" in line]
    assert line.startswith(
        "taskproc: warning: rate_limits names label 'pipe.Sqare' that no task in the graph has, "
        "so it is ignored; did you mean 'pipe.Square'? (labels: "
    )
    dry = ok(
        taskproc(
            "pipe.py", "-o", "cache", "--dry-run", "--prefixes", '{"pipe.Sqare": ""}', cwd=tmp_path
        )
    )
    (line,) = [line for line in dry.stderr.splitlines() if "prefixes" in line]
    assert line.startswith("taskproc: warning: prefixes names label 'pipe.Sqare' that no task")


# -- bad input -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder of a finished run (shared: bad input must leave it as it is)."""
    folder = tmp_path_factory.mktemp("real")
    write(folder, "pipe.py", PIPE)
    ok(taskproc("pipe.py", "-o", "cache", cwd=folder))
    return folder


CYCLE = """
from taskproc import Task

class Main(Task):
    def __init__(self):
        self.me = Main()
"""

BAD_INPUT = {
    "missing file": (["nope.py", "-o", "{cache}"], "nope.py: no such file"),
    "no Main": (["nomain.py", "-o", "{cache}"], "no task named Main"),
    "Main not a Task": (["notatask.py", "-o", "{cache}"], "Main must be a Task subclass"),
    "bad JSON": (
        ["pipe.py", "-o", "{cache}", "--kwargs", "{n: 1"],
        "argument --kwargs: must be JSON (",
    ),
    "JSON not an object": (
        ["pipe.py", "-o", "{cache}", "--kwargs", "[1]"],
        "must be a JSON object, got '[1]'",
    ),
    "wrong parameter": (["pipe.py", "-o", "{cache}", "--kwargs", '{"m": 1}'], "'m'"),
    "unknown executor": (["pipe.py", "-o", "{cache}", "-t", "gpu"], "--exec-type"),
    "bad workers": (["pipe.py", "-o", "{cache}", "-n", "0"], "--num-workers"),
    "bad error handling": (["pipe.py", "-o", "{cache}", "-e", "never"], "--error-handling"),
    "bad rate limit": (
        ["pipe.py", "-o", "{cache}", "--rate-limits", '{"a": 0}'],
        "--rate-limits['a'] must be an int >= 1, got 0",
    ),
    "unbalanced prefix": (
        ["pipe.py", "-o", "{cache}", "--prefixes", '{"*": "srun \'x"}'],
        "--prefixes['*'] is not a valid command",
    ),
    "cycle": (["cycle.py", "-o", "{cache}"], "cycle.Main() -> cycle.Main()"),
    "watch a missing path": (
        ["pipe.py", "-o", "{cache}", "--watch", "{folder}/nowhere"],
        "--watch {folder}/nowhere: no such file or folder",
    ),
    "watch without a path": (["pipe.py", "-o", "{cache}", "--watch"], "--watch: expected"),
    "import error": (["broken.py", "-o", "{cache}"], "broken.py: importing it failed"),
    "not a cache": (["pipe.py", "-o", "{folder}"], "not a taskproc cache"),
    "cache is a file": (["pipe.py", "-o", "{folder}/pipe.py"], "not a folder"),
    "no cache": (["pipe.py"], "-o/--cache-dir"),
    "status of a non-cache": (["status", "{folder}"], "not a taskproc cache"),
    "ls of a missing folder": (["ls", "{folder}/nothing"], "no such folder"),
    "clear of a non-cache": (["clear", "{folder}"], "not a taskproc cache"),
    "clear of an unknown task": (["clear", "{cache}", "pipe.Nope"], "no task named 'pipe.Nope'"),
    "graph with bad kwargs": (["graph", "pipe.py", "-o", "{cache}", "--kwargs", "{"], "JSON"),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(real_cache: Path, tmp_path: Path, case: str) -> None:
    args, expected = BAD_INPUT[case]
    write(tmp_path, "pipe.py", PIPE)
    write(tmp_path, "nomain.py", "from taskproc import Task\nclass Other(Task):\n    pass\n")
    write(tmp_path, "notatask.py", "class Main:\n    pass\n")
    write(tmp_path, "broken.py", "from taskproc import Task\nraise RuntimeError('bad file')\n")
    write(tmp_path, "cycle.py", CYCLE)
    cache = real_cache / "cache"
    before = snapshot(cache)
    folder_before = snapshot(tmp_path)
    argv = [a.replace("{cache}", str(cache)).replace("{folder}", str(tmp_path)) for a in args]
    proc = taskproc(*argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    if case == "import error":  # the file's own traceback comes first, then the one line
        assert "RuntimeError: bad file" in proc.stderr
        assert "taskproc/" not in proc.stderr.replace("taskproc/cli", "")
        lines = lines[-1:]
    else:
        assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert expected.replace("{folder}", str(tmp_path)) in lines[0]
    assert snapshot(cache) == before
    assert snapshot(tmp_path) == folder_before


# -- signals -------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_exit_status(tmp_path: Path, sig: signal.Signals, status: int) -> None:
    write(tmp_path, "slow.py", SLOW)
    marker = tmp_path / "started"
    proc = subprocess.Popen(
        [TASKPROC, "slow.py", "-o", "cache"],
        cwd=tmp_path,
        env={**os.environ, "MARKER": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the slow task never started"
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # like Ctrl-C: the whole foreground process group
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == status, err
    assert "finished results are kept" in err
    assert not list((tmp_path / "cache").glob("*/results/*/claim"))  # claims released


def test_error_while_building_main_shows_the_users_traceback(tmp_path: Path) -> None:
    write(
        tmp_path,
        "initerr.py",
        """
        from taskproc import Task

        class Main(Task):
            def __init__(self):
                raise ValueError("bad init")
        """,
    )
    proc = taskproc("initerr.py", "-o", "cache", cwd=tmp_path)
    assert proc.returncode == 1
    assert 'initerr.py", line 6, in __init__' in proc.stderr
    assert "/taskproc/" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == "taskproc: error: ValueError: bad init"


def test_output_is_the_0_25_name_of_cache_dir(tmp_path: Path) -> None:
    (tmp_path / "old.py").write_text(
        "from taskproc import Task\n\nclass Main(Task):\n    def run_task(self) -> int:\n"
        "        print('hi from 0.25 style')\n        return 1\n"
    )
    proc = taskproc(
        "old.py", "--output", "cache", "-t", "thread", cwd=tmp_path, timeout=120, as_module=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "hi from 0.25 style" in proc.stdout
    assert (tmp_path / "cache" / ".taskproc").is_dir()


def test_file_named_like_a_stdlib_module_is_refused(tmp_path: Path) -> None:
    (tmp_path / "io.py").write_text("from taskproc import Task\n\nclass Main(Task):\n    pass\n")
    proc = taskproc("io.py", "-o", "cache", cwd=tmp_path, timeout=120, as_module=True)
    assert proc.returncode == 2
    assert "rename the file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists()
