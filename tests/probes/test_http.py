"""probes.http against real local servers: plain HTTP, misbehaving peers and TLS.

TLS certificates are generated per test with `cryptography` (a test-only dependency), so
validity periods can be chosen to the second. Without it the TLS tests skip locally and
fail under CI=true.
"""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from probes.base import CheckResult, ProbeContext, Status
from probes.http.probe import MAX_REDIRECTS, Probe, der_not_after, parse_json_path
from probes.http.settings import Settings
from tests.conftest import need
from tests.helpers.probe_contract import assert_kind_contract
from tests.helpers.servers import RawHandler, RawServer, raw_servers

DOC = {
    "status": "UP",
    "db": {"checks": [{"name": "oracle", "ok": True}, {"name": "redis", "ok": False}]},
    "count": 1,
    "note": None,
    "patient-id": "P001",
}


# ------------------------------------------------------------------ servers


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Web

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output readable

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            # Handshake here, in the handler thread, so a failing client cannot block accept().
            self.request.settimeout(5)
            self.request.do_handshake()

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(
            Request(self.command, self.path, dict(self.headers.items()), body, self.client_address[1])
        )
        route, _, arg = self.path.lstrip("/").partition("?")[0].partition("/")
        getattr(self, f"route_{route.replace('-', '_')}", self.route_missing)(arg)

    do_POST = do_PUT = do_HEAD = do_OPTIONS = do_GET

    def reply(
        self, code: int, body: bytes | str, ctype: str = "text/plain; charset=utf-8", **extra: str
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def route_missing(self, arg: str) -> None:
        self.reply(404, "no such route")

    def route_ok(self, arg: str) -> None:
        self.reply(200, "service status: UP")

    def route_status(self, arg: str) -> None:
        self.reply(int(arg), f"status {arg} from the server")

    def route_json(self, arg: str) -> None:
        self.reply(200, json.dumps(DOC), "application/json")

    def route_gbk(self, arg: str) -> None:
        self.reply(200, "系统状态：正常".encode("gbk"), "text/html")  # no charset, as old HIS pages do

    def route_slow(self, arg: str) -> None:
        time.sleep(int(arg) / 1000)  # the controlled server-side delay
        self.reply(200, "slow but UP")

    def route_big(self, arg: str) -> None:
        self.reply(200, "a" * int(arg) + "TAIL")

    def route_echo_auth(self, arg: str) -> None:
        self.reply(200, f"you sent: {self.headers.get('Authorization')} and nothing else")

    def route_auth(self, arg: str) -> None:
        good = "Basic " + base64.b64encode(b"nurse:Pa55-word").decode()
        if self.headers.get("Authorization") == good:
            self.reply(200, "welcome")
        else:
            self.reply(401, "unauthorized", WWW_Authenticate='Basic realm="his"')

    def route_redirect(self, arg: str) -> None:
        n = int(arg)
        if n == 0:
            self.reply(200, "landed")
        else:
            self.reply(302, "", Location=f"/redirect/{n - 1}")

    def route_loop(self, arg: str) -> None:
        self.reply(302, "", Location="/loop/")

    def route_see_other(self, arg: str) -> None:
        self.reply(303, "", Location="/ok")

    def route_elsewhere(self, arg: str) -> None:
        self.reply(302, "", Location=f"http://127.0.0.1:{arg}/echo-auth")


class Web(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[Request] = []
        self.port: int = self.server_address[1]

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # TLS tests abort handshakes on purpose


@pytest.fixture
def start_web() -> Iterator[Callable[..., Web]]:
    running: list[tuple[Web, threading.Thread]] = []

    def start(tls: tuple[Path, Path] | None = None) -> Web:
        web = Web()
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            web.socket = ctx.wrap_socket(web.socket, server_side=True, do_handshake_on_connect=False)
        t = threading.Thread(target=web.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        running.append((web, t))
        return web

    yield start
    for web, t in running:
        web.shutdown()
        web.server_close()
        t.join(2)


@pytest.fixture
def web(start_web: Callable[..., Web]) -> Web:
    return start_web()


@pytest.fixture
def serve_raw() -> Iterator[Callable[[RawHandler], RawServer]]:
    with raw_servers() as start:
        yield start


def read_request_head(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


DRIP_FOR_S = 3.0
"""Drip servers stop after this long, so a probe that ignores its budget fails instead of hanging."""


def silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(30)


# ------------------------------------------------------------------ certificates


def make_cert(
    directory: Path, *, days_left: float, days_since_start: float = 1.0
) -> tuple[Path, Path, float]:
    """Self-signed certificate for 127.0.0.1; returns (cert, key, notAfter as epoch seconds)."""
    need(importlib.util.find_spec("cryptography") is not None, "the cryptography package (test extra)")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "his-test")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = datetime.now(UTC)
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=False, encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=days_since_start))
        .not_valid_after(now + timedelta(days=days_left))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    tag = f"{days_left:g}"
    cert_path = directory / f"cert{tag}.pem"
    key_path = directory / f"key{tag}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path, cert.not_valid_after_utc.timestamp()


@pytest.fixture
def tls_web(
    start_web: Callable[..., Web], tmp_path: Path
) -> Callable[[float, float], tuple[Web, Path, float]]:
    def start(days_left: float, days_since_start: float = 1.0) -> tuple[Web, Path, float]:
        cert, key, not_after = make_cert(tmp_path, days_left=days_left, days_since_start=days_since_start)
        return start_web((cert, key)), cert, not_after

    return start


# ------------------------------------------------------------------ helpers


def check(
    settings: dict[str, Any], timeout: float = 2.0, clock: Callable[[], float] = time.time
) -> CheckResult:
    probe = Probe(Settings.model_validate(settings))
    return probe.run(ProbeContext("t", timeout, clock=clock))


def metric(result: CheckResult, name: str) -> float:
    m = result.metric(name)
    assert m is not None, f"metric {name} missing from {result.metrics}"
    return m.value


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ basics


def test_ok_with_metrics_and_request_shape(web: Web) -> None:
    result = check({"url": web.url("/ok")})
    assert result.status is Status.OK
    assert result.summary.startswith("HTTP 200 in ") and result.summary.endswith(" ms")
    assert 0 < metric(result, "latency_ms") < 2000
    assert result.metric("latency_ms").unit == "ms"  # type: ignore[union-attr]
    assert metric(result, "status_code") == 200
    assert metric(result, "size_bytes") == len("service status: UP")
    assert result.metric("size_bytes").unit == "B"  # type: ignore[union-attr]
    assert result.metric("cert_days_left") is None
    assert result.details["url"] == web.url("/ok")
    assert result.details["status_code"] == 200
    [req] = web.requests
    assert (req.method, req.path) == ("GET", "/ok")
    assert req.headers["Connection"] == "close"
    assert req.headers["Host"] == f"127.0.0.1:{web.port}"
    assert req.headers["User-Agent"].startswith("HIS-Sentinel")


def test_every_run_uses_a_fresh_connection(web: Web) -> None:
    probe = Probe(Settings(url=web.url("/ok")))
    for _ in range(3):
        assert probe.run(ProbeContext("t", 2.0)).status is Status.OK
    assert len({r.client_port for r in web.requests}) == 3


def test_unaccepted_status_is_crit_with_excerpt(web: Web) -> None:
    result = check({"url": web.url("/status/500")})
    assert result.status is Status.CRIT
    assert result.summary == "HTTP 500 (expected 200-399)"
    assert metric(result, "status_code") == 500
    assert result.details["body_excerpt"] == "status 500 from the server"


def test_custom_expect_status(web: Web) -> None:
    spec = {"expect_status": ["2xx", 404]}
    assert check({"url": web.url("/status/404"), **spec}).status is Status.OK
    redirect = check({"url": web.url("/status/302"), **spec})
    assert redirect.status is Status.CRIT
    assert redirect.summary == "HTTP 302 (expected 2xx, 404)"
    assert check({"url": web.url("/status/204"), "expect_status": ["200-204"]}).status is Status.OK


def test_head_request_has_no_body(web: Web) -> None:
    result = check({"url": web.url("/ok"), "method": "head"})
    assert result.status is Status.OK
    assert metric(result, "size_bytes") == 0
    assert web.requests[0].method == "HEAD"


# ------------------------------------------------------------------ content assertions


@pytest.mark.parametrize(
    ("extra", "status", "summary_end"),
    [
        ({"keyword": "UP"}, Status.OK, " ms"),
        ({"keyword": "DOWN"}, Status.CRIT, ": keyword 'DOWN' not found"),
        ({"keyword_absent": "ERROR"}, Status.OK, " ms"),
        ({"keyword_absent": "UP"}, Status.CRIT, ": unwanted keyword 'UP' found"),
        ({"regex": r"status: (UP|DEGRADED)$"}, Status.OK, " ms"),
        ({"regex": r"^DOWN"}, Status.CRIT, ": regex '^DOWN' not matched"),
    ],
)
def test_keyword_and_regex(web: Web, extra: dict[str, str], status: Status, summary_end: str) -> None:
    result = check({"url": web.url("/ok"), **extra})
    assert result.status is status
    assert result.summary.startswith("HTTP 200 in ")
    assert result.summary.endswith(summary_end)
    if status is Status.CRIT:
        assert result.details["failed_assertions"] == [summary_end[2:]]
        assert result.details["body_excerpt"] == "service status: UP"
    else:
        assert "failed_assertions" not in result.details


def test_keyword_in_gbk_page_without_charset(web: Web) -> None:
    assert check({"url": web.url("/gbk"), "keyword": "正常"}).status is Status.OK
    assert check({"url": web.url("/gbk"), "keyword": "故障"}).status is Status.CRIT


def test_json_assertions_pass(web: Web) -> None:
    result = check(
        {
            "url": web.url("/json"),
            "json_assertions": [
                {"path": "$.status", "equals": "UP"},
                {"path": "$.db.checks[0].ok", "equals": True},
                {"path": "$.db.checks[-1].name", "equals": "redis"},
                {"path": "$['patient-id']"},
                {"path": "$.note", "equals": None},
                {"path": "$.error", "exists": False},
            ],
        }
    )
    assert result.status is Status.OK, result.summary


def test_json_assertions_fail_with_reasons(web: Web) -> None:
    result = check(
        {
            "url": web.url("/json"),
            "json_assertions": [
                {"path": "$.status", "equals": "DOWN"},
                {"path": "$.db.checks[5].ok"},
                {"path": "$.count", "equals": True},  # JSON 1 is not true
                {"path": "$.status", "exists": False},
                {"path": "$.count", "equals": 1},
            ],
        }
    )
    assert result.status is Status.CRIT
    assert result.details["failed_assertions"] == [
        '$.status is "UP", expected "DOWN"',
        "$.db.checks[5].ok not found",
        "$.count is 1, expected true",
        "$.status is present (expected absent)",
    ]
    assert result.summary.endswith("+1 more")


def test_json_assertion_on_non_json_body(web: Web) -> None:
    result = check({"url": web.url("/ok"), "json_assertions": [{"path": "$.status"}]})
    assert result.status is Status.CRIT
    assert result.summary.endswith(": response is not valid JSON")


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.a.b[0].c", ("a", "b", 0, "c")),
        ("$['a.b'][\"c d\"][-1]", ("a.b", "c d", -1)),
        ("$.检验.结果", ("检验", "结果")),
    ],
)
def test_json_path_subset(path: str, steps: tuple[object, ...]) -> None:
    assert parse_json_path(path) == steps


