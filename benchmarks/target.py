"""An HTTP endpoint that answers 200 at once and notes when each request came, a line
each: ``python -m benchmarks.target PORT LOG``. What the emulator delivers to when its own
ceiling is measured, so that nothing behind it slows it down."""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(port: int, log: Path) -> None:
    lock = threading.Lock()
    stamps = log.open("a", buffering=1)  # a line each, written through

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with lock:
                stamps.write(f"{time.time():.6f}\n")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
