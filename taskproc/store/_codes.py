"""Code identities kept for ``taskproc why``: one file per identity in a folder,
``<code>.json.gz``, a gzip of JSON ``{"format": 1, "code": ..., "entries": [[key, kind,
digest, source], ...]}``, written once (an identity's entries never change) and atomically."""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Sequence

from taskproc.store._contract import CodeEntry
from taskproc.store._files import make_dirs, write_atomic

_CODE_ID = re.compile(r"[0-9a-f]{8,64}")  # a code identity names a file: hex digits only
_SUFFIX = ".json.gz"


def _file(folder: str, code: str) -> str | None:
    return os.path.join(folder, code + _SUFFIX) if _CODE_ID.fullmatch(code) else None


def write_code(folder: str, code: str, entries: Sequence[CodeEntry]) -> None:
    """Keep the entries of `code` in `folder`, unless they are kept already."""
    path = _file(folder, code)
    if path is None or os.path.exists(path):
        return
    rows = [[e.key, e.kind, e.digest, e.source] for e in entries]
    data = json.dumps({"format": 1, "code": code, "entries": rows}).encode()
    make_dirs(folder)
    write_atomic(path, gzip.compress(data, 6, mtime=0))


def read_code(folder: str, code: str) -> tuple[CodeEntry, ...] | None:
    """The entries of `code` kept in `folder`; None if there are none (or they are damaged)."""
    path = _file(folder, code)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            raw = json.loads(gzip.decompress(f.read()))
        return tuple(CodeEntry(str(k), str(t), str(d), str(s)) for k, t, d, s in raw["entries"])
    except (OSError, ValueError, EOFError, KeyError, TypeError):
        return None


def code_ids(folder: str) -> frozenset[str]:
    """The code identities kept in `folder`."""
    try:
        names = os.listdir(folder)
    except OSError:
        return frozenset()
    return frozenset(n[: -len(_SUFFIX)] for n in names if n.endswith(_SUFFIX))


def delete_code(folder: str, code: str) -> None:
    path = _file(folder, code)
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
