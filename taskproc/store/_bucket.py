"""A bucket of an S3-compatible server: the few operations a store in a bucket is built from.

Design note.

- **One client library, imported here alone.** obstore (Rust's object_store, one wheel with
  no dependencies) is an optional extra, ``pip install 'taskproc[s3]'``; `import taskproc`
  never loads it, and a bucket opened without it is a one-line `CacheError` naming the extra.
  Why obstore and not boto3: docs/design.md, "A cache in a bucket".
- **Keys are relative** to the URL's prefix: ``s3://BUCKET/team/cache`` and key ``a/b`` is
  the object ``team/cache/a/b``. A key never starts or ends with ``/`` nor has an empty,
  ``.`` or ``..`` segment.
- **Conditional writes answer, they do not raise.** `put_if_absent` (``If-None-Match: *``)
  and `put_if_match` (``If-Match: ETAG``) return the new ETag, or None when the condition
  failed: losing a race is a normal outcome. A request whose answer was lost and that the
  client sent again can come back None although the first one won: callers write bodies that
  say who wrote them (a nonce) and read the object back to tell (the store's design note).
- **No conditional delete.** obstore cannot send ``If-Match`` on DELETE, so nothing here
  offers one; the store never needs it: a claim is given back by overwriting it conditioned
  on its ETag, and only objects that no one else writes are deleted outright.
- **No conditional multipart upload.** obstore cannot condition a multipart completion:
  `upload` streams a big value in parts to a key that no one else writes, and the commit is a
  small conditional PUT that names it. An exception inside `upload` aborts it and a killed
  process never completes it: either way there is no object.
- **Errors**: a missing object is None (or `FileNotFoundError` from `read_stream`). Anything
  else the caller cannot act on is a `CacheError` of one line that names the bucket URL and
  the endpoint and never the credentials: a missing bucket (never created here: a typo must
  not make one), refused credentials, an endpoint that does not answer (within a minute: see
  `_TIMEOUTS`), or the server's status and error code. The client's own text is dropped: it
  quotes requests.
- **Pickling** carries the URL and the settings (endpoint, region, profile), never the
  credentials: a worker process reads them from its own environment, so none is ever written
  into a job file.
- **Not across fork.** obstore runs its requests on a tokio runtime whose threads a forked
  child does not have: in a process forked after its parent used obstore, every call hangs
  (tokio #4301; obstore is not fork-safe). `_ForkGuard` turns that hang into a `CacheError`
  at once. Worker processes must therefore be started before the runner opens its client
  (taskproc starts a fork pool's workers up front) or by ``spawn``/``forkserver`` (dask).
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from taskproc.errors import CacheError

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import S3Store

SCHEME = "s3://"
EXTRA = "pip install 'taskproc[s3]'"
DEFAULT_REGION = "us-east-1"
# Multipart uploads: parts of this size, this many in flight, so a value being uploaded holds
# at most PART_SIZE * (PARTS_IN_FLIGHT + 1) bytes of it in memory whatever its size.
PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 2
# Big objects are read in ranged requests of this size, each bounded by the request timeout.
READ_CHUNK = 16 * 1024 * 1024
# Concurrent requests of one `get_many`.
CONCURRENCY = 32
# Timeouts and retries, so that an endpoint that does not answer is reported within a minute:
# a refused connection at once, a dropped one after 4 attempts of 5 s, a server that accepts
# and then hangs after at most RETRY_TIMEOUT plus one READ_TIMEOUT.
_TIMEOUTS = {"connect_timeout": "5s", "read_timeout": "15s", "timeout": "300s"}
_RETRY = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ERROR_CODE = re.compile(r"<Code>([A-Za-z0-9.]+)</Code>")
_STATUS = re.compile(r"status code: (\d{3})")
# S3 error codes that mean: these credentials are not accepted.
_REFUSED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
}
# Profile keys that mean: credentials come from a program, a role or a login taskproc does
# not run itself.
_INDIRECT = ("credential_process", "role_arn", "sso_session", "sso_start_url", "source_profile")


# -- naming a bucket ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketURL:
    """``s3://BUCKET/PREFIX``, checked: the bucket's name and the prefix (no slash at either
    end; ``""`` for the whole bucket)."""

    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")


def parse_url(url: str) -> BucketURL:
    """Check and split ``s3://BUCKET/PREFIX``. Raises `CacheError` naming the rule broken."""
    if not url.startswith(SCHEME):
        raise CacheError(f"{url}: a bucket is named s3://BUCKET/PREFIX")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise CacheError(
            f"{url}: {bucket!r} is not a bucket name (3-63 characters: lowercase letters, "
            "digits, '.' and '-', starting and ending with a letter or digit)"
        )
    prefix = prefix.strip("/")
    if prefix:
        check_key(prefix, url)
    return BucketURL(bucket, prefix)


