"""The check that a server honours conditional writes: SeaweedFS passes it; a server that accepts
the conditions and ignores them (as in seaweedfs #8800, minio #21526) is refused in one line."""

from __future__ import annotations

from typing import Any

import pytest

from taskproc.errors import CacheError
from taskproc.store._bucket import PROBE_PREFIX, check_conditional_writes, open_bucket

pytest.importorskip("obstore", reason="obstore is not installed (pip install 'taskproc[s3]')")


@pytest.mark.s3
def test_seaweedfs_honours_conditional_writes(bucket: Any) -> None:
    check_conditional_writes(bucket)
    # the probe cleans up after itself
    assert [i for page in bucket.list_pages() for i in page] == []


@pytest.mark.s3
def test_the_probe_keeps_to_its_own_keys(bucket: Any) -> None:
    bucket.put("task/results/x", b"a result")
    check_conditional_writes(bucket)
    assert [i.key for page in bucket.list_pages() for i in page] == ["task/results/x"]
    assert PROBE_PREFIX.startswith(".taskproc/")


def test_a_server_that_ignores_conditions_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3server import IgnoringServer

    with IgnoringServer() as server:
        env = {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": "AKIDIGNORING",
            "AWS_SECRET_ACCESS_KEY": "SECRETIGNORING",
            "AWS_REGION": "us-east-1",
        }
        bucket = open_bucket("s3://ignoring/cache", env)
        bucket.put("k", b"v")  # it works as a plain store
        assert bucket.get("k").data == b"v"
        with pytest.raises(CacheError) as caught:
            check_conditional_writes(bucket)
    message = str(caught.value)
    assert message == (
        f"s3://ignoring/cache at {server.endpoint}: the server does not honour conditional "
        "writes (If-None-Match: * replaced an existing object); taskproc needs them to keep "
        "runners apart: use one that does (AWS S3, MinIO, Ceph RGW, SeaweedFS 4.x, R2, ...)"
    )
    assert "SECRETIGNORING" not in message and "AKIDIGNORING" not in message


class _HalfHonouring:
    """A bucket whose server honours If-None-Match but ignores If-Match."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.url, self.settings = inner.url, inner.settings

    def put_if_match(self, key: str, data: bytes, etag: str) -> str | None:
        return self._inner.put(key, data)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.s3
def test_a_server_that_ignores_if_match_is_refused(bucket: Any) -> None:
    with pytest.raises(CacheError, match=r"If-Match with a wrong ETag replaced the object"):
        check_conditional_writes(_HalfHonouring(bucket))  # type: ignore[arg-type]
    assert [i for page in bucket.list_pages() for i in page] == []
