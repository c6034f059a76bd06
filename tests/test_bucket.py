"""The bucket client layer (store/_bucket.py): naming a bucket, reading the AWS settings, each
operation against a real S3 server (SeaweedFS), and the one-line errors."""

from __future__ import annotations

import concurrent.futures
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from taskproc.errors import CacheError
from taskproc.store._bucket import (
    Blob,
    BucketURL,
    Credentials,
    Settings,
    check_bucket,
    check_key,
    open_bucket,
    parse_url,
    resolve_settings,
)

# -- naming a bucket -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
        ("s3://my.bucket/team/cache", "my.bucket", "team/cache"),
        ("s3://abc/team/cache/", "abc", "team/cache"),
    ],
)
def test_parse_url(url: str, bucket: str, prefix: str) -> None:
    parsed = parse_url(url)
    assert parsed == BucketURL(bucket, prefix)
    assert str(parsed) == f"s3://{bucket}/{prefix}".rstrip("/")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("gs://bucket/p", "s3://BUCKET/PREFIX"),
        ("s3://", "not a bucket name"),
        ("s3://ab/p", "not a bucket name"),
        ("s3://My_Bucket/p", "not a bucket name"),
        ("s3://-bucket/p", "not a bucket name"),
        ("s3://bu..cket/p", "not a bucket name"),
        ("s3://bucket/a//b", "not a key"),
        ("s3://bucket/a/../b", "not a key"),
        ("s3://bucket/./b", "not a key"),
    ],
)
def test_parse_url_refuses(url: str, words: str) -> None:
    with pytest.raises(CacheError, match=words) as caught:
        parse_url(url)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", ".", "a/..", "a\\b"])
def test_check_key_refuses(key: str) -> None:
    with pytest.raises(CacheError, match="is not a key"):
        check_key(key)


# -- the AWS settings ----------------------------------------------------------------------------

HOME = "/home/u"
CREDENTIALS = f"{HOME}/.aws/credentials"
CONFIG = f"{HOME}/.aws/config"


def resolve(env: dict[str, str], files: dict[str, str] | None = None) -> Any:
    return resolve_settings({"HOME": HOME, **env}, (files or {}).get)


def test_settings_from_the_environment() -> None:
    settings, creds = resolve(
        {
            "AWS_ACCESS_KEY_ID": "AKID",
            "AWS_SECRET_ACCESS_KEY": "SECRET",
            "AWS_SESSION_TOKEN": "TOKEN",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_REGION": "eu-west-1",
        }
    )
    assert settings == Settings("http://127.0.0.1:9000", "eu-west-1", "")
    assert creds == Credentials("AKID", "SECRET", "TOKEN")


def test_settings_precedence() -> None:
    env = {
        "AWS_ENDPOINT_URL_S3": "http://s3-only:1",
        "AWS_ENDPOINT_URL": "http://all:2",
        "AWS_DEFAULT_REGION": "ap-south-1",
    }
    files = {CONFIG: "[default]\nregion = eu-north-1\nendpoint_url = http://profile:3\n"}
    settings, creds = resolve(env, files)
    assert settings == Settings("http://s3-only:1", "ap-south-1", "")
    assert creds is None  # the client's own chain (instance roles and so on)
    assert resolve({}, files)[0] == Settings("http://profile:3", "eu-north-1", "")
    assert resolve({})[0] == Settings("", "us-east-1", "")


def test_settings_from_a_profile() -> None:
    files = {
        CREDENTIALS: "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n"
        "[work]\naws_access_key_id = W\naws_secret_access_key = WS\n",
        CONFIG: "[profile work]\nregion = eu-central-1\n",
    }
    settings, creds = resolve({"AWS_PROFILE": "work"}, files)
    assert settings == Settings("", "eu-central-1", "work")
    assert creds == Credentials("W", "WS")
    assert resolve({}, files)[1] == Credentials("D", "DS")
    # variables beat the profile, as in every AWS tool
    env = {"AWS_PROFILE": "work", "AWS_ACCESS_KEY_ID": "E", "AWS_SECRET_ACCESS_KEY": "ES"}
    assert resolve(env, files)[1] == Credentials("E", "ES")


def test_settings_from_files_named_by_variables() -> None:
    files = {"/etc/c": "[default]\naws_access_key_id = K\naws_secret_access_key = S\n"}
    assert resolve({"AWS_SHARED_CREDENTIALS_FILE": "/etc/c"}, files)[1] == Credentials("K", "S")