def check_key(key: str, context: str = "") -> str:
    """`key` if it is a key this module accepts, else `CacheError` naming the rule."""
    segments = key.split("/")
    if not key or any(s in ("", ".", "..") for s in segments) or "\\" in key:
        where = f"{context}: " if context else ""
        raise CacheError(
            f"{where}{key!r} is not a key: '/'-separated names, none empty, '.' or '..'"
        )
    return key


# -- where the server is, and who we are to it -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """How to reach the server, without secrets: the endpoint (``""``: AWS's own for the
    region), the region, and the AWS profile credentials come from (``""``: none)."""

    endpoint: str
    region: str
    profile: str

    def shown_endpoint(self) -> str:
        """The endpoint as messages show it: without any user or password in it."""
        if not self.endpoint:
            return f"AWS S3 ({self.region})"
        parts = urlsplit(self.endpoint)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key. Never shown (no field in its repr) and never pickled."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False, default="")

    def __reduce__(self) -> Any:
        raise TypeError("credentials are never pickled: a worker reads its own environment")


def resolve_settings(
    environ: Mapping[str, str],
    read_text: Callable[[str], str | None] | None = None,
) -> tuple[Settings, Credentials | None]:
    """The settings and credentials that the standard AWS variables and profile files name,
    as AWS's own tools read them.

    Credentials: ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (and
    ``AWS_SESSION_TOKEN``), else the profile (``AWS_PROFILE``, else ``default``) in
    ``~/.aws/credentials`` then ``~/.aws/config`` (or ``AWS_SHARED_CREDENTIALS_FILE``,
    ``AWS_CONFIG_FILE``); else None, and the client's own chain (web identity, container,
    instance metadata) applies. Endpoint: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the
    profile's ``endpoint_url``. Region: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's
    ``region``, ``us-east-1``. Raises `CacheError` for a profile named but missing, or one
    whose credentials come from a program, a role or a login.
    """
    read = read_text or _read_optional
    home = environ.get("HOME") or os.path.expanduser("~")
    named = environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or ""
    profile_name = named or "default"
    files = (
        environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials"),
        environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config"),
    )
    profile = _read_profile(profile_name, files, read)
    if named and profile is None:
        raise CacheError(f"AWS profile {named!r} is not in {files[0]} nor {files[1]}")
    profile = profile or {}
    settings = Settings(
        endpoint=_first(environ, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        or profile.get("endpoint_url", ""),
        region=_first(environ, "AWS_REGION", "AWS_DEFAULT_REGION")
        or profile.get("region", DEFAULT_REGION),
        profile="",
    )
    key, secret = environ.get("AWS_ACCESS_KEY_ID", ""), environ.get("AWS_SECRET_ACCESS_KEY", "")
    if key and secret:
        return settings, Credentials(key, secret, environ.get("AWS_SESSION_TOKEN", ""))
    if profile.get("aws_access_key_id") and profile.get("aws_secret_access_key"):
        credentials = Credentials(
            profile["aws_access_key_id"],
            profile["aws_secret_access_key"],
            profile.get("aws_session_token", ""),
        )
        return Settings(settings.endpoint, settings.region, profile_name), credentials
    indirect = [k for k in _INDIRECT if k in profile]
    if indirect:
        raise CacheError(
            f"AWS profile {profile_name!r} gets its credentials through {indirect[0]}, which "
            "taskproc does not run: export them first, e.g. "
            f"eval $(aws configure export-credentials --profile {profile_name} --format env)"
        )
    return settings, None


def _first(environ: Mapping[str, str], *names: str) -> str:
    return next((environ[n] for n in names if environ.get(n)), "")


def _read_optional(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _read_profile(
    name: str, files: tuple[str, str], read: Callable[[str], str | None]
) -> dict[str, str] | None:
    """The keys of profile `name`: the credentials file's section over the config file's
    (``[name]`` there, ``[profile name]`` or, for default, ``[default]`` here)."""
    found: dict[str, str] | None = None
    sections = ([name], [f"profile {name}", name] if name == "default" else [f"profile {name}"])
    for path, candidates in zip(reversed(files), reversed(sections), strict=True):
        text = read(path)
        if text is None:
            continue
        parser = configparser.RawConfigParser()
        try:
            parser.read_string(text, source=path)
        except configparser.Error as exc:
            raise CacheError(f"{path}: not an AWS profile file ({exc.message})") from None
        for section in candidates:
            if parser.has_section(section):
                found = {**(found or {}), **dict(parser.items(section))}
                break
    return found


# -- objects -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object as a listing or a HEAD shows it: its key (relative to the prefix), its size,
    its ETag (quotes included, as the server sent it) and when it was last written, by the
    server's clock (POSIX seconds; 0.0 when the server did not say)."""

    key: str
    size: int
    etag: str
    modified: float = 0.0


