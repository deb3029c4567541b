"""An HTTP endpoint on loopback that records what the emulator delivers to it."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received: float
    finished: float = 0.0

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name, as HTTP has it."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class Target:
    """Answers each request with the next scripted status (200 once the script runs out),
    after ``delay`` seconds, and keeps every request in ``deliveries``."""

    delay: float = 0.0
    script: collections.deque[int] = field(default_factory=collections.deque)
    deliveries: list[Delivery] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def answer(self, *statuses: int) -> None:
        self.script.extend(statuses)

    def start(self) -> Target:
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = Delivery(
                    self.command, self.path, dict(self.headers.items()), body, time.time()
                )
                with target._lock:
                    target.deliveries.append(delivery)
                    target.in_flight += 1
                    target.most_in_flight = max(target.most_in_flight, target.in_flight)
                    status = target.script.popleft() if target.script else 200
                time.sleep(target.delay)
                with target._lock:
                    target.in_flight -= 1
                delivery.finished = time.time()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the emulator gave up waiting (dispatch deadline)

            do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/work"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