def _path_text(steps: list[str | int]) -> str:
    out = "$"
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif (
            step and not any(c in step for c in ".[]") and not any(c.isspace() for c in step) and step != "*"
        ):
            out += f".{step}"
        elif "'" not in step:
            out += f"['{step}']"
        else:
            out += f'["{step}"]'
    return out


keys = st.text(max_size=8).filter(lambda k: not ("'" in k and '"' in k))


@given(st.lists(st.one_of(st.integers(-50, 50), keys), max_size=6))
def test_json_path_round_trip(steps: list[str | int]) -> None:
    assert parse_json_path(_path_text(steps)) == tuple(steps)


@pytest.mark.parametrize("path", ["a.b", "$.", "$..a", "$.a[*]", "$.*", "$.a[1:2]", "$[?(@.a)]", "$.a b"])
def test_json_path_outside_the_subset_is_rejected(path: str) -> None:
    with pytest.raises(ValueError, match="JSONPath"):
        parse_json_path(path)


# ------------------------------------------------------------------ requests with bodies and secrets


def test_post_body_content_type_and_headers_reach_the_server(web: Web) -> None:
    envelope = '<?xml version="1.0"?><soap:Envelope><soap:Body><Ping>检验</Ping></soap:Body></soap:Envelope>'
    result = check(
        {
            "url": web.url("/ok?probe=1"),
            "method": "POST",
            "body": envelope,
            "content_type": "text/xml; charset=utf-8",
            "headers": {"SOAPAction": "urn:his:ping", "X-Campus": "east"},
        }
    )
    assert result.status is Status.OK
    [req] = web.requests
    assert (req.method, req.path) == ("POST", "/ok?probe=1")
    assert req.body == envelope.encode("utf-8")
    assert req.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert req.headers["Content-Length"] == str(len(envelope.encode("utf-8")))
    assert req.headers["SOAPAction"] == "urn:his:ping"
    assert req.headers["X-Campus"] == "east"


