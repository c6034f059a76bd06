"""Every code block of README.md and docs/*.md, run, so the documentation cannot rot.

docs/cluster.md is run by tests/cluster/test_cluster_docs.py against a real cluster, and
docs/design.md holds no user code; every other page is run here, one test per page. The blocks
of a page run in the page's order in one fresh folder that holds a copy of ``examples/``:

- a ``python`` block whose first line is ``# file: NAME`` is saved as NAME, for the commands
  and blocks after it (it must be used by one of them);
- any other ``python`` block is saved as a script of its own and run with ``python``, so each
  one must work when pasted alone into a file (it may import a NAME saved before);
- in a ``console`` or ``bash`` block, each line starting with ``$ `` is a command (a line ending
  in ``\\`` continues on the next), and the lines after it, up to the next command, are its
  output as shown. Every command must exit 0 (show an expected failure as ``cmd || echo "exit
  status $?"``); each shown output line must appear, in order, in what the command printed
  (stdout and stderr), where ``...`` stands for any text. A command ending in ``&`` runs in the
  background until the page is done, as in a terminal;
- in a ``python`` block, a ``print(...)  # VALUE`` line whose comment starts like a value (a
  digit, a quote or a bracket) shows its output: it is checked the same way, so the comment
  cannot go stale (prose comments are not checked);
- blocks of any other language (``text``, ``json``, ...) are not code.

The commands of a page run in one bash process, in the folder, with ``taskproc`` and this
Python first on PATH. Paths under ``/tmp/`` are moved into the folder and port 8765 to a free
port, so that pages can run side by side. Two commands of the README are not run here:
``bash .ci/run`` (it runs this test) and the ``pip install -e .`` that precedes an example
(the package is installed already).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import taskproc
from taskproc.model import BUILTINS, CLASS_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NOT_RUN_HERE = {"cluster.md", "design.md"}
PAGES = [README] + sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in NOT_RUN_HERE)
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SHELL = {"console", "bash", "sh", "shell"}
SKIPPED_COMMANDS = {"bash .ci/run", "bash .ci/example"}  # run by tests/test_setup.py
INSTALL = "pip install -e . && "
TIMEOUT = 240


@dataclass(frozen=True, slots=True)
class Block:
    language: str
    code: str
    line: int  # of the opening fence, 1-based

    @property
    def file_name(self) -> str | None:
        match = re.fullmatch(r"# file: (\S+)", self.code.partition("\n")[0].strip())
        return match.group(1) if match else None


@dataclass(slots=True)
class Command:
    text: str
    line: int
    expected: list[str] = field(default_factory=list)


def read_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    return [
        Block(m.group(1).lower(), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def read_commands(block: Block) -> list[Command]:
    """The ``$ `` commands of a shell block, each with the output shown after it."""
    commands: list[Command] = []
    continued = False
    for n, line in enumerate(block.code.splitlines(), start=block.line + 1):
        if continued:
            commands[-1].text += "\n" + line
        elif line.startswith("$ "):
            commands.append(Command(line[2:], n))
        elif commands and line.strip():
            commands[-1].expected.append(line.strip())
        continued = line.endswith("\\") and bool(commands)
    return commands


def output_pattern(shown: str) -> re.Pattern[str]:
    """A shown output line as a pattern: ``...`` matches any text, spaces any spaces."""
    parts = [r"\s+".join(map(re.escape, p.split())) for p in shown.split("...")]
    return re.compile(".*".join(parts))


def missing_output(expected: list[str], actual: str) -> str | None:
    """The first shown line not found (in order) in `actual`, or None."""
    lines = [line.strip() for line in actual.splitlines()]
    i = 0
    for shown in expected:
        pattern = output_pattern(shown)
        while i < len(lines) and not pattern.fullmatch(lines[i]):
            i += 1
        if i == len(lines):
            return shown
        i += 1
    return None


# `print(...)  # 20` or `# {'a': 1}`: a comment that starts like a value shows the output.
PRINTED = re.compile(r"^\s*print\(.*\)\s+#\s+([-0-9'\"{\[(].*)$")


def printed_values(code: str) -> list[str]:
    """The outputs a python block's comments show, in order (see the module docstring)."""
    return [m.group(1).strip() for m in map(PRINTED.match, code.splitlines()) if m]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def localize(text: str, folder: Path, port: int) -> str:
    return text.replace("/tmp/", f"{folder}/").replace("8765", str(port))


@dataclass(slots=True)
class PageScript:
    """One bash script for a page: its files, python blocks and commands, in order."""

    page: str
    folder: Path
    port: int
    lines: list[str] = field(default_factory=list)
    steps: list[tuple[str, Command]] = field(default_factory=list)  # (where, command)

    def add_file(self, block: Block) -> None:
        name = block.file_name
        assert name is not None
        (self.folder / ".blocks").mkdir(exist_ok=True)
        source = self.folder / ".blocks" / f"line{block.line}_{name}"
        source.write_text(localize(block.code, self.folder, self.port))
        self.lines.append(f"cp {shlex.quote(str(source))} {shlex.quote(name)}")

    def add_python(self, block: Block) -> None:
        script = self.folder / ".blocks" / f"line{block.line}.py"
        script.parent.mkdir(exist_ok=True)
        code = localize(block.code, self.folder, self.port)
        if sys.version_info < (3, 11) and "ExceptionGroup" in code:
            code = "from exceptiongroup import ExceptionGroup\n" + code
        script.write_text(code)
        # Run it from the page's folder, as `python script.py` pasted there would.
        self.add_command(
            f"python block at line {block.line}",
            Command(
                f"cp {shlex.quote(str(script))} snippet.py && python snippet.py",
                block.line,
                printed_values(block.code),
            ),
            from_page=False,
        )

    def add_command(self, where: str, command: Command, *, from_page: bool = True) -> None:
        n = len(self.steps)
        self.steps.append((where, command))
        text = localize(command.text, self.folder, self.port) if from_page else command.text
        if text.rstrip().endswith("&"):  # background: its output to a log of its own
            text = text.rstrip()[:-1] + f" > .background{n}.log 2>&1 &"
            self.lines += [f"echo '@@@ begin {n}'", text, f"echo '@@@ end {n} 0'"]
        else:
            self.lines += [f"echo '@@@ begin {n}'", f"{{ {text}\n}} 2>&1", f'echo "@@@ end {n} $?"']

    def text(self) -> str:
        head = ["trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT"]
        return "\n".join(head + self.lines) + "\n"