def test_settings_missing_profile() -> None:
    with pytest.raises(CacheError, match="AWS profile 'nope' is not in"):
        resolve({"AWS_PROFILE": "nope"}, {CONFIG: "[default]\nregion = x\n"})


def test_settings_profile_that_runs_something() -> None:
    files = {CONFIG: "[profile sso]\nsso_session = corp\nregion = eu-west-1\n"}
    with pytest.raises(CacheError, match="export-credentials --profile sso") as caught:
        resolve({"AWS_PROFILE": "sso"}, files)
    assert "\n" not in str(caught.value)


def test_credentials_are_never_shown_nor_pickled() -> None:
    creds = Credentials("AKIDEXAMPLE", "SECRETEXAMPLE", "TOKENEXAMPLE")
    assert "EXAMPLE" not in repr(creds)
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(creds)


def test_endpoint_shown_without_user_and_password() -> None:
    settings = Settings("http://user:pass@host:9000/", "us-east-1", "")
    assert settings.shown_endpoint() == "http://host:9000/"
    assert Settings("", "eu-west-1", "").shown_endpoint() == "AWS S3 (eu-west-1)"


# -- the optional extra ------------------------------------------------------------------------

WITHOUT_OBSTORE = """
import sys
sys.modules["obstore"] = None  # as if not installed
import taskproc
from taskproc.store._bucket import open_bucket
try:
    open_bucket("s3://some-bucket/p")
except taskproc.CacheError as exc:
    print(exc)
"""


def test_without_obstore_taskproc_imports_and_a_bucket_names_the_extra() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_OBSTORE], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "s3://some-bucket/p: a cache in a bucket needs obstore: pip install 'taskproc[s3]'"
    )


def test_import_taskproc_does_not_load_obstore() -> None:
    code = "import sys, taskproc, taskproc.store; print('obstore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# -- each operation, on SeaweedFS ----------------------------------------------------------------


@pytest.mark.s3
def test_put_get_head_delete(bucket: Any) -> None:
    assert bucket.get("a/x") is None
    assert bucket.head("a/x") is None
    etag = bucket.put("a/x", b"hello")
    assert etag.startswith('"')
    assert bucket.get("a/x") == Blob(b"hello", etag, 5)
    info = bucket.head("a/x")
    assert (info.key, info.size, info.etag) == ("a/x", 5, etag)
    etag2 = bucket.put("a/x", b"hello again")
    assert etag2 != etag
    assert bucket.get("a/x").data == b"hello again"
    bucket.delete("a/x")
    assert bucket.get("a/x") is None
    bucket.delete("a/x")  # nothing there: fine


@pytest.mark.s3
def test_get_with_etag_reads_that_version_or_none(bucket: Any) -> None:
    old = bucket.put("k", b"old")
    assert bucket.get("k", etag=old).data == b"old"
    bucket.put("k", b"new")
    assert bucket.get("k", etag=old) is None
    assert bucket.get_range("k", 0, 2, etag=old) is None


@pytest.mark.s3
def test_get_range(bucket: Any) -> None:
    etag = bucket.put("r", b"0123456789")
    assert bucket.get_range("r", 2, 5) == Blob(b"234", etag, 10)
    assert bucket.get_range("r", 0, 100) == Blob(b"0123456789", etag, 10)
    assert bucket.get_range("nothing", 0, 10) is None
    empty = bucket.put("empty", b"")
    assert bucket.get_range("empty", 0, 10) == Blob(b"", empty, 0)
    with pytest.raises(ValueError, match="empty"):
        bucket.get_range("r", 5, 5)


@pytest.mark.s3
def test_put_if_absent(bucket: Any) -> None:
    etag = bucket.put_if_absent("c", b"first")
    assert etag
    assert bucket.put_if_absent("c", b"second") is None
    assert bucket.get("c") == Blob(b"first", etag, 5)


@pytest.mark.s3
def test_put_if_match(bucket: Any) -> None:
    etag = bucket.put("m", b"v1")
    etag2 = bucket.put_if_match("m", b"v2", etag)
    assert etag2 and etag2 != etag
    assert bucket.put_if_match("m", b"v3", etag) is None  # stale ETag
    assert bucket.get("m").data == b"v2"
    assert bucket.put_if_match("gone", b"v", etag2) is None  # nothing to replace
    assert bucket.get("gone") is None
    with pytest.raises(ValueError, match="ETag"):
        bucket.put_if_match("m", b"v", "")


