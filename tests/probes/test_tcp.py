"""probes.tcp against real local servers: open/closed ports, MLLP-style exchanges, silent peers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pydantic import ValidationError

from probes.base import CheckResult, ProbeContext, Status
from probes.tcp.probe import MAX_REPLY_BYTES, Probe
from probes.tcp.settings import Settings, decode_escapes
from tests.helpers.probe_contract import assert_kind_contract
from tests.helpers.servers import RawHandler, RawServer, raw_servers

MLLP_REQUEST = b"\x0bMSH|^~\\&|SENTINEL|HIS|LIS|LAB|20250101120000||QRY^A19|PING1|P|2.4\r\x1c\r"
MLLP_REQUEST_CONFIG = r"\x0bMSH|^~\\&|SENTINEL|HIS|LIS|LAB|20250101120000||QRY^A19|PING1|P|2.4\r\x1c\r"
ACK_OK = b"\x0bMSH|^~\\&|LIS|LAB|SENTINEL|HIS|20250101120001||ACK|A1|P|2.4\rMSA|AA|PING1\r\x1c\r"
ACK_ERROR = b"\x0bMSH|^~\\&|LIS|LAB|SENTINEL|HIS|20250101120001||ACK|A1|P|2.4\rMSA|AE|PING1\r\x1c\r"


@pytest.fixture
def serve() -> Iterator[Callable[[RawHandler], RawServer]]:
    with raw_servers() as start:
        yield start


def read_frame(conn: socket.socket, end: bytes = b"\x1c\r") -> bytes:
    conn.settimeout(5)
    data = b""
    while end not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def run(settings: dict[str, object], timeout: float = 2.0) -> CheckResult:
    return Probe(Settings.model_validate(settings)).run(ProbeContext("t", timeout))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ connect only


def test_open_port_is_ok_with_connect_time(serve: Callable[[RawHandler], RawServer]) -> None:
    server = serve(lambda conn, stop: None)
    result = run({"host": "127.0.0.1", "port": server.port})
    assert result.status is Status.OK
    assert result.summary.startswith(f"port {server.port} open, connected in ")
    connect = result.metric("connect_ms")
    assert connect is not None and connect.unit == "ms" and 0 <= connect.value < 2000
    assert result.metric("response_ms") is None
    assert result.details["port"] == server.port


def test_closed_port_is_crit_connection_refused() -> None:
    port = closed_port()
    t0 = time.monotonic()
    result = run({"host": "127.0.0.1", "port": port})
    assert time.monotonic() - t0 < 1.0
    assert result.status is Status.CRIT
    assert result.summary == f"connection refused by 127.0.0.1:{port}"
    assert result.metrics == ()


def test_unresolvable_host_is_crit() -> None:
    result = run({"host": "no-such-host.invalid", "port": 80})
    assert result.status is Status.CRIT
    assert result.summary.startswith("DNS lookup failed for no-such-host.invalid")


# ------------------------------------------------------------------ exchanges


def test_mllp_send_and_expect_ack(serve: Callable[[RawHandler], RawServer]) -> None:
    def lis(conn: socket.socket, stop: threading.Event) -> None:
        server.received.append(read_frame(conn))
        conn.sendall(ACK_OK)

    server = serve(lis)
    result = run({"host": "127.0.0.1", "port": server.port, "send": MLLP_REQUEST_CONFIG, "expect": "MSA|AA|"})
    assert server.received == [MLLP_REQUEST]  # escapes became exactly these bytes
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("expected reply in ")
    response = result.metric("response_ms")
    assert response is not None and response.unit == "ms" and response.value >= 0
    assert result.metric("connect_ms") is not None
    assert result.details["received_bytes"] == len(ACK_OK)


def test_mllp_negative_ack_is_crit(serve: Callable[[RawHandler], RawServer]) -> None:
    def lis(conn: socket.socket, stop: threading.Event) -> None:
        read_frame(conn)
        conn.sendall(ACK_ERROR)
        conn.shutdown(socket.SHUT_WR)
        stop.wait(5)

    server = serve(lis)
    result = run({"host": "127.0.0.1", "port": server.port, "send": MLLP_REQUEST_CONFIG, "expect": "MSA|AA|"})
    assert result.status is Status.CRIT
    assert result.summary == f"expected 'MSA|AA|' not found, connection closed after {len(ACK_ERROR)} B"
    assert "MSA|AE|PING1" in result.details["reply_excerpt"]
    assert "\\x0b" in result.details["reply_excerpt"]  # control bytes shown escaped, not raw


def test_expect_regex_and_send_hex(serve: Callable[[RawHandler], RawServer]) -> None:
    def lis(conn: socket.socket, stop: threading.Event) -> None:
        server.received.append(read_frame(conn))
        conn.sendall(ACK_OK)

    server = serve(lis)
    result = run(
        {
            "host": "127.0.0.1",
            "port": server.port,
            "send_hex": MLLP_REQUEST.hex(" "),
            "expect_regex": r"MSA\|A[AC]\|PING\d",
        }
    )
    assert server.received == [MLLP_REQUEST]
    assert result.status is Status.OK, result.summary


def test_expect_regex_not_matched_is_crit(serve: Callable[[RawHandler], RawServer]) -> None:
    def lis(conn: socket.socket, stop: threading.Event) -> None:
        read_frame(conn)
        conn.sendall(ACK_ERROR)
        conn.close()

    server = serve(lis)
    result = run(
        {"host": "127.0.0.1", "port": server.port, "send": MLLP_REQUEST_CONFIG, "expect_regex": r"MSA\|AA"}
    )
    assert result.status is Status.CRIT
    assert result.summary.startswith("regex 'MSA\\\\|AA' not found")


def test_banner_expect_without_send(serve: Callable[[RawHandler], RawServer]) -> None:
    def smtp(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220 mail.hospital.local ESMTP ready\r\n")
        stop.wait(5)

    server = serve(smtp)
    result = run({"host": "127.0.0.1", "port": server.port, "expect": "220 "})
    assert result.status is Status.OK, result.summary
    assert result.metric("response_ms") is not None


def test_expect_split_across_packets(serve: Callable[[RawHandler], RawServer]) -> None:
    def lis(conn: socket.socket, stop: threading.Event) -> None:
        read_frame(conn)
        for piece in (ACK_OK[:40], ACK_OK[40:52], ACK_OK[52:]):
            conn.sendall(piece)
            stop.wait(0.02)

    server = serve(lis)
    result = run(
        {"host": "127.0.0.1", "port": server.port, "send": MLLP_REQUEST_CONFIG, "expect": "MSA|AA|PING1"}
    )
    assert result.status is Status.OK, result.summary


def test_send_without_expect_needs_a_reply(serve: Callable[[RawHandler], RawServer]) -> None:
    def hangs_up(conn: socket.socket, stop: threading.Event) -> None:
        read_frame(conn, end=b"\n")
        conn.close()

    server = serve(hangs_up)
    result = run({"host": "127.0.0.1", "port": server.port, "send": "PING\\r\\n"})
    assert result.status is Status.CRIT
    assert result.summary == "connection closed without a reply"


def test_silent_server_with_expect_is_crit_within_timeout(serve: Callable[[RawHandler], RawServer]) -> None:
    def silent(conn: socket.socket, stop: threading.Event) -> None:
        stop.wait(30)

    server = serve(silent)
    t0 = time.monotonic()
    result = run(
        {"host": "127.0.0.1", "port": server.port, "send": MLLP_REQUEST_CONFIG, "expect": "MSA|AA"}, 1.0
    )
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 1.0 + 1.5
    assert result.status is Status.CRIT
    assert result.summary == "expected 'MSA|AA' not received within 1.0 s (0 B received)"


def test_dripping_server_cannot_stretch_the_budget(serve: Callable[[RawHandler], RawServer]) -> None:
    # One byte every 50 ms: a per-recv timeout would never fire; the total budget must.
    def drip(conn: socket.socket, stop: threading.Event) -> None:
        read_frame(conn)
        end = time.monotonic() + 3.0  # bounded: a probe ignoring its budget fails, not hangs
        while not stop.is_set() and time.monotonic() < end:
            conn.sendall(b"x")
            stop.wait(0.05)
        stop.wait(3.0)

    server = serve(drip)
    t0 = time.monotonic()
    result = run(
        {"host": "127.0.0.1", "port": server.port, "send": MLLP_REQUEST_CONFIG, "expect": "MSA|AA"}, 1.0
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0 + 1.5
    assert result.status is Status.CRIT
    assert "not received within 1.0 s" in result.summary
    assert result.details["received_bytes"] > 5


def test_reply_larger_than_cap_stops_reading(serve: Callable[[RawHandler], RawServer]) -> None:
    def flood(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"y" * (MAX_REPLY_BYTES * 2))
        stop.wait(5)

    server = serve(flood)
    result = run({"host": "127.0.0.1", "port": server.port, "expect": "220"})
    assert result.status is Status.CRIT
    assert "not found in the first 64 KiB" in result.summary
    assert result.details["received_bytes"] == MAX_REPLY_BYTES
    assert len(result.details["reply_excerpt"]) == 200


def test_slow_reply_gives_latency_warn_and_crit(serve: Callable[[RawHandler], RawServer]) -> None:
    def slow(conn: socket.socket, stop: threading.Event) -> None:
        read_frame(conn)
        stop.wait(0.2)
        conn.sendall(ACK_OK)

    server = serve(slow)
    base = {"host": "127.0.0.1", "port": server.port, "send": MLLP_REQUEST_CONFIG, "expect": "MSA|AA"}
    warn = run({**base, "latency_warn": "50ms"}, 1.0)
    assert warn.status is Status.WARN
    assert warn.summary.endswith("slower than the 50 ms warning limit")
    response = warn.metric("response_ms")
    assert response is not None and response.value >= 190
    crit = run({**base, "latency_warn": "50ms", "latency_crit": "100ms"}, 1.0)
    assert crit.status is Status.CRIT
    assert crit.summary.endswith("slower than the 100 ms critical limit")
    relaxed = run({**base, "latency_warn": "0.9s"}, 1.0)
    assert relaxed.status is Status.OK


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\x0bMSH|^~\\&|\r\x1c\r", b"\x0bMSH|^~\\&|\r\x1c\r"),
        ("plain", b"plain"),
        (r"\xff\x00", b"\xff\x00"),
        ("检验", "检验".encode()),
    ],
)
def test_decode_escapes(text: str, expected: bytes) -> None:
    assert decode_escapes(text) == expected


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"host": "127.0.0.1", "port": 0}, "greater than or equal to 1"),
        ({"host": "127.0.0.1", "port": 65536}, "less than or equal to 65535"),
        ({"host": "http://x", "port": 80}, "host name or IP address"),
        ({"host": "h", "port": 1, "send": "a", "send_hex": "61"}, "either send or send_hex"),
        ({"host": "h", "port": 1, "expect": "a", "expect_regex": "a"}, "either expect or expect_regex"),
        ({"host": "h", "port": 1, "send_hex": "0g"}, "pairs of hex digits"),
        ({"host": "h", "port": 1, "send_hex": "abc"}, "pairs of hex digits"),
        ({"host": "h", "port": 1, "send": "trailing\\"}, "invalid escape"),
        ({"host": "h", "port": 1, "send": r"\u4e2d"}, "above \\xff"),
        ({"host": "h", "port": 1, "expect_regex": "(unclosed"}, "invalid regular expression"),
        ({"host": "h", "port": 1, "latency_warn": "2s", "latency_crit": "1s"}, "latency_warn"),
        ({"host": "h", "port": 1, "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_rejected(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate(settings)
    assert message in str(info.value)


def test_registry_contract() -> None:
    spec = assert_kind_contract("tcp")
    assert spec.settings is Settings and spec.probe is Probe
    # The probe judges its latency limits itself: generic rules would judge the same metric twice.
    assert dict(spec.default_thresholds) == {}
