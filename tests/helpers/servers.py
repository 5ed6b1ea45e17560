"""Small real servers on 127.0.0.1 for tests: HTTP endpoints that answer, fail or hang."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        path = self.path
        with self.server.lock:
            self.server.hits[path] = self.server.hits.get(path, 0) + 1
        if path.startswith("/hang"):
            # Never answer; give the thread back when the client goes away or after a bound.
            self.server.release.wait(self.server.hang_s)
            return
        if path.startswith("/fail") or (path.startswith("/switch") and not self.server.up):
            # /switch answers as the test sets `srv.up`: an endpoint whose outage the test times.
            self._send(500, b'{"status":"DOWN"}')
            return
        self._send(200, b'{"status":"UP"}')

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def http_server() -> Iterator[Any]:
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.request_queue_size = 512
    srv.hits = {}
    srv.lock = threading.Lock()
    srv.release = threading.Event()
    srv.hang_s = 60.0
    srv.up = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


@contextmanager
def silent_tcp_server() -> Iterator[int]:
    """Accepts connections and never sends a byte (a stalled database or SSH server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        sock.close()


RawHandler = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """Listens on 127.0.0.1:0 and runs `handler(conn, stop)` per connection in a daemon thread:
    for servers that answer byte by byte, drip, stall or speak a non-HTTP protocol."""

    def __init__(self, handler: RawHandler) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.received: list[bytes] = []
        self._handler = handler
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._handler(conn, self.stop)
        except OSError:
            pass  # the client hung up first: expected in timeout tests

    def close(self) -> None:
        self.stop.set()
        self._acceptor.join(2)
        self.sock.close()
        for t in self._threads:
            t.join(2)
        for c in self._conns:
            c.close()


@contextmanager
def raw_servers() -> Iterator[Callable[[RawHandler], RawServer]]:
    """A factory of RawServers, all closed on exit (wrap it in a pytest fixture)."""
    servers: list[RawServer] = []

    def start(handler: RawHandler) -> RawServer:
        server = RawServer(handler)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()
