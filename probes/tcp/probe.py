"""TCP probe: the port accepts connections and, optionally, the service answers correctly.

Typical uses: an HL7 MLLP listener (send a frame, expect an ACK containing ``MSA|AA``),
a PACS/DICOM or LIS port being open, an SMTP or FTP banner.

``send`` and ``expect`` take Python-style escapes (``\\x0b``, ``\\r``, ``\\n``, ``\\\\``); each
escape becomes exactly that byte, and any other non-ASCII character is sent as UTF-8.
``send_hex`` takes the request as hex digits (spaces allowed) for binary protocols.
``expect_regex`` is matched against the reply decoded as latin-1, so every byte is one
character and ``\\x06`` matches the byte 0x06.

Modes: nothing to send or expect -> connect only; ``expect`` alone -> read a banner;
``send`` alone -> any reply counts; ``send`` + ``expect`` -> request/reply.
Latency limits apply to the whole check (connect plus exchange). At most 64 KiB of reply
is read. Name resolution (getaddrinfo) cannot be interrupted and is outside the budget.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any, ClassVar

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch
from probes.boundary import run_guarded
from probes.tcp.settings import Settings
from probes.thresholds import Threshold
from probes.values import hostport

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAX_REPLY_BYTES",
    "Probe",
    "describe_connect_error",
    "fmt_ms",
    "hostport",
    "open_connection",
]

# The probe judges its own latency limits; generic rules on top would judge twice.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {}

MAX_REPLY_BYTES = 64 * 1024
_EXCERPT_BYTES = 200


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f}" if ms < 10 else f"{ms:.0f}"


def open_connection(host: str, port: int, deadline: float) -> socket.socket:
    """Connect to the first address that answers before `deadline` (time.monotonic()).

    Unlike socket.create_connection, each further address only gets the time that is left,
    so a name with several dead addresses cannot multiply the budget.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError | None = None
    for family, kind, proto, _, addr in infos:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    if last is None:
        raise TimeoutError("no time left to connect")
    raise last


def describe_connect_error(exc: OSError, host: str, port: int, timeout_s: float) -> str:
    """One line for a failure of open_connection(); never includes anything but host and port."""
    where = hostport(host, port)
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed for {host}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, TimeoutError):
        return f"no connection to {where} within {timeout_s:.1f} s"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot connect to {where}: {reason[:1].lower()}{reason[1:]}"


def _excerpt(data: bytes | bytearray) -> str:
    # repr-style escapes keep control bytes (MLLP framing) visible and the text one line.
    return repr(bytes(data[:_EXCERPT_BYTES]))[2:-1]


class Probe:
    kind: ClassVar[str] = "tcp"

    __slots__ = ("settings", "_send", "_expect", "_regex", "_expect_label", "_connect_only")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        self._send = s.request()
        self._expect = s.expected()
        self._regex: re.Pattern[str] | None = re.compile(s.expect_regex) if s.expect_regex else None
        label = s.expect if s.expect is not None else s.expect_regex
        self._expect_label = label if label is None or len(label) <= 40 else label[:37] + "..."
        self._connect_only = self._send is None and label is None

    def run(self, ctx: ProbeContext) -> CheckResult:
        return run_guarded(ctx, "probe error", lambda sw: self._run(ctx, sw))

    def _run(self, ctx: ProbeContext, sw: Stopwatch) -> CheckResult:
        s = self.settings
        t0 = time.monotonic()
        deadline = t0 + ctx.timeout_s
        details: dict[str, Any] = {"host": s.host, "port": s.port}
        try:
            sock = open_connection(s.host, s.port, deadline)
        except OSError as exc:
            summary = describe_connect_error(exc, s.host, s.port, ctx.timeout_s)
            return sw.result(Status.CRIT, summary, details=details)
        t_conn = time.monotonic()
        connect_ms = (t_conn - t0) * 1000.0
        metrics = [Metric("connect_ms", round(connect_ms, 3), "ms")]
        if self._connect_only:
            sock.close()
            return self._judge(
                sw, metrics, details, f"port {s.port} open, connected in {fmt_ms(connect_ms)} ms", t_conn - t0
            )
        try:
            reply, ended = self._exchange(sock, deadline)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return sw.result(
                Status.CRIT,
                f"connection error after connect: {reason[:1].lower()}{reason[1:]}",
                metrics,
                details,
            )
        finally:
            sock.close()
        t_end = time.monotonic()
        details["received_bytes"] = len(reply)
        if ended:
            details["reply_excerpt"] = _excerpt(reply)
            return sw.result(Status.CRIT, self._failure(ended, len(reply), ctx.timeout_s), metrics, details)
        response_ms = (t_end - t_conn) * 1000.0
        metrics.append(Metric("response_ms", round(response_ms, 3), "ms"))
        what = "expected reply" if self._expect_label is not None else "reply"
        return self._judge(sw, metrics, details, f"{what} in {fmt_ms(response_ms)} ms", t_end - t0)

    def _exchange(self, sock: socket.socket, deadline: float) -> tuple[bytearray, str]:
        """Send, then read until the reply matches. Returns the reply and why reading stopped
        without a match ("timeout", "closed", "full"), or "" when it matched."""
        reply = bytearray()
        try:
            if self._send is not None:
                sock.settimeout(max(deadline - time.monotonic(), 1e-3))
                sock.sendall(self._send)
            while not self._matched(reply):
                if len(reply) >= MAX_REPLY_BYTES:
                    return reply, "full"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return reply, "timeout"
                # Each recv only gets the time left: a server dripping a byte at a time
                # cannot stretch the check past its budget.
                sock.settimeout(remaining)
                chunk = sock.recv(MAX_REPLY_BYTES - len(reply))
                if not chunk:
                    return reply, "closed"
                reply += chunk
        except TimeoutError:
            return reply, "timeout"
        return reply, ""

    def _matched(self, reply: bytearray) -> bool:
        if self._expect is not None:
            return self._expect in reply
        if self._regex is not None:
            return bool(reply) and self._regex.search(reply.decode("latin-1")) is not None
        return bool(reply)  # send without expect: any reply will do

    def _failure(self, ended: str, n: int, timeout_s: float) -> str:
        if self._expect_label is None:
            if ended == "timeout":
                return f"no reply within {timeout_s:.1f} s"
            return "connection closed without a reply"
        target = f"{'regex' if self._regex is not None else 'expected'} {self._expect_label!r}"
        if ended == "timeout":
            return f"{target} not received within {timeout_s:.1f} s ({n} B received)"
        if ended == "full":
            return f"{target} not found in the first {MAX_REPLY_BYTES // 1024} KiB of the reply"
        return f"{target} not found, connection closed after {n} B"

    def _judge(
        self, sw: Stopwatch, metrics: list[Metric], details: dict[str, Any], summary: str, total_s: float
    ) -> CheckResult:
        s = self.settings
        limits = ((s.latency_crit, Status.CRIT, "critical"), (s.latency_warn, Status.WARN, "warning"))
        for limit, status, word in limits:
            if limit is not None and total_s > limit:
                return sw.result(
                    status, f"{summary}: slower than the {limit * 1000:.0f} ms {word} limit", metrics, details
                )
        return sw.result(Status.OK, summary, metrics, details)
