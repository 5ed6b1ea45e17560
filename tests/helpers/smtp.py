"""A real SMTP server on 127.0.0.1 (aiosmtpd) whose inbox the test reads back, parsed."""

from __future__ import annotations

import threading
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from tests.conftest import need

try:
    from aiosmtpd.controller import Controller
except ImportError:  # pragma: no cover - the test extra installs it
    Controller = None  # type: ignore[assignment,misc]

__all__ = ["Inbox", "SmtpServer"]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK queued"

    def snapshot(self) -> list[EmailMessage]:
        """The messages received so far (a copy: the server thread may append meanwhile)."""
        with self.lock:
            return list(self.messages)


class SmtpServer:
    def __init__(self, port: int) -> None:
        need(Controller is not None, "aiosmtpd is not installed")
        self.port = port
        self.inbox = Inbox()
        self.controller: Any = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, ready_timeout=5)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
