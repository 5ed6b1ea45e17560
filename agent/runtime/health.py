"""The agent's own health endpoint (`GET /healthz`), so the agent can be watched like any
other interface — by itself in the example configuration, by an external monitor in production.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sentinel.health")


class ListenError(Exception):
    """The endpoint's address cannot be bound (in use, not on this machine, not permitted).

    Raised before the agent schedules anything; the message is one line naming the address
    and the reason. Not an OSError, so no `except OSError` on the way swallows it."""

    def __init__(self, listen: str, reason: str) -> None:
        self.listen = listen
        self.reason = reason
        super().__init__(f"cannot listen on {listen} (agent.listen): {reason}")


_REASONS = {
    errno.EADDRINUSE: "the address is already in use (another program, or another agent, listens there)",
    errno.EADDRNOTAVAIL: "the address does not belong to this machine",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class HealthServer:
    def __init__(self, listen: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        # Imported here, not above: the CLI imports ListenError without carrying an HTTP server.
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        host, port = parse_listen(listen)
        snap = snapshot

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/healthz":
                    self.send_error(404)
                    return
                data = snap()
                body = json.dumps(data, ensure_ascii=False).encode()
                self.send_response(200 if data.get("status") == "UP" else 503)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # one line per probe every 30 s would drown the log

        ThreadingHTTPServer.daemon_threads = True
        server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
        if ":" in host:

            class Server6(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_class = Server6
        try:
            self.server = server_class((host, port), Handler)
        except socket.gaierror as exc:
            raise ListenError(listen, f"host name not found ({exc.strerror})") from None
        except OSError as exc:
            reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
            raise ListenError(listen, reason) from None
        self.server.timeout = 5
        self._thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
