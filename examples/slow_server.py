"""A local HTTP server that answers every GET after a delay: a stand-in for a slow web API.

    python examples/slow_server.py --port 8765 --delay 0.1

``GET /<anything>`` answers ``200`` with the path as its body after ``--delay`` seconds; ``GET
/fail/<anything>`` answers ``500``. On exit it prints how many requests it served and the most
it served at once. ``examples/fetch_many.py`` fetches from it; its test starts it in-process
with `serve`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SlowServer(ThreadingHTTPServer):
    """Counts requests per path and the most requests in flight at once."""

    daemon_threads = True
    request_queue_size = 256  # many clients connect at once

    def __init__(self, port: int, delay: float) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.delay = delay
        self.requests: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: SlowServer

    def do_GET(self) -> None:
        server = self.server
        with server._lock:
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            time.sleep(server.delay)
            body = f"{self.path}\n".encode()
            self.send_response(500 if self.path.startswith("/fail/") else 200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with server._lock:
                server.in_flight -= 1
                server.requests[self.path] += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


def serve(port: int = 0, delay: float = 0.1) -> SlowServer:
    """Start a server in a background thread (port 0: any free port); stop it with shutdown()."""
    server = SlowServer(port, delay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description="A local HTTP server that answers slowly.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per request")
    args = parser.parse_args()
    server = SlowServer(args.port, args.delay)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops it like Ctrl-C
    print(f"serving on {server.url} with a delay of {args.delay} s; Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        total = sum(server.requests.values())
        print(f"served {total} requests, at most {server.max_in_flight} at once")


if __name__ == "__main__":
    main()