@dataclass(frozen=True, slots=True)
class Blob:
    """Bytes read from an object: `data` (the whole object, or the range asked for), the
    object's ETag and its whole size."""

    data: bytes
    etag: str
    size: int


class Upload:
    """A big value being written in parts (`Bucket.upload`); `write` as to a binary file.
    After the block: `size` and `etag` of the object made."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self.size = 0
        self.etag = ""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n: int = self._writer.write(data)
        self.size += n
        return n


class _ForkGuard:
    """Which process's obstore runtime is live: the first that used the client. A process
    forked from it afterwards cannot use obstore (see the module's note) and is told so.

    The one piece of module state here: it describes this process, as `os.getpid` does."""

    def __init__(self) -> None:
        self._owner = 0

    def used(self) -> bool:
        return self._owner == os.getpid()

    def check(self, url: BucketURL) -> None:
        pid = os.getpid()
        if self._owner == pid:
            return
        if self._owner:
            raise CacheError(
                f"{url}: this process was forked from one that had already used the bucket "
                "client, which cannot work across fork (its threads stay behind); start worker "
                "processes before the bucket is opened, or with the 'spawn' or 'forkserver' "
                "start method"
            )
        self._owner = pid


_FORK_GUARD = _ForkGuard()


def bucket_client_used() -> bool:
    """Whether this process has used a bucket client: a process forked from it now could not
    (see "Not across fork")."""
    return _FORK_GUARD.used()


# -- the bucket ----------------------------------------------------------------------------------


class Bucket:
    """One bucket (and prefix) of one server, with the operations a store needs. Thread-safe;
    every method may raise `CacheError` (see the module's note)."""

    def __init__(self, url: BucketURL, settings: Settings, credentials: Credentials | None) -> None:
        self.url = url
        self.settings = settings
        # The client is made on first use, so that making (or unpickling) a Bucket before a
        # pool forks its workers is harmless (see "Not across fork").
        self._credentials = credentials
        self._client: S3Store | None = None
        self._pool: ThreadPoolExecutor | None = None  # get_many's threads, made on first use
        self._lock = threading.Lock()

    @property
    def _store(self) -> S3Store:
        """The client, in the process that may use it."""
        _FORK_GUARD.check(self.url)
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _client(self.url, self.settings, self._credentials)
        return self._client

    def __repr__(self) -> str:
        return f"Bucket({str(self.url)!r} at {self.settings.shown_endpoint()})"

    def __reduce__(self) -> Any:
        return (reopen_bucket, (str(self.url), self.settings))

    # reading

    def get(self, key: str, *, etag: str | None = None) -> Blob | None:
        """The whole object, or None when there is none (or, with `etag`, when it is no longer
        that version). For small objects: a big one is read with `read_stream`."""
        import obstore

        try:
            result = obstore.get(self._store, check_key(key), options=_options(etag))
            data = bytes(result.bytes())
        except Exception as exc:  # noqa: BLE001 - sorted by _absent / _failure
            self._absent(exc, "GET", key)
            return None
        return Blob(data, result.meta["e_tag"] or "", result.meta["size"])

    def get_range(self, key: str, start: int, end: int, *, etag: str | None = None) -> Blob | None:
        """Bytes `start` to `end` (exclusive) of the object, fewer where it ends first, or
        None when there is no object (or, with `etag`, not that version). `Blob.size` is the
        whole object's size."""
        import obstore

        if not 0 <= start < end:
            raise ValueError(f"range {start}..{end} is empty")
        try:
            result = obstore.get(self._store, check_key(key), options=_options(etag, (start, end)))
            data = bytes(result.bytes())
        except Exception as exc:  # noqa: BLE001
            if _code(exc) == "InvalidRange" and start == 0:
                return self.get(key, etag=etag)  # an empty object has no byte 0
            self._absent(exc, "GET", key)
            return None
        return Blob(data, result.meta["e_tag"] or "", result.meta["size"])

    def head(self, key: str) -> ObjectInfo | None:
        """Size and ETag of the object, or None when there is none."""
        import obstore

        try:
            meta = obstore.head(self._store, check_key(key))
        except Exception as exc:  # noqa: BLE001
            self._absent(exc, "HEAD", key)
            return None
        return ObjectInfo(key, meta["size"], meta["e_tag"] or "", _posix(meta))

    def read_stream(self, key: str, *, etag: str | None = None) -> Iterator[bytes]:
        """The object in chunks of at most READ_CHUNK bytes, each its own ranged request, all
        of the same version (the first one's ETag, or `etag`): a replaced object ends the
        stream with `FileNotFoundError`, never a mix. `FileNotFoundError` when there is none."""
        first = self.get_range(key, 0, READ_CHUNK, etag=etag)
        if first is None:
            raise FileNotFoundError(f"{self.url}/{key}")
        yield first.data
        offset = len(first.data)
        while offset < first.size:
            chunk = self.get_range(key, offset, offset + READ_CHUNK, etag=first.etag)
            if chunk is None:
                raise FileNotFoundError(f"{self.url}/{key} changed while being read")
            yield chunk.data
            offset += len(chunk.data)

    def get_many(self, keys: Sequence[str], *, first: int | None = None) -> list[Blob | None]:
        """`get` (or, with `first`, the first `first` bytes) of each key, CONCURRENCY requests
        at a time, on threads of this bucket's own (blocking calls, which let go of the
        interpreter while they wait); None where there is no object.

        Not obstore's async API: its futures hand results back to the event loop from the
        client's own threads, and one still on its way when the loop is closed can abort the
        process as it exits (seen about once in seven short runs)."""
        for key in keys:
            check_key(key)
        if not keys:
            return []
        if first:
            return list(self._readers().map(lambda k: self.get_range(k, 0, first), keys))
        return list(self._readers().map(self.get, keys))

    def _readers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="taskproc-bucket")
            return self._pool

    def list_pages(self, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        """Every object under `prefix` (a key, taken as a folder), in key order, a page of up
        to 1000 (a LIST request's) at a time, with keys relative to the bucket's prefix."""
        import obstore

        stream = obstore.list(self._store, check_key(prefix) if prefix else None, chunk_size=1000)
        while True:
            try:
                page = next(stream)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001
                raise self._failure(exc, "LIST", prefix) from None
            yield [ObjectInfo(m["path"], m["size"], m["e_tag"] or "", _posix(m)) for m in page]

    def list_folders(self, prefix: str = "") -> list[str]:
        """The names directly under `prefix` that have objects below them (a listing with
        delimiter ``/``), as keys relative to the bucket's prefix."""
        import obstore

        try:
            result = obstore.list_with_delimiter(self._store, check_key(prefix) if prefix else None)
        except Exception as exc:  # noqa: BLE001
            raise self._failure(exc, "LIST", prefix) from None
        return sorted(result["common_prefixes"])

    # writing

    def put(self, key: str, data: bytes) -> str:
        """Write the object whatever is there; its ETag."""
        return self._put(key, data, "overwrite") or ""

    def put_if_absent(self, key: str, data: bytes) -> str | None:
        """Create the object if there is none (``If-None-Match: *``): its ETag, or None when
        one exists."""
        return self._put(key, data, "create")

    def put_if_match(self, key: str, data: bytes, etag: str) -> str | None:
        """Replace the object if it is still version `etag` (``If-Match``): the new ETag, or
        None when it changed or is gone."""
        if not etag:
            raise ValueError("put_if_match needs the ETag of the version to replace")
        return self._put(key, data, {"e_tag": etag})

    def _put(self, key: str, data: bytes, mode: Any) -> str | None:
        import obstore

        try:
            result = obstore.put(self._store, check_key(key), data, mode=mode, use_multipart=False)
        except Exception as exc:  # noqa: BLE001
            if _lost_race(exc):
                return None
            raise self._failure(exc, "PUT", key) from None
        return result["e_tag"] or ""

    @contextlib.contextmanager
    def upload(self, key: str) -> Iterator[Upload]:
        """Write a value of any size as it is produced, in parts of PART_SIZE, whatever is
        there (so: to a key no one else writes). The object appears whole when the block ends;
        an exception in the block, or a killed process, leaves none."""
        import obstore

        check_key(key)
        try:
            writer = obstore.open_writer(
                self._store, key, buffer_size=PART_SIZE, max_concurrency=PARTS_IN_FLIGHT
            )
        except Exception as exc:  # noqa: BLE001
            raise self._failure(exc, "PUT", key) from None
        upload = Upload(writer)
        try:
            with writer:
                yield upload
        except CacheError:
            raise
        except Exception as exc:
            if _is_client_error(exc):
                raise self._failure(exc, "PUT", key) from None
            raise
        info = self.head(key)
        if info is None:
            raise CacheError(f"{self.url}/{key}: the upload ended but left no object")
        upload.etag = info.etag

    def delete(self, key: str) -> None:
        """Remove the object; none is fine. Unconditional: only for objects no one else
        writes."""
        self.delete_many([key])

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove the objects (in batches of up to 1000 a request); missing ones are fine."""
        import obstore

        if not keys:
            return
        try:
            obstore.delete(self._store, [check_key(k) for k in keys])
        except Exception as exc:  # noqa: BLE001
            self._absent(exc, "DELETE", keys[0])

    # errors

    def _absent(self, exc: Exception, op: str, key: str) -> None:
        """None for a missing object; any other failure raised as `_failure`."""
        if _is_not_found(exc) and _code(exc) != "NoSuchBucket":
            return None
        raise self._failure(exc, op, key) from None

    def _failure(self, exc: Exception, op: str, key: str) -> Exception:
        """The one-line `CacheError` for a failed request (see the module's note)."""
        if not _is_client_error(exc):
            return exc  # not the server's answer: a bug, raised as it is
        where = f"{self.url} at {self.settings.shown_endpoint()}"
        code, status, text = _code(exc), _status(exc), str(exc)
        if code == "NoSuchBucket":
            return CacheError(
                f"{where}: bucket {self.url.bucket!r} does not exist; create it first "
                "(taskproc never creates a bucket)"
            )
        if code in _REFUSED or status in ("401", "403"):
            return CacheError(
                f"{where}: the server refused the credentials ({code or status}); check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            )
        reason = _network_reason(text)
        if not status and reason:
            return CacheError(
                f"{where}: no answer from the endpoint ({reason}); check "
                "AWS_ENDPOINT_URL and that the server is up"
            )
        if not status:
            return CacheError(f"{where}: {op} {key}: the server's answer made no sense")
        return CacheError(f"{where}: {op} {key}: the server answered {status} {code}".rstrip())


def open_bucket(url: str, environ: Mapping[str, str] | None = None) -> Bucket:
    """The bucket `url` names, reached as the AWS variables and profiles of `environ`
    (default: this process's) say. Sends nothing: `check_bucket` does. `CacheError` when the
    URL or the profile is wrong, or obstore is not installed."""
    parsed = parse_url(url)
    try:
        import obstore  # noqa: F401
    except ImportError:
        raise CacheError(f"{url}: a cache in a bucket needs obstore: {EXTRA}") from None
    settings, credentials = resolve_settings(os.environ if environ is None else environ)
    return Bucket(parsed, settings, credentials)


def reopen_bucket(url: str, settings: Settings) -> Bucket:
    """Unpickling a `Bucket`: the same URL and settings, credentials from this process."""
    environ = dict(os.environ)
    if settings.profile:
        environ.setdefault("AWS_PROFILE", settings.profile)
    _, credentials = resolve_settings(environ)
    return Bucket(parse_url(url), settings, credentials)


def check_bucket(bucket: Bucket) -> None:
    """One request that proves the bucket exists and the credentials are accepted (a listing:
    a HEAD cannot tell a missing bucket from a missing object). `CacheError` if not."""
    for _ in bucket.list_pages(".taskproc"):
        break


PROBE_PREFIX = ".taskproc/probe"
_NO_SUCH_ETAG = '"00000000000000000000000000000000"'


def check_conditional_writes(bucket: Bucket) -> None:
    """Prove that the server honours conditional writes, on an object of its own under
    PROBE_PREFIX (removed after): a second ``If-None-Match: *`` and an ``If-Match`` on a wrong
    ETag must fail and leave the object as it was; an ``If-Match`` on its ETag must succeed.
    Some S3-compatible servers accept the headers and ignore them (seaweedfs #8800, minio
    #21526), and then nothing keeps two runners apart: `CacheError` in one line."""
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}"
    etag = bucket.put_if_absent(key, b"first")
    try:
        if etag is None:
            problem = "If-None-Match: * refused to create a new object"
        elif bucket.put_if_absent(key, b"second") is not None:
            problem = "If-None-Match: * replaced an existing object"
        elif bucket.put_if_match(key, b"third", _NO_SUCH_ETAG) is not None:
            problem = "If-Match with a wrong ETag replaced the object"
        elif (kept := bucket.get(key)) is None or kept.data != b"first":
            problem = "a refused conditional write changed the object"
        elif bucket.put_if_match(key, b"fourth", kept.etag) is None:
            problem = "If-Match with the object's own ETag was refused"
        else:
            return
    finally:
        bucket.delete(key)
    raise CacheError(
        f"{bucket.url} at {bucket.settings.shown_endpoint()}: the server does not honour "
        f"conditional writes ({problem}); taskproc needs them to keep runners apart: use one "
        "that does (AWS S3, MinIO, Ceph RGW, SeaweedFS 4.x, R2, ...)"
    )


# -- the client ----------------------------------------------------------------------------------


def _client(url: BucketURL, settings: Settings, credentials: Credentials | None) -> S3Store:
    from obstore.store import S3Store

    config: dict[str, Any] = {"region": settings.region}
    if settings.endpoint:
        config["endpoint"] = settings.endpoint
    if credentials is not None:
        config["access_key_id"] = credentials.access_key_id
        config["secret_access_key"] = credentials.secret_access_key
        if credentials.session_token:
            config["session_token"] = credentials.session_token
    client_options: dict[str, Any] = dict(_TIMEOUTS)
    if settings.endpoint.startswith("http://"):
        client_options["allow_http"] = True
    try:
        return S3Store(
            url.bucket,
            prefix=url.prefix or None,
            config=config,  # type: ignore[arg-type]
            client_options=client_options,  # type: ignore[arg-type]
            retry_config=_RETRY,  # type: ignore[arg-type]
        )
    except Exception as exc:  # noqa: BLE001 - a bad endpoint or region; the text quotes config
        raise CacheError(
            f"{url} at {settings.shown_endpoint()}: cannot make a client "
            f"({type(exc).__name__}); check AWS_ENDPOINT_URL and AWS_REGION"
        ) from None


def _options(etag: str | None, span: tuple[int, int] | None = None) -> GetOptions:
    options: GetOptions = {}
    if etag:
        options["if_match"] = etag
    if span:
        options["range"] = span
    return options


def _is_client_error(exc: BaseException) -> bool:
    from obstore.exceptions import BaseError

    # (CacheError is an OSError too: ours, raised as it is.)
    return isinstance(exc, (BaseError, OSError)) and not isinstance(exc, CacheError)


def _is_not_found(exc: BaseException) -> bool:
    from obstore.exceptions import NotFoundError, PreconditionError

    # A read conditioned on an ETag that no longer matches: that version is gone.
    return isinstance(exc, (FileNotFoundError, NotFoundError, PreconditionError))


def _lost_race(exc: BaseException) -> bool:
    from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError

    if isinstance(exc, (AlreadyExistsError, PreconditionError)):
        return True
    # If-Match on an object that is gone: some servers answer 404 rather than 412.
    return isinstance(exc, (FileNotFoundError, NotFoundError)) and _code(exc) != "NoSuchBucket"


def _posix(meta: Any) -> float:
    """An object's last-modified time (a datetime in obstore's metadata) in POSIX seconds."""
    when = meta.get("last_modified")
    return float(when.timestamp()) if when is not None else 0.0


def _code(exc: BaseException) -> str:
    found = _ERROR_CODE.search(str(exc))
    return found.group(1) if found else ""


def _status(exc: BaseException) -> str:
    found = _STATUS.search(str(exc))
    return found.group(1) if found else ""


def _network_reason(text: str) -> str:
    """A few words on why a request got no answer, from the client's text (never quoted);
    ``""`` when it did get one."""
    lowered = text.lower()
    if "error sending request" not in lowered and "timed out" not in lowered:
        return ""
    if "dns error" in lowered or "failed to lookup" in lowered:
        return "unknown host"
    if "timedout" in lowered or "timed out" in lowered:
        return "timed out"
    if "kind: connect" in lowered:
        return "cannot connect"
    return "the connection failed"
