"""Stores named by URL: `open_store`, used by `Graph`, the command line's ``-o`` and every
subcommand.

A path (no scheme) or a ``file://`` URL is a cache folder (`LocalStore`); ``s3://BUCKET/PREFIX``
a cache in a bucket (`BucketStore`, whose client, obstore, is the optional extra ``s3``). The
table below is fixed when taskproc is imported (no registry to mutate), and a store whose
library is an optional extra imports it only when its scheme is used.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Callable

from taskproc.errors import ConfigError
from taskproc.store._contract import Store
from taskproc.store._local import LocalStore

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def _folder(url: str) -> Store:
    path = url[len("file://") :] if url.startswith("file://") else url
    return LocalStore(os.path.abspath(path))


def _bucket(url: str) -> Store:
    from taskproc.store._s3 import open_bucket_store  # obstore itself loads on first request

    return open_bucket_store(url)


SCHEMES: types.MappingProxyType[str, Callable[[str], Store]] = types.MappingProxyType(
    {"file": _folder, "s3": _bucket}
)


def scheme_of(location: str) -> str | None:
    """The URL scheme of `location` (``s3`` of ``s3://b/p``); None for a plain path."""
    match = _SCHEME.match(location)
    return match.group(1).lower() if match else None


def open_store(location: str | os.PathLike[str]) -> Store:
    """The store at `location`: a folder path, or a URL of a known scheme. Nothing is
    written (a run makes the store ready when it starts). ConfigError for an unknown
    scheme, naming the known ones."""
    text = os.fspath(location)
    scheme = scheme_of(text)
    if scheme is None:
        return _folder(text)
    opener = SCHEMES.get(scheme)
    if opener is None:
        known = ", ".join(f"{s}://" for s in sorted(SCHEMES))
        raise ConfigError(
            f"cache {text!r}: unknown kind of store {scheme}://; give a folder path or a URL "
            f"of a known kind ({known})"
        )
    return opener(text)