@pytest.mark.s3
def test_list_pages_and_folders(bucket: Any) -> None:
    keys = [f"task.A/results/{i:04d}" for i in range(1100)] + ["task.B/results/x", "top"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: bucket.put(k, k.encode()), keys))
    pages = list(bucket.list_pages("task.A"))
    assert [len(page) for page in pages] == [1000, 100]  # a LIST request's page at a time
    listed = [info for page in pages for info in page]
    assert [i.key for i in listed] == sorted(keys[:1100])  # in key order
    assert all(i.size == len(i.key) and i.etag.startswith('"') for i in listed)
    assert len([i for page in bucket.list_pages() for i in page]) == len(keys)
    assert bucket.list_folders() == ["task.A", "task.B"]
    assert bucket.list_folders("task.B") == ["task.B/results"]
    bucket.delete_many(keys)
    assert list(bucket.list_pages()) in ([], [[]])


@pytest.mark.s3
def test_get_many(bucket: Any) -> None:
    keys = [f"rec/{i}" for i in range(200)]
    etags = {k: bucket.put(k, k.encode() * 100) for k in keys}
    bucket.put("rec/empty", b"")
    wanted = [*keys, "rec/missing", "rec/empty"]
    whole = bucket.get_many(wanted)
    assert [b.data if b else None for b in whole] == [
        *(k.encode() * 100 for k in keys),
        None,
        b"",
    ]
    heads = bucket.get_many(wanted, first=8)
    assert [b.data if b else None for b in heads] == [
        *((k.encode() * 100)[:8] for k in keys),
        None,
        b"",
    ]
    assert [b.etag for b in heads[:200]] == [etags[k] for k in keys]
    assert [b.size for b in heads[:200]] == [len(k) * 100 for k in keys]
    assert bucket.get_many([]) == []


@pytest.mark.s3
def test_get_many_inside_a_running_event_loop(bucket: Any) -> None:
    import asyncio

    bucket.put("loop", b"x")

    async def main() -> list[Any]:
        return list(bucket.get_many(["loop"]))

    assert asyncio.run(main())[0].data == b"x"


