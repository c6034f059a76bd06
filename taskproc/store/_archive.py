"""A task's folder (`task_directory`) as one archive, and back.

A store far away keeps a task's folder as one object per result (a tar file, uncompressed: the
task's own files are often compressed already). Unpacking never writes outside the target
folder: absolute names, ``..``, links that leave the folder and special files are refused, as
tarfile's ``data`` filter does (used where Python has it).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import IO

from taskproc.errors import CacheError


def has_files(folder: Path) -> bool:
    """Whether `folder` exists and holds anything."""
    try:
        with os.scandir(folder) as it:
            return any(True for _ in it)
    except OSError:
        return False


def pack(folder: Path, out: IO[bytes]) -> None:
    """Write the files under `folder` to `out` as a tar archive (names relative to it)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(folder.iterdir()):
            tar.add(entry, arcname=entry.name)


def _safe(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """`member` if extracting it stays inside `dest` and makes a file, folder or link."""
    name = member.name
    target = os.path.realpath(os.path.join(dest, name))
    if os.path.isabs(name) or ".." in Path(name).parts or not target.startswith(dest + os.sep):
        return None
    if member.issym() or member.islnk():
        link = os.path.realpath(os.path.join(os.path.dirname(target), member.linkname))
        if os.path.isabs(member.linkname) or not link.startswith(dest + os.sep):
            return None
    elif not (member.isfile() or member.isdir()):
        return None
    return member


def unpack(archive: str, dest: Path) -> None:
    """Extract `archive` into a new folder `dest` (made beside it and renamed into place, so
    a reader sees it whole or not at all). CacheError if the archive cannot be read."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    root = os.path.realpath(tmp)
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = [m for m in tar.getmembers() if _safe(m, root) is not None]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(tmp, members=members)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process unpacked it meanwhile
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CacheError(f"{archive}: cannot unpack a task's folder ({exc})") from None
