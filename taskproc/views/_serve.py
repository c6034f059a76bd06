"""``taskproc serve CACHE``: the dashboard's HTTP server (the standard library's), read-only.

Routes (GET only; anything else is 404 or 405)::

    /                     the page (dashboard.html: plain HTML, CSS and JavaScript)
    /api/board            the page's document: task names, graph, failures, runs, history;
                          with an ETag, so a poll that changed nothing is a 304
    /api/status           exactly what ``taskproc status CACHE --json`` prints
    /api/tasks?name=N&page=P[&state=S]   a page of a task name's tasks, failures first
    /api/task?key=NAME/ID                one task: arguments, state, times, links, traceback
    /api/log?key=NAME/ID&stream=stdout|stderr&offset=B   its output from byte B (at most
                          `LOG_CHUNK` bytes, text/plain; offset -1: the last LOG_CHUNK)

Safety: a request names a task only by a key that the last scan found (so a task name is a
name the store listed, never a path), and reaches a file only through the store's location of
that task and its `output_files`; a file whose real path is outside the cache (a symlink) is
404. Every answer carries a Content-Security-Policy that allows the page's own script and
style (by their digests) and requests to this server only, and the page builds its DOM with
``textContent``, so nothing from the cache is ever markup. With the default loopback address,
a request whose Host header names another host is refused (DNS rebinding).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import socket
import stat
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from taskproc.store import OutputFiles, Store
from taskproc.views._board import Board, etag_of

LOG_CHUNK = 64 * 1024
STREAMS = ("stdout", "stderr")
_KEY = re.compile(r"[^/]{1,200}/[A-Za-z0-9_-]{1,64}")


def load_page() -> str:
    return resources.files("taskproc.views").joinpath("dashboard.html").read_text("utf-8")


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_policy(page: str) -> str:
    """The page's Content-Security-Policy: its one inline script and style, by digest;
    requests to this server only; nothing else (no other origin, no frames, no forms)."""
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    return (
        "default-src 'none'; "
        f"script-src {_digest(script[1] if script else '')}; "
        f"style-src {_digest(style[1] if style else '')}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DashboardServer(ThreadingHTTPServer):
    """The server and what its handlers share: the board, the page, the allowed Host names."""

    daemon_threads = True  # a page left open never keeps the command from exiting

    def __init__(self, store: Store, host: str, port: int) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.board = Board(store)
        self.page = load_page().encode()
        self.policy = content_policy(self.page.decode())
        bound = self.server_address[1]
        self.hosts: frozenset[str] | None = None  # None: any Host (not on loopback)
        if is_loopback(host):
            names = {host, "localhost", "127.0.0.1", "[::1]", f"[{host}]"}
            self.hosts = frozenset(f"{n}:{bound}" for n in names) | frozenset(names)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def start(self) -> None:
        self.board.start()

    def stop(self) -> None:
        self.board.stop()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"
    server_version = "taskproc-serve"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per poll on the terminal helps nobody

    def _send(
        self,
        status: int,
        body: bytes,
        kind: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", self.server.policy)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-cache")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_found(self, why: str = "not found") -> None:
        self._send(HTTPStatus.NOT_FOUND, why.encode() + b"\n", "text/plain")

    def _json(self, data: Any, etag: str | None = None) -> None:
        body = json.dumps(data, separators=(",", ":")).encode()
        self._tagged(body, etag or etag_of(body))

    def _tagged(self, body: bytes, etag: str) -> None:
        if etag in (self.headers.get("If-None-Match") or ""):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(HTTPStatus.OK, body, headers={"ETag": etag})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", "text/plain")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_GET(self) -> None:
        hosts = self.server.hosts
        if hosts is not None and self.headers.get("Host", "") not in hosts:
            self._send(HTTPStatus.FORBIDDEN, b"unknown Host\n", "text/plain")
            return
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        board = self.server.board
        board.looked_at()
        route = url.path
        if route in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html")
        elif route == "/api/board":
            body, etag = board.document()
            self._tagged(body, etag)
        elif route == "/api/status":
            body = (json.dumps(board.status(), indent=2) + "\n").encode()
            self._send(HTTPStatus.OK, body)
        elif route == "/api/tasks":
            self._tasks(query)
        elif route == "/api/task":
            found = (
                board.task(query.get("key", "")) if _KEY.fullmatch(query.get("key", "")) else None
            )
            if found is None:
                self._not_found("no such task in the last scan")
            else:
                self._json(found)
        elif route == "/api/log":
            self._log(query)
        elif route == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
        else:
            self._not_found()

    def _tasks(self, query: dict[str, str]) -> None:
        board = self.server.board
        name = query.get("name", "")
        if name not in board.snapshot.by_name:
            self._not_found("no such task name in the last scan")
            return
        try:
            page = max(0, int(query.get("page", "0")))
        except ValueError:
            page = 0
        self._json(board.tasks(name, page, query.get("state") or None))

    def _log(self, query: dict[str, str]) -> None:
        """A piece of a task's output, by byte offset (see the module docstring)."""
        key, stream = query.get("key", ""), query.get("stream", "")
        board = self.server.board
        snap = board.snapshot
        if not _KEY.fullmatch(key) or key not in snap.index or stream not in STREAMS:
            self._not_found("no such task in the last scan")
            return
        entry = snap.entries[snap.index[key]]
        store = board.store
        path = None
        if isinstance(store, OutputFiles):  # a store that keeps output as local files
            files = store.output_files(store.locate(entry.task_name, entry.task_id))
            path = files[STREAMS.index(stream)]
        offset = query.get("offset", "0")
        piece = _read_piece(path, store.root, offset) if path else None
        if piece is None and not (path and os.path.lexists(path)):
            # No local file here (another kind of store, or written on another machine): ask
            # the store. (A file that is here but was refused stays refused.)
            loc = store.locate(entry.task_name, entry.task_id)
            piece = _store_piece(store, loc, stream, offset)
        if piece is None:
            self._not_found("no such output")
            return
        data, start, size = piece
        headers = {
            "X-Log-Size": str(size),
            "X-Log-Offset": str(start),
            "X-Next-Offset": str(start + len(data)),
        }
        self._send(HTTPStatus.OK, data, "text/plain", headers)


