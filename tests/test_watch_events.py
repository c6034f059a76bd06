"""``--watch`` stays awake: a file replaced by rename (``sed -i``, an editor's safe save), a folder
deleted and made again, and a cache named through a symlink (ignored, not a change).

The `Changes` tests use the watcher directly: each change is made, then `wait` must return it
(a watcher gone deaf makes `wait` block, and the test fails on pytest's timeout alarm below).
The command-line tests reuse `test_watch.py`'s harness, which stops the command whatever happens.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_watch import wait_for, watching

from taskproc.cli._watch import Changes

DEAF_AFTER = 20  # seconds: `wait` blocking this long means the watcher went deaf


@pytest.fixture
def changes_of(tmp_path: Path) -> Iterator[type[Changes]]:
    """`Changes`, closed after the test; `wait` raising TimeoutError once it has blocked
    `DEAF_AFTER` seconds (the alarm's handler raises into the wait, which Rust passes on)."""
    made: list[Changes] = []

    class Closed(Changes):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(self)

        def wait(self) -> set[str]:
            def deaf(signum: int, frame: object) -> None:
                raise TimeoutError(f"wait() saw nothing for {DEAF_AFTER} s: deaf")

            previous = signal.signal(signal.SIGALRM, deaf)
            signal.alarm(DEAF_AFTER)
            try:
                return super().wait()
            except KeyboardInterrupt as exc:  # watchfiles reports the handler's error so
                raise TimeoutError(f"wait() saw nothing for {DEAF_AFTER} s: deaf") from exc
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, previous)

    yield Closed
    for changes in made:
        changes.close()


def sed(path: Path, text: str) -> None:
    subprocess.run(["sed", "-i", f"s/.*/{text}/", str(path)], check=True, timeout=30)


def editor_save(path: Path, text: str) -> None:
    """A safe save as editors make it: the new text in a temporary file, the old file kept as a
    backup by rename, the temporary file renamed into place."""
    temporary = path.with_name(path.name + ".tmp~")
    temporary.write_text(text)
    os.replace(path, path.with_name(path.name + "~"))
    os.replace(temporary, path)


def delete_and_write(path: Path, text: str) -> None:
    path.unlink()
    path.write_text(text)


@pytest.mark.parametrize("save", [sed, editor_save, delete_and_write])
def test_a_file_replaced_by_a_new_one_is_seen_every_time(
    tmp_path: Path, changes_of: type[Changes], save: object
) -> None:
    watched = tmp_path / "params.txt"
    watched.write_text("v0\n")
    (tmp_path / "other.txt").write_text("not watched")
    changes = changes_of([str(watched)])
    for i in range(1, 4):
        save(watched, f"v{i}")  # type: ignore[operator]
        assert changes.wait() == {str(watched)}, f"edit {i}"
    (tmp_path / "other.txt").write_text("a file next to it")
    watched.write_text("in place")
    assert changes.wait() == {str(watched)}  # its neighbours do not count


def remake_by_mkdir(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.mkdir()


def remake_by_rename(folder: Path) -> None:
    new = folder.with_name(folder.name + ".new")
    new.mkdir()
    shutil.rmtree(folder)
    new.rename(folder)


@pytest.mark.parametrize("remake", [remake_by_mkdir, remake_by_rename])
def test_a_folder_deleted_and_made_again_is_watched_again(
    tmp_path: Path, changes_of: type[Changes], remake: object
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.job").write_text("a")
    changes = changes_of([str(inbox)])
    for i in range(3):
        remake(inbox)  # type: ignore[operator]
        assert str(inbox) in changes.wait()
        (inbox / f"{i}.job").write_text("dropped")
        assert changes.wait() == {str(inbox / f"{i}.job")}, f"round {i}"


def test_a_cache_named_through_a_symlink_is_ignored(
    tmp_path: Path, changes_of: type[Changes]
) -> None:
    """`-o link/cache` with link -> real, watching real (and the other way round): the run's
    own writes are no change."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to("real")
    for watched, cache in (("real", "link/cache"), ("link", "real/cache")):
        changes = changes_of([str(tmp_path / watched)], ignore=[str(tmp_path / cache)])
        (real / "cache" / "task").mkdir(parents=True)
        (real / "cache" / "task" / "result.pkl.gz").write_bytes(b"x")
        (real / "input.txt").write_text(watched)
        changed = changes.wait()
        assert {os.path.basename(p) for p in changed} == {"input.txt"}, (watched, changed)
        changes.close()
        shutil.rmtree(real / "cache")


def test_a_symlink_inside_the_watched_folder_to_the_cache_is_ignored(
    tmp_path: Path, changes_of: type[Changes]
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "elsewhere" / "cache").mkdir(parents=True)
    (tmp_path / "real" / "c").symlink_to(tmp_path / "elsewhere" / "cache")
    changes = changes_of([str(tmp_path / "real")], ignore=[str(tmp_path / "elsewhere" / "cache")])
    (tmp_path / "real" / "c" / "result.pkl.gz").write_bytes(b"x")
    (tmp_path / "real" / "input.txt").write_text("x")
    assert changes.wait() == {str(tmp_path / "real" / "input.txt")}


# -- the command ------------------------------------------------------------------------------


def test_a_watched_file_edited_by_sed_reruns_after_every_edit(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    job = tmp_path / "inbox" / "a.job"
    job.write_text("first")
    with watching(tmp_path, "inbox/a.job") as w:
        wait_for(lambda: w.watching() == 1, "the first run")
        for i, text in enumerate(["second", "third"], start=2):
            sed(job, text)
            wait_for(lambda: w.runs() == ["a.job"] * i, f"edit {i - 1} to run")  # noqa: B023
            wait_for(lambda: w.watching() == i, f"round {i} to end")  # noqa: B023
        assert w.interrupt() == 130


def test_a_watched_folder_made_again_reruns_on_a_dropped_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.job").write_text("first")
    with watching(tmp_path, "inbox") as w:
        wait_for(lambda: w.watching() == 1, "the first run")
        remake_by_mkdir(inbox)
        wait_for(lambda: w.watching() == 2, "the round after the folder came back")
        (inbox / "b.job").write_text("second")
        wait_for(lambda: w.runs() == ["a.job", "b.job"], "the dropped file to run")
        assert w.interrupt() == 130