def test_host_header_override(web: Web) -> None:
    check({"url": web.url("/ok"), "host_header": "his.hospital.local"})
    assert web.requests[0].headers["Host"] == "his.hospital.local"


def test_secret_header_is_sent_but_never_shown(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "Bearer s3cr3t-T0ken-value-4711"
    monkeypatch.setenv("SENTINEL_TEST_TOKEN", token)
    settings = Settings.model_validate(
        {
            "url": web.url("/echo-auth"),
            "secret_headers": {"Authorization": "${SENTINEL_TEST_TOKEN}"},
            "keyword": "never in the page",  # forces a failure so the body excerpt is included
        }
    )
    probe = Probe(settings)
    result = probe.run(ProbeContext("t", 2.0))
    assert web.requests[0].headers["Authorization"] == token
    assert result.status is Status.CRIT
    # The server echoed the token into the body; the excerpt must have it masked.
    assert result.details["body_excerpt"] == "you sent: *** and nothing else"
    for text in (result.summary, repr(result.details), repr(result), repr(settings), repr(probe)):
        assert "s3cr3t" not in text


def test_missing_secret_is_unknown_without_request(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTINEL_TEST_MISSING", raising=False)
    result = check({"url": web.url("/ok"), "secret_headers": {"X-Api-Key": "${SENTINEL_TEST_MISSING}"}})
    assert result.status is Status.UNKNOWN
    assert result.summary == "cannot read secret: environment variable SENTINEL_TEST_MISSING is not set"
    assert web.requests == []


def test_basic_auth(web: Web, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "his-password"
    secret_file.write_text("Pa55-word\n")
    secret_file.chmod(0o600)
    good = check(
        {"url": web.url("/auth"), "basic_auth": {"username": "nurse", "password": f"file:{secret_file}"}}
    )
    assert good.status is Status.OK, good.summary
    expected = "Basic " + base64.b64encode(b"nurse:Pa55-word").decode()
    assert web.requests[0].headers["Authorization"] == expected

    monkeypatch.setenv("SENTINEL_TEST_PW", "wrong-Pa55")
    bad = check(
        {"url": web.url("/auth"), "basic_auth": {"username": "nurse", "password": "${SENTINEL_TEST_PW}"}}
    )
    assert bad.status is Status.CRIT
    assert bad.summary == "HTTP 401 (expected 200-399)"
    assert "wrong-Pa55" not in repr(bad)


# ------------------------------------------------------------------ network failures and the time budget


def test_refused_port_is_crit() -> None:
    port = closed_port()
    t0 = time.monotonic()
    result = check({"url": f"http://127.0.0.1:{port}/health"})
    assert time.monotonic() - t0 < 1.0
    assert result.status is Status.CRIT
    assert result.summary == f"connection refused by 127.0.0.1:{port}"
    assert result.metrics == ()


def test_server_that_never_answers_is_crit_within_timeout(
    serve_raw: Callable[[RawHandler], RawServer],
) -> None:
    server = serve_raw(silent)
    t0 = time.monotonic()
    result = check({"url": f"http://127.0.0.1:{server.port}/"}, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 1.0 + 1.5
    assert result.status is Status.CRIT
    assert result.summary == "no answer within 1.0 s"


def test_headers_dripping_byte_by_byte_stop_at_deadline(serve_raw: Callable[[RawHandler], RawServer]) -> None:
    # Each byte arrives well within any per-read timeout; only a total budget ends this.
    def drip_headers(conn: socket.socket, stop: threading.Event) -> None:
        read_request_head(conn)
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"z" * 10_000
        end = time.monotonic() + DRIP_FOR_S
        for byte in head:
            if stop.is_set() or time.monotonic() > end:
                stop.wait(DRIP_FOR_S)  # then hold the connection open, silent
                return
            conn.sendall(bytes([byte]))
            stop.wait(0.02)

    server = serve_raw(drip_headers)
    t0 = time.monotonic()
    result = check({"url": f"http://127.0.0.1:{server.port}/"}, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 1.0 + 1.5
    assert result.status is Status.CRIT
    assert result.summary == "no answer within 1.0 s"


def test_slow_drip_body_stops_at_deadline(serve_raw: Callable[[RawHandler], RawServer]) -> None:
    def drip_body(conn: socket.socket, stop: threading.Event) -> None:
        read_request_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
        end = time.monotonic() + DRIP_FOR_S
        while not stop.is_set() and time.monotonic() < end:
            conn.sendall(b"x")
            stop.wait(0.02)
        stop.wait(DRIP_FOR_S)

    server = serve_raw(drip_body)
    t0 = time.monotonic()
    result = check({"url": f"http://127.0.0.1:{server.port}/", "keyword": "x"}, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 1.0 + 1.5
    assert result.status is Status.CRIT
    assert result.summary.startswith("response body incomplete after 1.0 s (")
    received = int(result.summary.split("(")[1].split(" ")[0])
    assert 5 < received < 100


CHUNKED_OK = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nUP!\r\n2\r\n:)\r\n0\r\n\r\n"
CHUNKED_CUT = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nUP"
LENGTH_CUT = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nUP"
TLS_ALERT = b"\x15\x03\x01\x00\x02\x02\x28"


@pytest.mark.parametrize(
    ("response", "status", "summary"),
    [
        (CHUNKED_OK, Status.OK, ""),
        (b"HTTP/1.0 200 OK\r\n\r\nUP until the server closes", Status.OK, ""),
        (LENGTH_CUT, Status.CRIT, "response body cut short after 2 B (98 B missing)"),
        (CHUNKED_CUT, Status.CRIT, "response body cut short after 2 B"),
        (b"", Status.CRIT, "server closed the connection without answering"),
        (TLS_ALERT, Status.CRIT, "invalid HTTP response: the server answered with TLS; use an https:// URL"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", Status.CRIT, "invalid HTTP response: SSH-2.0-OpenSSH_9.6"),
        (b"\x01\x02garbage\r\n", Status.CRIT, "invalid HTTP response: \\x01\\x02garbage"),
    ],
)
def test_raw_responses(
    serve_raw: Callable[[RawHandler], RawServer], response: bytes, status: Status, summary: str
) -> None:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        read_request_head(conn)
        conn.sendall(response)
        conn.close()

    server = serve_raw(answer)
    result = check({"url": f"http://127.0.0.1:{server.port}/", "keyword": "UP"})
    assert result.status is status, result.summary
    if summary:
        assert result.summary == summary
    else:
        assert result.summary.startswith("HTTP 200 in ")


def test_latency_warn_and_crit_with_a_slow_server(web: Web) -> None:
    warn = check({"url": web.url("/slow/200"), "latency_warn": "50ms"}, timeout=1.0)
    assert warn.status is Status.WARN
    assert metric(warn, "latency_ms") >= 200
    assert warn.summary.startswith("HTTP 200 in ")
    assert warn.summary.endswith(": slower than the 50 ms warning limit")
    crit = check({"url": web.url("/slow/200"), "latency_warn": 0.05, "latency_crit": "0.1s"}, timeout=1.0)
    assert crit.status is Status.CRIT
    assert crit.summary.endswith(": slower than the 100 ms critical limit")
    fast = check({"url": web.url("/ok"), "latency_warn": "0.9s"}, timeout=1.0)
    assert fast.status is Status.OK


def test_body_read_stops_at_max_body_bytes(web: Web) -> None:
    capped = check({"url": web.url("/big/5000"), "max_body_bytes": 1000, "keyword": "TAIL"})
    assert metric(capped, "size_bytes") == 1000
    assert capped.details["body_truncated"] is True
    assert capped.status is Status.CRIT  # TAIL sits beyond the cap, so it was never read
    whole = check({"url": web.url("/big/5000"), "keyword": "TAIL"})
    assert whole.status is Status.OK
    assert metric(whole, "size_bytes") == 5004
    assert "body_truncated" not in whole.details
    exact = check({"url": web.url("/big/996"), "max_body_bytes": 1000})
    assert metric(exact, "size_bytes") == 1000
    assert "body_truncated" not in exact.details


# ------------------------------------------------------------------ redirects


def test_redirect_not_followed_by_default(web: Web) -> None:
    result = check({"url": web.url("/redirect/2")})
    assert result.status is Status.OK
    assert metric(result, "status_code") == 302
    assert len(web.requests) == 1


def test_redirects_followed(web: Web) -> None:
    result = check({"url": web.url("/redirect/3"), "follow_redirects": True, "keyword": "landed"})
    assert result.status is Status.OK, result.summary
    assert metric(result, "status_code") == 200
    assert result.details["redirects"] == 3
    assert result.details["final_url"] == web.url("/redirect/0")
    assert [r.path for r in web.requests] == ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0"]


def test_redirect_loop_is_bounded(web: Web) -> None:
    result = check({"url": web.url("/loop/"), "follow_redirects": True})
    assert result.status is Status.CRIT
    assert result.summary == f"more than {MAX_REDIRECTS} redirects"
    assert len(web.requests) == MAX_REDIRECTS + 1


def test_see_other_after_post_continues_as_get(web: Web) -> None:
    result = check(
        {"url": web.url("/see-other"), "method": "POST", "body": "{}", "content_type": "application/json",
         "follow_redirects": True}
    )  # fmt: skip
    assert result.status is Status.OK
    first, second = web.requests
    assert (first.method, first.body) == ("POST", b"{}")
    assert (second.method, second.path, second.body) == ("GET", "/ok", b"")
    assert "Content-Type" not in second.headers


def test_credentials_are_not_sent_to_another_origin(
    start_web: Callable[..., Web], monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, other = start_web(), start_web()
    monkeypatch.setenv("SENTINEL_TEST_TOKEN", "Bearer only-for-origin")
    result = check(
        {
            "url": origin.url(f"/elsewhere/{other.port}"),
            "secret_headers": {"Authorization": "${SENTINEL_TEST_TOKEN}"},
            "follow_redirects": True,
            "keyword": "you sent: None",
        }
    )
    assert result.status is Status.OK, result.summary
    assert origin.requests[0].headers["Authorization"] == "Bearer only-for-origin"
    assert "Authorization" not in other.requests[0].headers
    assert other.requests[0].headers["Host"] == f"127.0.0.1:{other.port}"


# ------------------------------------------------------------------ TLS


def test_self_signed_certificate_fails_verification(tls_web: Callable[..., tuple[Web, Path, float]]) -> None:
    web, _, _ = tls_web(30)
    result = check({"url": web.url("/ok", "https")})
    assert result.status is Status.CRIT
    assert result.summary.startswith("TLS verification failed: ")
    assert "self-signed" in result.summary or "self signed" in result.summary
    assert web.requests == []


def test_ca_bundle_verifies_and_reports_days_left(tls_web: Callable[..., tuple[Web, Path, float]]) -> None:
    web, cert, not_after = tls_web(60)
    now = time.time()
    result = check({"url": web.url("/ok", "https"), "ca_bundle": str(cert)}, clock=lambda: now)
    assert result.status is Status.OK, result.summary
    assert result.metric("cert_days_left").unit == "d"  # type: ignore[union-attr]
    assert metric(result, "cert_days_left") == pytest.approx((not_after - now) / 86400, abs=0.01)
    assert 59.9 < metric(result, "cert_days_left") <= 60
    assert web.requests[0].path == "/ok"


def test_days_left_follows_the_context_clock(tls_web: Callable[..., tuple[Web, Path, float]]) -> None:
    web, cert, not_after = tls_web(30)
    in_25_days = time.time() + 25 * 86400
    result = check({"url": web.url("/ok", "https"), "ca_bundle": str(cert)}, clock=lambda: in_25_days)
    assert metric(result, "cert_days_left") == pytest.approx((not_after - in_25_days) / 86400, abs=0.01)
    assert result.status is Status.CRIT
    assert result.summary.endswith(": certificate expires in 5 d")


@pytest.mark.parametrize(("days", "status"), [(3, Status.CRIT), (20, Status.WARN), (45, Status.OK)])
def test_certificate_expiry_levels(
    tls_web: Callable[..., tuple[Web, Path, float]], days: int, status: Status
) -> None:
    web, cert, _ = tls_web(days)
    result = check({"url": web.url("/ok", "https"), "ca_bundle": str(cert)})
    assert result.status is status, result.summary
    if status is not Status.OK:
        assert result.summary.endswith(f": certificate expires in {days} d")


def test_expiry_limits_are_configurable(tls_web: Callable[..., tuple[Web, Path, float]]) -> None:
    web, cert, _ = tls_web(20)
    result = check(
        {"url": web.url("/ok", "https"), "ca_bundle": str(cert), "cert_expiry_warn_days": 10,
         "cert_expiry_crit_days": 2}
    )  # fmt: skip
    assert result.status is Status.OK


def test_unverified_tls_still_reports_days_left(tls_web: Callable[..., tuple[Web, Path, float]]) -> None:
    web, _, not_after = tls_web(3)
    now = time.time()
    result = check({"url": web.url("/ok", "https"), "verify_tls": False}, clock=lambda: now)
    assert metric(result, "cert_days_left") == pytest.approx((not_after - now) / 86400, abs=0.01)
    assert result.status is Status.CRIT
    assert result.summary.endswith(": certificate expires in 3 d")


def test_expired_certificate(tls_web: Callable[..., tuple[Web, Path, float]]) -> None:
    web, cert, _ = tls_web(-2, 10)
    verified = check({"url": web.url("/ok", "https"), "ca_bundle": str(cert)})
    assert verified.status is Status.CRIT
    assert verified.summary == "TLS verification failed: certificate has expired"
    unverified = check({"url": web.url("/ok", "https"), "verify_tls": False})
    assert unverified.status is Status.CRIT
    assert unverified.summary.endswith(": certificate expired 2 d ago")


def test_tls_handshake_that_never_finishes(serve_raw: Callable[[RawHandler], RawServer]) -> None:
    server = serve_raw(silent)
    t0 = time.monotonic()
    result = check({"url": f"https://127.0.0.1:{server.port}/"}, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 1.0 + 1.5
    assert result.status is Status.CRIT
    assert result.summary == f"TLS handshake with 127.0.0.1:{server.port} not finished within 1.0 s"


def test_plain_http_to_a_tls_port_is_crit(tls_web: Callable[..., tuple[Web, Path, float]]) -> None:
    web, _, _ = tls_web(30)
    result = check({"url": web.url("/ok")}, timeout=1.0)
    assert result.status is Status.CRIT
    assert result.summary in (
        "server closed the connection without answering",
        "invalid HTTP response: the server answered with TLS; use an https:// URL",
    )


def test_missing_ca_bundle_is_unknown_when_tls_starts(
    tls_web: Callable[..., tuple[Web, Path, float]],
) -> None:
    web, _, _ = tls_web(30)
    result = check({"url": web.url("/ok", "https"), "ca_bundle": "/nonexistent/his-ca.pem"}, timeout=1.0)
    assert result.status is Status.UNKNOWN
    assert result.summary.startswith("cannot load ca_bundle /nonexistent/his-ca.pem")


@pytest.mark.parametrize("year", [2030, 2049, 2050, 2070])
def test_der_not_after_utc_and_generalized_time(tmp_path: Path, year: int) -> None:
    # RFC 5280: UTCTime up to 2049, GeneralizedTime from 2050; both must decode.
    days = (datetime(year, 6, 1, 12, 0, 0, tzinfo=UTC) - datetime.now(UTC)).total_seconds() / 86400
    cert_path, _, not_after = make_cert(tmp_path, days_left=days)
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    assert der_not_after(der) == not_after
    assert der_not_after(der[:40]) is None
    assert der_not_after(b"") is None


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "ftp://his.local/"}, "scheme must be http or https"),
        ({"url": "his.local/health"}, "scheme must be http or https"),
        ({"url": "http:///health"}, "no host"),
        ({"url": "http://his.local:99999/"}, "invalid port"),
        ({"url": "http://nurse:pw@his.local/"}, "credentials in the URL"),
        ({"url": "http://his.local/a b"}, "spaces"),
        ({"url": "http://h/", "expect_status": ["2yy"]}, "invalid expect_status entry '2yy'"),
        ({"url": "http://h/", "expect_status": [700]}, "100 to 599"),
        ({"url": "http://h/", "expect_status": ["300-200"]}, "100 to 599"),
        ({"url": "http://h/", "expect_status": []}, "at least one"),
        ({"url": "http://h/", "method": "DELETE"}, "method"),
        ({"url": "http://h/", "body": "{}"}, "needs method POST or PUT"),
        ({"url": "http://h/", "method": "POST", "content_type": "text/xml"}, "only used together with body"),
        ({"url": "http://h/", "method": "HEAD", "keyword": "x"}, "HEAD responses have no body"),
        ({"url": "http://h/", "headers": {"X-A": "a\r\nX-Injected: 1"}}, "line breaks"),
        ({"url": "http://h/", "headers": {"Bad Name": "x"}}, "invalid header name"),
        ({"url": "http://h/", "headers": {"authorization": "Bearer abc"}}, "secret_headers"),
        ({"url": "http://h/", "headers": {"Host": "a"}, "host_header": "b"}, "host_header"),
        ({"url": "http://h/", "json_assertions": [{"path": "status"}]}, "must start with '$'"),
        ({"url": "http://h/", "json_assertions": [{"path": "$.a", "equals": 1, "exists": False}]}, "equals"),
        ({"url": "http://h/", "regex": "(unclosed"}, "invalid regular expression"),
        ({"url": "http://h/", "latency_warn": "2s", "latency_crit": "1s"}, "latency_warn"),
        ({"url": "http://h/", "latency_warn": "soon"}, "invalid duration"),
        ({"url": "http://h/", "ca_bundle": "certs/ca.pem"}, "absolute path"),
        ({"url": "http://h/", "verify_tls": False, "ca_bundle": "/etc/ca.pem"}, "no effect"),
        (
            {"url": "http://h/", "cert_expiry_warn_days": 5, "cert_expiry_crit_days": 9},
            "cert_expiry_crit_days",
        ),
        ({"url": "http://h/", "max_body_bytes": 0}, "greater than or equal to 1"),
        ({"url": "http://h/", "tiemout": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_rejected(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate(settings)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"url": "http://h/", "secret_headers": {"X-Api-Key": "plain-inline-key"}},
        {"url": "http://h/", "basic_auth": {"username": "nurse", "password": "plain-inline-key"}},
        {"url": "http://h/", "secret_headers": {"X-Api-Key": "file:relative/path-inline-key"}},
    ],
)
def test_inline_secrets_are_rejected_without_echo(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate(settings)
    text = str(info.value)
    assert "inline" in text or "absolute path" in text
    assert "inline-key" not in text


def test_settings_defaults_and_normalisation() -> None:
    s = Settings.model_validate({"url": "https://his.local/health", "method": "post", "body": "{}"})
    assert s.method == "POST"
    assert s.verify_tls is True
    assert (s.cert_expiry_warn_days, s.cert_expiry_crit_days) == (30, 7)
    assert s.max_body_bytes == 1 << 20
    assert s.follow_redirects is False
    with pytest.raises(ValidationError, match="frozen"):
        s.url = "http://other/"  # type: ignore[misc]


def test_registry_contract() -> None:
    spec = assert_kind_contract("http")
    assert spec.settings is Settings and spec.probe is Probe
    # The probe judges its latency limits itself: generic rules would judge the same metric twice.
    assert dict(spec.default_thresholds) == {}