def _store_piece(
    store: Store, loc: str, stream: str, offset_text: str
) -> tuple[bytes, int, int] | None:
    """At most LOG_CHUNK bytes of a task's output through the store (`Store.read_output`), for
    a store whose output is not a local file here: from `offset_text` (the start for -1: the
    size is not known, so the page follows the output chunk by chunk), with where they start;
    None if there is none."""
    try:
        offset = max(0, int(offset_text))
    except ValueError:
        return None
    data = store.read_output(loc, stream, offset, LOG_CHUNK)
    if not data and offset == 0:
        return None
    return data, offset, offset + len(data)


def _read_piece(path: str, root: str, offset_text: str) -> tuple[bytes, int, int] | None:
    """At most LOG_CHUNK bytes of `path` from `offset_text` (-1: the last LOG_CHUNK; past the
    end: from the start, the file was rewritten), with where they start and the file's size;
    None if there is no such file inside the cache `root`."""
    try:
        offset = int(offset_text)
    except ValueError:
        return None
    real_root = os.path.realpath(root)
    if not os.path.realpath(path).startswith(real_root + os.sep):
        return None  # a symlink out of the cache
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with open(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        if offset < 0:
            offset = max(0, size - LOG_CHUNK)
        elif offset > size:
            offset = 0
        f.seek(offset)
        return f.read(min(LOG_CHUNK, size - offset)), offset, size


def serve(store: Store, host: str = "127.0.0.1", port: int = 0) -> DashboardServer:
    """A dashboard server of `store` listening on `host` and `port` (0: a free one), its
    scanning thread started; the caller runs `serve_forever` and, at the end, `stop`."""
    server = DashboardServer(store, host, port)
    server.start()
    return server
