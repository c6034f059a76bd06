"""Code identities kept for ``taskproc why``: one meta entry per identity,
``code/<digest>.json.gz``, a gzip of JSON ``{"format": 1, "code": <digest>, "entries": [[key,
kind, digest, source], ...]}``, written once (an identity's entries never change)."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Sequence

from taskproc.store._contract import CodeEntry, Store

_DIGEST = re.compile(r"[0-9a-f]{8,64}")  # a code identity names an entry: hex digits only
_FOLDER = "code/"
_SUFFIX = ".json.gz"


def _key(digest: str) -> str | None:
    return f"{_FOLDER}{digest}{_SUFFIX}" if _DIGEST.fullmatch(digest) else None


def write_code_identity(store: Store, digest: str, entries: Sequence[CodeEntry]) -> None:
    """Keep what the code identity `digest` covers, unless it is kept already. Raises OSError
    if it cannot be written (callers may ignore it: it only serves explanations)."""
    key = _key(digest)
    if key is None:
        return
    rows = [[e.key, e.kind, e.digest, e.source] for e in entries]
    data = json.dumps({"format": 1, "code": digest, "entries": rows}).encode()
    store.write_meta(key, gzip.compress(data, 6, mtime=0), replace=False)


def read_code_identity(store: Store, digest: str) -> tuple[CodeEntry, ...] | None:
    """What the code identity `digest` covers; None if it was never kept (or is damaged)."""
    key = _key(digest)
    data = store.read_meta(key) if key is not None else None
    if data is None:
        return None
    try:
        raw = json.loads(gzip.decompress(data))
        return tuple(CodeEntry(str(k), str(t), str(d), str(s)) for k, t, d, s in raw["entries"])
    except (OSError, ValueError, EOFError, KeyError, TypeError):
        return None


def code_identities(store: Store) -> frozenset[str]:
    """The code identities kept."""
    keys = store.list_meta(_FOLDER)
    return frozenset(k[len(_FOLDER) : -len(_SUFFIX)] for k in keys if k.endswith(_SUFFIX))


def delete_code_identity(store: Store, digest: str) -> None:
    key = _key(digest)
    if key is not None:
        store.delete_meta(key)