@pytest.mark.s3
def test_upload_and_read_stream(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import taskproc.store._bucket as module

    monkeypatch.setattr(module, "READ_CHUNK", 3 * 1024 * 1024)
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with bucket.upload("big") as up:
        for _ in range(20):
            up.write(chunk)
    assert up.size == 20 * len(chunk)
    info = bucket.head("big")
    assert (info.size, info.etag) == (up.size, up.etag)
    assert "-" in up.etag  # a multipart upload's ETag: parts were sent as they filled
    pieces = list(bucket.read_stream("big"))
    assert len(pieces) == 7  # 20 MiB in ranged requests of 3 MiB
    assert b"".join(pieces) == chunk * 20


@pytest.mark.s3
def test_read_stream_never_mixes_versions(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import taskproc.store._bucket as module

    monkeypatch.setattr(module, "READ_CHUNK", 1024)
    bucket.put("v", b"a" * 4096)
    stream = bucket.read_stream("v")
    assert next(stream) == b"a" * 1024
    bucket.put("v", b"b" * 4096)
    with pytest.raises(FileNotFoundError, match="changed while being read"):
        list(stream)
    with pytest.raises(FileNotFoundError):
        list(bucket.read_stream("nothing"))


@pytest.mark.s3
def test_prefix_keeps_buckets_apart(bucket: Any) -> None:
    other = open_bucket(f"{bucket.url}/inner")
    other.put("k", b"inner")
    assert bucket.get("inner/k").data == b"inner"
    assert [i.key for page in other.list_pages() for i in page] == ["k"]


@pytest.mark.s3
def test_a_bucket_pickles_without_credentials(bucket: Any, s3_server: Any) -> None:
    data = pickle.dumps(bucket)
    assert s3_server.secret_access_key.encode() not in data
    assert s3_server.access_key_id.encode() not in data
    bucket.put("p", b"pickled")
    assert pickle.loads(data).get("p").data == b"pickled"  # credentials from the environment


@pytest.mark.s3
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_worker_process_reads_its_own_credentials(bucket: Any, method: str) -> None:
    import multiprocessing

    context = multiprocessing.get_context(method)
    bucket.put("w", b"from the runner")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        assert pool.submit(_read, bucket, "w").result(timeout=60) == b"from the runner"


FORKED_FIRST = """
import concurrent.futures, multiprocessing, sys
sys.path.insert(0, sys.argv[2])
from test_bucket import _read
from taskproc.store._bucket import open_bucket
bucket = open_bucket(sys.argv[1])  # made, not used: no client yet
context = multiprocessing.get_context("fork")
with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
    pool.submit(int).result()  # the workers fork now, before the client exists
    bucket.put("w", b"forked first")
    print(pool.submit(_read, bucket, "w").result(timeout=60).decode())
"""


@pytest.mark.s3
def test_a_pool_forked_before_the_client_was_used_works(bucket: Any) -> None:
    """What taskproc does with its own fork pools: workers start before anything else."""
    proc = subprocess.run(
        [sys.executable, "-c", FORKED_FIRST, str(bucket.url), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "forked first", proc.stderr


@pytest.mark.s3
def test_a_process_forked_after_the_client_was_used_is_told_at_once(bucket: Any) -> None:
    import os
    import signal

    bucket.put("f", b"x")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: obstore would hang here; the guard answers at once
        signal.alarm(20)  # a hang ends the child, and the test fails on its empty answer
        os.close(read)
        try:
            bucket.get("f")
            outcome = "no error"
        except CacheError as exc:
            outcome = str(exc)
        except BaseException as exc:  # noqa: BLE001
            outcome = repr(exc)
        os.write(write, outcome.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    assert outcome == (
        f"{bucket.url}: this process was forked from one that had already used the bucket "
        "client, which cannot work across fork (its threads stay behind); start worker "
        "processes before the bucket is opened, or with the 'spawn' or 'forkserver' start method"
    )


def _read(bucket: Any, key: str) -> bytes:
    return bytes(bucket.get(key).data)


# -- errors: one line, naming the bucket or the endpoint, never a credential, within a minute ----


def _failure(url: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, float]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    with pytest.raises(CacheError) as caught:
        check_bucket(open_bucket(url))
    message = str(caught.value)
    assert "\n" not in message
    assert env["AWS_SECRET_ACCESS_KEY"] not in message
    assert env["AWS_ACCESS_KEY_ID"] not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    return message, time.monotonic() - started


@pytest.mark.s3
def test_missing_bucket(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    message, took = _failure("s3://no-such-bucket-here/p", s3_server.env(), monkeypatch)
    assert message == (
        f"s3://no-such-bucket-here/p at {s3_server.endpoint}: bucket 'no-such-bucket-here' "
        "does not exist; create it first (taskproc never creates a bucket)"
    )
    assert took < 60
    # and writing to it does not make it
    with pytest.raises(CacheError, match="does not exist"):
        open_bucket("s3://no-such-bucket-here/p").put("k", b"x")
    with pytest.raises(CacheError, match="does not exist"):
        check_bucket(open_bucket("s3://no-such-bucket-here/p"))
    with pytest.raises(CacheError, match="does not exist"):
        open_bucket("s3://no-such-bucket-here/p").get("k")


@pytest.mark.s3
@pytest.mark.parametrize("wrong", ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"])
def test_wrong_credentials(s3_server: Any, monkeypatch: pytest.MonkeyPatch, wrong: str) -> None:
    env = {**s3_server.env(), wrong: "wrong-" + s3_server.env()[wrong][::-1]}
    message, took = _failure(f"s3://{s3_server.bucket}/p", env, monkeypatch)
    assert message.startswith(f"s3://{s3_server.bucket}/p at {s3_server.endpoint}: ")
    assert "the server refused the credentials" in message
    assert s3_server.secret_access_key not in message
    assert took < 60


def test_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("obstore")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "AKIDCLOSEDPORT",
        "AWS_SECRET_ACCESS_KEY": "SECRETCLOSEDPORT",
        "AWS_REGION": "us-east-1",
    }
    message, took = _failure("s3://some-bucket/p", env, monkeypatch)
    assert message == (
        f"s3://some-bucket/p at http://127.0.0.1:{port}: no answer from the endpoint "
        "(cannot connect); check AWS_ENDPOINT_URL and that the server is up"
    )
    assert took < 60


def test_endpoint_that_accepts_and_never_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("obstore")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # connections complete in the kernel; nothing ever answers
        port = listener.getsockname()[1]
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "AKIDSILENT",
            "AWS_SECRET_ACCESS_KEY": "SECRETSILENT",
            "AWS_REGION": "us-east-1",
        }
        message, took = _failure("s3://some-bucket/p", env, monkeypatch)
    assert message == (
        f"s3://some-bucket/p at http://127.0.0.1:{port}: no answer from the endpoint "
        "(timed out); check AWS_ENDPOINT_URL and that the server is up"
    )
    assert took < 60


def test_a_bug_is_not_dressed_as_a_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("obstore")
    import obstore

    bucket = open_bucket("s3://some-bucket/p", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(obstore, "put", broken)
    with pytest.raises(TypeError, match="a bug"):
        bucket.put("k", b"x")