def build_script(page: Path, folder: Path) -> PageScript:
    script = PageScript(page.name, folder, free_port())
    name = page.relative_to(ROOT)
    for block in read_blocks(page):
        if block.language == "python":
            if block.file_name:
                script.add_file(block)
            else:
                script.add_python(block)
        elif block.language in SHELL:
            for command in read_commands(block):
                if command.text in SKIPPED_COMMANDS or command.text.lstrip().startswith("#"):
                    continue  # a comment line in a session: nothing to run
                command.text = command.text.removeprefix(INSTALL)
                script.add_command(f"{name} line {command.line}", command)
    return script


def run_page(page: Path, folder: Path) -> list[str]:
    """Run every block of `page` in `folder`; return the problems found."""
    shutil.copytree(
        ROOT / "examples", folder / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    script = build_script(page, folder)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)
    env.pop("COLUMNS", None)
    proc = subprocess.run(
        ["bash", "-c", script.text()],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    outputs: dict[int, tuple[str, int]] = {}
    for m in re.finditer(r"^@@@ begin (\d+)\n(.*?)^@@@ end \1 (\d+)$", proc.stdout, re.M | re.S):
        outputs[int(m.group(1))] = (m.group(2), int(m.group(3)))
    problems = []
    for n, (where, command) in enumerate(script.steps):
        if n not in outputs:
            problems.append(f"{where}: did not run or did not finish: {command.text}")
            break
        out, status = outputs[n]
        shown = f"\n--- {where}: $ {command.text}\n{out}"
        if status != 0:
            problems.append(f"{where}: exit status {status}{shown}")
            continue
        missing = missing_output(command.expected, out)
        if missing is not None:
            problems.append(f"{where}: output line not found: {missing!r}{shown}")
    if problems and proc.stderr.strip():
        problems.append(f"bash said: {proc.stderr.strip()[-2000:]}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_blocks_run(page: Path, tmp_path: Path) -> None:
    problems = run_page(page, tmp_path)
    assert not problems, "\n\n".join(problems)


# -- the rules of the pages themselves ------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_blocks_follow_the_conventions(page: Path) -> None:
    blocks = read_blocks(page)
    for i, block in enumerate(blocks):
        where = f"{page.name} line {block.line}"
        if block.language in SHELL:
            assert read_commands(block), f"{where}: a shell block without '$ ' commands"
        if block.file_name:
            stem = Path(block.file_name).stem
            later = "\n".join(b.code for b in blocks[i + 1 :])
            assert stem in later, f"{where}: {block.file_name} is saved but never used"


def test_readme_has_the_setup_commands() -> None:
    commands = [
        c.text for b in read_blocks(README) if b.language in SHELL for c in read_commands(b)
    ]
    assert commands[:3] == [
        "bash .ci/example",
        "bash .ci/run",
        "pip install -e . && taskproc examples/binomial.py -o /tmp/taskproc-cache",
    ]
    head = README.read_text()[:3000]
    assert "bash .ci/run" in head


def test_readme_runs_every_example() -> None:
    commands = "\n".join(
        c.text for b in read_blocks(README) if b.language in SHELL for c in read_commands(b)
    )
    for example in (ROOT / "examples").glob("*.py"):
        assert f"examples/{example.name}" in commands, f"README does not run {example.name}"


def test_readme_links_every_page_and_links_resolve() -> None:
    text = README.read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"](docs/{page.name})" in text, f"README does not link docs/{page.name}"
    for page in [README, *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_readme_warns_about_pickles() -> None:
    text = README.read_text().lower()
    assert "pickle" in text and "trust" in text


def test_api_reference_covers_every_public_name() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    headings = set(re.findall(r"^#{2,4} `([\w.]+)", api, re.MULTILINE))
    public = set(taskproc.__all__)
    assert public <= headings, f"not in docs/api.md: {sorted(public - headings)}"
    members = {f"Task.{name}" for name in BUILTINS | CLASS_OPTIONS | {"run_task", "task_id"}}
    assert members <= headings, f"not in docs/api.md: {sorted(members - headings)}"


def test_the_docs_tell_one_version_story() -> None:
    """The version is written once: the package, its metadata and `taskproc --version` agree,
    the README names it, and no page speaks of a taskproc newer than it."""
    import importlib.metadata

    version = taskproc.__version__
    assert importlib.metadata.version("taskproc") == version
    shown = subprocess.run(
        [sys.executable, "-m", "taskproc", "--version"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0 and shown.stdout == f"taskproc {version}\n", shown
    minor = tuple(int(part) for part in version.split(".")[:2])
    assert f"This is taskproc {minor[0]}.{minor[1]} " in README.read_text()
    for page in [README, *(ROOT / "docs").glob("*.md")]:
        for named in re.findall(r"taskproc (\d+)\.(\d+)", page.read_text(), re.IGNORECASE):
            assert tuple(map(int, named)) <= minor, f"{page.name} speaks of taskproc {named}"
