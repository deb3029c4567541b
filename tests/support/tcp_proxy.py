"""A TCP proxy on loopback that a test breaks on purpose, to see a server go away for real.

Between a client and its server (PostgreSQL, the Cloud Tasks emulator) it forwards bytes
both ways until told otherwise:

* ``refuse()``: every connection is closed and new ones are refused, as when the server
  is down; ``restore()`` listens again on the same port.
* ``black_hole()``: connections are accepted and never answered, as behind a dead network.
* ``lose_answer_to(marker)``: the next request containing ``marker`` reaches the server,
  then its connection is cut before the answer comes back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Literal

Mode = Literal["forward", "refuse", "black_hole"]
# How long the server gets to act on a request whose answer is to be lost.
ANSWER_LOSS_DELAY = 0.5


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.losing_answer = False

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "forward"
        self.answers_lost = 0
        self._marker: bytes | None = None
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._close_listener()
        self._cut_links()

    def refuse(self) -> None:
        self.mode = "refuse"
        self._close_listener()
        self._cut_links()

    def black_hole(self) -> None:
        self.mode = "black_hole"
        self._cut_links()

    def restore(self) -> None:
        previous, self.mode = self.mode, "forward"
        if previous == "refuse":
            self.start()

    def lose_answer_to(self, marker: bytes) -> None:
        self._marker = marker

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # shutting down wakes the thread in accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _cut_links(self) -> None:
        with self._lock:
            links, self._links = self._links, set()
        for link in links:
            link.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refusing
            if self.mode == "black_hole":
                link = _Link(client, None)
                threading.Thread(target=self._swallow, args=(link,), daemon=True).start()
            else:
                try:
                    upstream = socket.create_connection(self.upstream)
                except OSError:
                    client.close()
                    continue
                link = _Link(client, upstream)
                for source, sink, outbound in ((client, upstream, True), (upstream, client, False)):
                    threading.Thread(
                        target=self._pump, args=(link, source, sink, outbound), daemon=True
                    ).start()
            with self._lock:
                self._links.add(link)

    def _swallow(self, link: _Link) -> None:
        try:
            while link.client.recv(65536):
                pass
        except OSError:
            pass

    def _pump(
        self, link: _Link, source: socket.socket, sink: socket.socket, outbound: bool
    ) -> None:
        try:
            while data := source.recv(65536):
                if outbound and self._marker is not None and self._marker in data:
                    self._marker = None
                    link.losing_answer = True
                    threading.Thread(target=self._lose_answer, args=(link,), daemon=True).start()
                if not outbound and link.losing_answer:
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            link.close()

    def _lose_answer(self, link: _Link) -> None:
        time.sleep(ANSWER_LOSS_DELAY)
        self.answers_lost += 1
        link.close()
