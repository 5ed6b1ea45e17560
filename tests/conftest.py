"""Shared fixtures. Tests use real servers on 127.0.0.1 and controllable clocks."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip when a local server/tool is missing — but under CI=true, fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], object], timeout: float, what: str, step: float = 0.1) -> object:
    """Poll a condition with a hard limit; fail with `what` if it never holds."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class FakeClock:
    """Wall clock in epoch seconds that only moves when told to."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def smtp() -> Iterator[Any]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives (tests.helpers.smtp)."""
    # Imported here: the helper module imports this one (for `need`).
    from tests.helpers.smtp import SmtpServer

    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()
