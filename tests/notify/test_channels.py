"""Notification channels against real local servers.

SMTP: a real aiosmtpd server on 127.0.0.1 (plain, STARTTLS with AUTH LOGIN, implicit TLS).
DingTalk, WeCom and webhooks: http.server stand-ins that check what the platforms check —
the DingTalk one recomputes the 加签 signature from the query and answers HTTP 200 with
errcode 310000 when it does not match, as DingTalk does.

Secrets are distinctive strings so a leak into an error, a repr or a log line is caught.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import pickle
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.config.channels import (
    ChannelSettings,
    DingTalkChannel,
    EmailChannel,
    WebhookChannel,
    WeComChannel,
    parse_channel,
)
from agent.config.schema import Model
from agent.notify import TRUNCATION_NOTICE, DeliveryError, Message, preflight, send
from agent.notify.channels import fit_utf8
from agent.notify.dingtalk import MAX_BODY_BYTES, sign
from agent.notify.wecom import MARKDOWN_MAX_BYTES, TEXT_MAX_BYTES
from tests.conftest import free_port, need
from tests.helpers.servers import silent_tcp_server
from tests.probes.test_http import make_cert

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult
except ImportError:  # the SMTP tests skip locally and fail under CI=true (see need())
    Controller = AuthResult = None  # type: ignore[assignment,misc]

# Distinctive secret values: any of them in an error text or log line is a leak.
DT_TOKEN = "dtTOKENq7w6e5r4t3y2u1i0"
DT_SECRET = "SECsignZ9x8c7v6b5n4m3"
WECOM_KEY = "wcKEY-0a9b8c7d-6e5f-4a3b"
SMTP_USER = "monitor"
SMTP_PASS = "pwSMTP-Kq7Lm3Xz9"
HOOK_TOKEN = "Bearer hookTOK-5r4e3w2q1"
ALL_SECRETS = (DT_TOKEN, DT_SECRET, WECOM_KEY, SMTP_PASS, HOOK_TOKEN, "hookTOK-5r4e3w2q1")

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PDF_NAME = "2024年第三季度巡检报告（信息中心）-第一人民医院.pdf"
SUBJECT = "【一级告警】HIS 核心数据库 表空间使用率 97%，请在 10 分钟内响应"


class Notifications(Model):
    channels: dict[str, ChannelSettings]


def message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "subject": SUBJECT,
        "text": "HIS 核心库 USERS 表空间 97%\n已持续 15 分钟",
        "level": 1,
        "headers": {"X-Sentinel-Fault": "F-2024-0042"},
    }
    fields.update(overrides)
    return Message(**fields)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("T_DT_SECRET", DT_SECRET)
    monkeypatch.setenv("T_SMTP_PASS", SMTP_PASS)
    monkeypatch.setenv("T_HOOK_TOKEN", HOOK_TOKEN)
    return monkeypatch


def assert_no_secret(exc: DeliveryError, caplog: pytest.LogCaptureFixture) -> None:
    # Log it the way the outbox would, so the traceback text is checked too.
    logging.getLogger("agent.notify.test").error("delivery failed: %s", exc, exc_info=exc)
    texts = {
        "str": str(exc),
        "repr": repr(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "log": caplog.text,
    }
    for where, text in texts.items():
        for secret in ALL_SECRETS:
            assert secret not in text, f"secret leaked into {where}: {text}"


# ====================================================================== HTTP stand-ins


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    doc: Any


def _expected_sign(ts: str) -> str:
    # Written out here rather than calling agent.notify.dingtalk.sign: an independent check.
    mac = hmac.new(DT_SECRET.encode(), f"{ts}\n{DT_SECRET}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class StandInHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            doc = json.loads(raw.decode("utf-8"))
        except ValueError:
            doc = None
        self.server.seen.append(Seen(parts.path, query, dict(self.headers.items()), raw, doc))
        if parts.path == "/robot/send":
            code, errmsg = self.dingtalk(query, doc)
        elif parts.path == "/cgi-bin/webhook/send":
            code, errmsg = self.wecom(query, doc)
        else:
            code, errmsg = 0, "ok"
        status, body = 200, json.dumps({"errcode": code, "errmsg": errmsg}, ensure_ascii=False).encode()
        if self.server.reply is not None and code == 0:
            status, body = self.server.reply
            body = body.replace(b"{auth}", self.headers.get("Authorization", "").encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def dingtalk(self, query: dict[str, str], doc: Any) -> tuple[int, str]:
        if query.get("access_token") != DT_TOKEN:
            return (300001, "token is not exist")
        if self.server.dingtalk_signed:
            ts = query.get("timestamp", "")
            if not ts.isdigit() or abs(int(ts) - time.time() * 1000) > 3600_000:
                return (310000, "invalid timestamp")
            # parse_qs already percent-decoded the sign; an unencoded '+' would now be a space.
            if query.get("sign") != _expected_sign(ts):
                return (310000, "sign not match, more: [https://ding-doc.dingtalk.com]")
        elif "sign" in query or "timestamp" in query:
            return (400, "unexpected signature")
        if not (
            isinstance(doc, dict)
            and doc.get("msgtype") == "markdown"
            and isinstance(doc.get("markdown", {}).get("title"), str)
            and isinstance(doc["markdown"].get("text"), str)
            and isinstance(doc.get("at", {}).get("atMobiles"), list)
            and isinstance(doc["at"].get("isAtAll"), bool)
        ):
            return (40035, "缺少参数 json")
        if len(self.server.seen[-1].raw) > MAX_BODY_BYTES:
            return (460101, "message too long, exceed 20000 bytes")
        for mobile in doc["at"]["atMobiles"]:
            if f"@{mobile}" not in doc["markdown"]["text"]:
                return (40035, f"@{mobile} missing from text")
        return (0, "ok")

    def wecom(self, query: dict[str, str], doc: Any) -> tuple[int, str]:
        if query.get("key") != WECOM_KEY:
            return (93000, "invalid webhook url, hint: [1700000000]")
        if not isinstance(doc, dict):
            return (40058, "invalid Request Parameter")
        if doc.get("msgtype") == "markdown":
            content = doc.get("markdown", {}).get("content")
            if not isinstance(content, str) or len(content.encode()) > MARKDOWN_MAX_BYTES:
                return (40058, "markdown.content exceed max length 4096")
        elif doc.get("msgtype") == "text":
            text = doc.get("text", {})
            if not isinstance(text.get("content"), str) or len(text["content"].encode()) > TEXT_MAX_BYTES:
                return (40058, "text.content exceed max length 2048")
            mobiles = text.get("mentioned_mobile_list", [])
            if not (isinstance(mobiles, list) and all(isinstance(m, str) for m in mobiles)):
                return (40058, "invalid mentioned_mobile_list")
        else:
            return (40008, "invalid message type")
        return (0, "ok")


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StandInHandler)
        self.seen: list[Seen] = []
        self.reply: tuple[int, bytes] | None = None
        """Answer sent instead of a success (validation still runs first)."""
        self.dingtalk_signed = True
        self.port: int = self.server_address[1]

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # TLS tests abort handshakes on purpose


@pytest.fixture
def start_stand_in() -> Iterator[Callable[..., StandIn]]:
    running: list[tuple[StandIn, threading.Thread]] = []

    def start(tls: tuple[Path, Path] | None = None) -> StandIn:
        srv = StandIn()
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        running.append((srv, t))
        return srv

    yield start
    for srv, t in running:
        srv.shutdown()
        srv.server_close()
        t.join(2)


@pytest.fixture
def stand_in(start_stand_in: Callable[..., StandIn]) -> StandIn:
    return start_stand_in()


def dingtalk(srv: StandIn, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> DingTalkChannel:
    monkeypatch.setenv("T_DT_WEBHOOK", srv.url(f"/robot/send?access_token={DT_TOKEN}"))
    fields = {"type": "dingtalk", "webhook": "${T_DT_WEBHOOK}", "secret": "${T_DT_SECRET}", "timeout": 5}
    # The validated model, as the daemon gets it.
    return DingTalkChannel.model_validate({**fields, **kw})


def wecom(srv: StandIn, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> WeComChannel:
    monkeypatch.setenv("T_WECOM_WEBHOOK", srv.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}"))
    return WeComChannel.model_validate({"type": "wecom", "webhook": "${T_WECOM_WEBHOOK}", "timeout": 5, **kw})


def webhook(url: str, **kw: Any) -> WebhookChannel:
    fields = {
        "type": "webhook",
        "url": url,
        "secret_headers": {"Authorization": "${T_HOOK_TOKEN}"},
        "timeout": 5,
    }
    return WebhookChannel.model_validate({**fields, **kw})


# ====================================================================== SMTP server


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool


@dataclass
class Recorder:
    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    logins: list[tuple[str, bytes]] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # session.ssl is only set by STARTTLS; implicit TLS shows on the transport.
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, tls)
        )
        return "250 2.0.0 Ok: queued as Q123ABC"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> AuthResult:
        self.logins.append((mechanism, auth.login))
        ok = auth.login == SMTP_USER.encode() and auth.password == SMTP_PASS.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


@dataclass
class Smtp:
    port: int
    recorder: Recorder
    cert: Path | None


@pytest.fixture
def start_smtp(tmp_path: Path) -> Iterator[Callable[..., Smtp]]:
    controllers: list[Controller] = []

    def start(mode: str = "plain") -> Smtp:
        need(Controller is not None, "aiosmtpd (test dependency): pip install aiosmtpd")
        recorder = Recorder()
        port = free_port()
        kwargs: dict[str, Any] = {}
        cert = None
        if mode in ("starttls-auth", "ssl"):
            cert, key, _ = make_cert(tmp_path, days_left=30)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            if mode == "ssl":
                kwargs["ssl_context"] = ctx
            else:
                kwargs.update(
                    tls_context=ctx,
                    require_starttls=True,
                    auth_required=True,
                    auth_require_tls=True,
                    authenticator=recorder.authenticate,
                    # Only LOGIN is offered, so the test proves AUTH LOGIN works.
                    auth_exclude_mechanism=["PLAIN"],
                )
        controller = Controller(recorder, hostname="127.0.0.1", port=port, ready_timeout=5, **kwargs)
        controller.start()
        controllers.append(controller)
        return Smtp(port, recorder, cert)

    yield start
    for c in controllers:
        c.stop()


def email_channel(port: int, **kw: Any) -> EmailChannel:
    fields: dict[str, Any] = {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "HIS 监控中心 <monitor@hospital.example>",
        "to": ["张工 <zhang@hospital.example>", "li@hospital.example"],
        "cc": ["ops@vendor.example", "li@hospital.example"],
        "timeout": 5,
    }
    fields.update(kw)
    return EmailChannel.model_validate(fields)


def parse(data: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return parsed


# ====================================================================== message and settings


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"level": 5}, "level"),
        ({"level": True}, "level"),
        ({"subject": "告警\n注入"}, "one line"),
        ({"subject": "  "}, "subject"),
        ({"headers": {"Subject": "x"}}, "set by the channel"),
        ({"headers": {"Bcc": "x@y.z"}}, "set by the channel"),
        ({"headers": {"X-A": "a\r\nBcc: evil@x.y"}}, "line breaks"),
        ({"headers": {"Bad Name": "v"}}, "invalid header name"),
        ({"inline_images": (("logo", "image/png", PNG),)}, "html"),
        ({"html": "<p/>", "inline_images": (("<logo>", "image/png", PNG),)}, "cid"),
        ({"attachments": (("a.pdf", "pdf", PDF),)}, "MIME type"),
        ({"attachments": (("a.pdf", "application/pdf", "text"),)}, "bytes"),
        ({"mention_mobiles": ("张三",)}, "mobile"),
    ],
)
def test_message_rejects_malformed_fields(overrides: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        message(**overrides)


def test_message_is_immutable_and_its_repr_is_short() -> None:
    m = message(attachments=((PDF_NAME, "application/pdf", PDF * 1000),), headers={"Message-ID": "<a@b>"})
    with pytest.raises(TypeError):
        m.headers["X-New"] = "v"  # type: ignore[index]
    assert len(repr(m)) < 400
    assert PDF_NAME in repr(m) and "%PDF" not in repr(m)


def test_delivery_error_survives_pickling() -> None:
    exc = pickle.loads(pickle.dumps(DeliveryError("SMTP 127.0.0.1:25: 451 later", retryable=True)))
    assert (exc.reason, exc.retryable, str(exc)) == ("SMTP 127.0.0.1:25: 451 later", True, exc.reason)
    assert repr(exc) == "DeliveryError('SMTP 127.0.0.1:25: 451 later', retryable=True)"


@pytest.mark.parametrize(
    ("raw", "cls"),
    [
        ({"type": "email", "host": "smtp.h.cn", "sender": "m@h.cn", "to": ["a@h.cn"]}, EmailChannel),
        ({"type": "dingtalk", "webhook": "${X}"}, DingTalkChannel),
        ({"type": "wecom", "webhook": "file:/etc/sentinel/wecom"}, WeComChannel),
        ({"type": "webhook", "url": "https://ops.h.cn/alert"}, WebhookChannel),
    ],
)
def test_channel_settings_union_picks_the_type(raw: dict[str, Any], cls: type) -> None:
    parsed = parse_channel(raw)
    assert type(parsed) is cls
    assert parsed.timeout == 30.0 and parsed.verify_tls is True


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("ssl", 465), ("none", 25)])
def test_email_port_defaults_by_security(security: str, port: int) -> None:
    s = EmailChannel.model_validate(
        {"type": "email", "host": "smtp.h.cn", "security": security, "sender": "m@h.cn", "to": ["a@h.cn"]}
    )
    assert s.port == port
    explicit = s.model_validate({**s.model_dump(), "port": 2525})
    assert explicit.port == 2525


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"type": "email", "host": "h", "sender": "m@h.cn", "to": []}, "at least 1"),
        ({"type": "email", "host": "h", "sender": "not an address", "to": ["a@h.cn"]}, "e-mail address"),
        ({"type": "email", "host": "h", "sender": "a@h.cn, b@h.cn", "to": ["a@h.cn"]}, "exactly one"),
        ({"type": "email", "host": "h", "sender": "m@h.cn", "to": ["张@医院.cn"]}, "ASCII"),
        ({"type": "email", "host": "h", "sender": "m@h.cn", "to": ["a@h.cn"], "username": "u"}, "together"),
        (
            {"type": "email", "host": "h", "sender": "m@h.cn", "to": ["a@h.cn"], "security": "none",
             "username": "u", "password": "${P}"},
            "clear text",
        ),
        ({"type": "dingtalk", "webhook": "${X}", "verify_tls": False, "ca_bundle": "/ca.pem"}, "no effect"),
        ({"type": "dingtalk", "webhook": "${X}", "ca_bundle": "certs/ca.pem"}, "absolute"),
        ({"type": "dingtalk", "webhook": "${X}", "mention_mobiles": ["abc"]}, "mobile"),
        ({"type": "dingtalk", "webhook": "${X}", "timeout": "20m"}, "600"),
        ({"type": "dingtalk", "webhook": "${X}", "secrets": "${Y}"}, "Extra inputs"),
        ({"type": "webhook", "url": "ftp://h/x"}, "http"),
        ({"type": "webhook", "url": "https://user:pw@h/x"}, "no user:password in the URL"),
        ({"type": "webhook", "url": "https://h/x", "secret_headers": {"Content-Type": "${X}"}}, "set by"),
        ({"type": "sms", "url": "https://h/x"}, "does not match any of the expected tags"),
    ],
)  # fmt: skip
def test_channel_settings_are_validated(raw: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        parse_channel(raw)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "dingtalk", "webhook": f"https://oapi.dingtalk.com/robot/send?access_token={DT_TOKEN}"},
        {"type": "dingtalk", "webhook": "${X}", "secret": DT_SECRET},
        {"type": "wecom", "webhook": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}"},
        {
            "type": "email",
            "host": "h",
            "sender": "m@h.cn",
            "to": ["a@h.cn"],
            "username": "u",
            "password": SMTP_PASS,
        },
        {"type": "webhook", "url": "https://h/x", "secret_headers": {"Authorization": HOOK_TOKEN}},
    ],
)
def test_inline_secrets_are_refused_without_echoing_them(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        parse_channel(raw)
    assert "inline" in str(info.value)
    for secret in ALL_SECRETS:
        assert secret not in str(info.value) and secret not in repr(info.value)
    # Embedded in a larger model (as agent.config will): the messages the config loader prints
    # (err["msg"]) carry no secret either; the raw input is only in err["input"].
    with pytest.raises(ValidationError) as embedded:
        Notifications.model_validate({"channels": {"ops": raw}})
    [err] = embedded.value.errors()
    assert err["loc"][:2] == ("channels", "ops")
    for secret in ALL_SECRETS:
        assert secret not in err["msg"]


@given(st.text(), st.integers(min_value=0, max_value=300))
def test_fit_utf8_cuts_on_a_character_boundary(text: str, limit: int) -> None:
    out = fit_utf8(text, limit)
    assert len(out.encode("utf-8")) <= limit
    if len(text.encode("utf-8")) <= limit:
        assert out == text
    elif limit >= len(TRUNCATION_NOTICE.encode()):
        assert out.endswith(TRUNCATION_NOTICE)
        assert text.startswith(out[: -len(TRUNCATION_NOTICE)])


# ====================================================================== e-mail


def test_email_mime_tree_survives_a_real_smtp_server(start_smtp: Callable[..., Smtp]) -> None:
    smtp = start_smtp()
    html = '<html><body><h1>巡检日报</h1><img src="cid:trend.cpu"></body></html>'
    msg = message(
        html=html,
        inline_images=(("trend.cpu", "image/png", PNG),),
        attachments=((PDF_NAME, "application/pdf", PDF),),
        headers={"X-Sentinel-Fault": "F-2024-0042", "In-Reply-To": "<alert-1@hospital.example>"},
    )
    receipt = send(email_channel(smtp.port), msg)

    assert receipt.startswith("250 2.0.0 Ok: queued as Q123ABC; Message-ID <")
    [got] = smtp.recorder.received
    assert got.mail_from == "monitor@hospital.example"
    assert got.rcpt_tos == ["zhang@hospital.example", "li@hospital.example", "ops@vendor.example"]
    assert got.data.isascii(), "every part must be 7-bit (base64/QP, RFC 2047/2231 headers)"
    assert b"filename*" in got.data and b"=?utf-8?" in got.data

    parsed = parse(got.data)
    assert parsed["Subject"] == SUBJECT
    assert parsed["From"].addresses[0].display_name == "HIS 监控中心"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["zhang@hospital.example", "li@hospital.example"]
    assert parsed["To"].addresses[0].display_name == "张工"
    assert parsed["X-Sentinel-Fault"] == "F-2024-0042"
    assert parsed["In-Reply-To"] == "<alert-1@hospital.example>"
    assert receipt.endswith(f"Message-ID {parsed['Message-ID']}")
    assert parsed["Message-ID"].endswith("@hospital.example>")
    sent_at = email.utils.parsedate_to_datetime(parsed["Date"])
    assert sent_at.tzinfo is not None and abs((datetime.now(UTC) - sent_at).total_seconds()) < 60

    tree = [(p.get_content_type(), p.get_filename()) for p in parsed.walk()]
    assert tree == [
        ("multipart/mixed", None),
        ("multipart/alternative", None),
        ("text/plain", None),
        ("multipart/related", None),
        ("text/html", None),
        ("image/png", None),
        ("application/pdf", PDF_NAME),
    ]
    parts = list(parsed.walk())
    # Text travels in canonical CRLF form (RFC 2046); the words must survive base64/QP intact.
    assert parts[2].get_content().replace("\r\n", "\n") == "HIS 核心库 USERS 表空间 97%\n已持续 15 分钟\n"
    assert parts[4].get_content().strip() == html
    image = parts[5]
    assert image["Content-ID"] == "<trend.cpu>" and image.get_content_disposition() == "inline"
    assert image.get_content() == PNG
    assert f'src="cid:{image["Content-ID"][1:-1]}"' in parts[4].get_content()
    pdf = parts[6]
    assert pdf.get_content_disposition() == "attachment" and pdf.get_content() == PDF
    assert pdf.get_param("name") == PDF_NAME


def test_email_text_only_is_one_part_and_keeps_a_given_message_id(start_smtp: Callable[..., Smtp]) -> None:
    smtp = start_smtp()
    send(email_channel(smtp.port, cc=[]), message(headers={"Message-ID": "<fault-42.1@sentinel>"}))
    parsed = parse(smtp.recorder.received[0].data)
    assert [p.get_content_type() for p in parsed.walk()] == ["text/plain"]
    assert parsed["Message-ID"] == "<fault-42.1@sentinel>"
    assert len(parsed.get_all("Message-ID")) == 1
    assert smtp.recorder.received[0].rcpt_tos == ["zhang@hospital.example", "li@hospital.example"]


def test_email_starttls_with_auth_login(start_smtp: Callable[..., Smtp], secret_env: Any) -> None:
    smtp = start_smtp("starttls-auth")
    settings = email_channel(
        smtp.port,
        security="starttls",
        username=SMTP_USER,
        password="${T_SMTP_PASS}",
        ca_bundle=str(smtp.cert),
    )
    receipt = send(settings, message())
    assert "queued as Q123ABC" in receipt
    assert smtp.recorder.logins == [("LOGIN", SMTP_USER.encode())]
    assert smtp.recorder.received[0].tls is True


def test_email_wrong_password_is_permanent_and_never_shown(
    start_smtp: Callable[..., Smtp], secret_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="mail.log")  # the test server's own protocol trace
    smtp = start_smtp("starttls-auth")
    secret_env.setenv("T_SMTP_PASS", SMTP_PASS + "-wrong")
    settings = email_channel(
        smtp.port,
        security="starttls",
        username=SMTP_USER,
        password="${T_SMTP_PASS}",
        ca_bundle=str(smtp.cert),
    )
    with pytest.raises(DeliveryError) as info:
        send(settings, message())
    assert info.value.retryable is False
    assert "authentication failed: 535" in info.value.reason
    assert smtp.recorder.received == []
    assert_no_secret(info.value, caplog)


def test_email_untrusted_certificate_fails_by_default(
    start_smtp: Callable[..., Smtp], secret_env: Any
) -> None:
    smtp = start_smtp("starttls-auth")
    settings = email_channel(smtp.port, security="starttls", username=SMTP_USER, password="${T_SMTP_PASS}")
    with pytest.raises(DeliveryError) as info:
        send(settings, message())
    assert info.value.retryable is False
    assert "TLS verification failed" in info.value.reason and "ca_bundle" in info.value.reason
    assert smtp.recorder.logins == [], "the password must not be sent over an unverified connection"


def test_email_implicit_tls(start_smtp: Callable[..., Smtp]) -> None:
    smtp = start_smtp("ssl")
    receipt = send(email_channel(smtp.port, security="ssl", ca_bundle=str(smtp.cert)), message())
    assert "queued as Q123ABC" in receipt
    assert smtp.recorder.received[0].tls is True


def test_email_server_without_starttls_is_a_configuration_error(start_smtp: Callable[..., Smtp]) -> None:
    smtp = start_smtp()
    with pytest.raises(DeliveryError, match="STARTTLS") as info:
        send(email_channel(smtp.port, security="starttls"), message())
    assert info.value.retryable is False
    assert smtp.recorder.received == []


def test_email_server_down_is_retryable() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(DeliveryError) as info:
        send(email_channel(port), message())
    assert info.value.retryable is True
    assert info.value.reason == f"SMTP: connection refused by 127.0.0.1:{port}"


def test_email_silent_server_times_out_retryably() -> None:
    with silent_tcp_server() as port:
        t0 = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            send(email_channel(port, timeout=0.5), message())
        elapsed = time.monotonic() - t0
    assert info.value.retryable is True
    assert "no answer within 0.5 s" in info.value.reason
    assert elapsed < 3


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("550 5.1.1 User unknown", False), ("451 4.3.0 Mailbox busy, try later", True)],
)
def test_email_all_recipients_refused(start_smtp: Callable[..., Smtp], reply: str, retryable: bool) -> None:
    smtp = start_smtp()
    smtp.recorder.refuse = {"zhang@hospital.example": reply, "li@hospital.example": reply}
    with pytest.raises(DeliveryError) as info:
        send(email_channel(smtp.port, cc=[]), message())
    assert info.value.retryable is retryable
    assert "all recipients refused" in info.value.reason
    assert f"zhang@hospital.example {reply[:3]}" in info.value.reason
    assert smtp.recorder.received == []


def test_email_partial_refusal_counts_as_delivered(
    start_smtp: Callable[..., Smtp], caplog: pytest.LogCaptureFixture
) -> None:
    smtp = start_smtp()
    smtp.recorder.refuse = {"li@hospital.example": "550 5.1.1 User unknown"}
    receipt = send(email_channel(smtp.port, cc=[]), message())
    assert "refused: li@hospital.example 550 5.1.1 User unknown" in receipt
    assert smtp.recorder.received[0].rcpt_tos == ["zhang@hospital.example"]
    assert any(
        r.levelno == logging.WARNING and "li@hospital.example" in r.getMessage() for r in caplog.records
    )


def test_email_unset_password_variable_is_permanent(
    start_smtp: Callable[..., Smtp], monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp = start_smtp("starttls-auth")
    monkeypatch.delenv("T_SMTP_NOPE", raising=False)
    settings = email_channel(
        smtp.port,
        security="starttls",
        username=SMTP_USER,
        password="${T_SMTP_NOPE}",
        ca_bundle=str(smtp.cert),
    )
    with pytest.raises(DeliveryError) as info:
        send(settings, message())
    assert info.value.retryable is False
    assert info.value.reason == "cannot read the SMTP password: environment variable T_SMTP_NOPE is not set"


# ====================================================================== DingTalk


def test_sign_matches_a_published_vector() -> None:
    # Expected value from an independent implementation (the Rust `dingding` crate's test).
    assert sign("secret", 1700000000000) == "OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D"


def test_dingtalk_signed_markdown_with_mentions(stand_in: StandIn, secret_env: pytest.MonkeyPatch) -> None:
    settings = dingtalk(stand_in, secret_env, mention_mobiles=["13800000001"])
    md = "#### 【一级】HIS 数据库\n\n> 表空间 97%"
    receipt = send(settings, message(markdown=md, mention_mobiles=("13900000002", "13800000001")))
    assert receipt == "errcode 0"
    [seen] = stand_in.seen
    assert set(seen.query) == {"access_token", "timestamp", "sign"}
    assert abs(int(seen.query["timestamp"]) - time.time() * 1000) < 60_000
    assert seen.headers["Content-Type"] == "application/json; charset=utf-8"
    assert seen.doc == {
        "msgtype": "markdown",
        "markdown": {"title": SUBJECT, "text": md + "\n\n@13800000001 @13900000002"},
        "at": {"atMobiles": ["13800000001", "13900000002"], "isAtAll": False},
    }


def test_dingtalk_plain_text_fallback_and_at_all(stand_in: StandIn, secret_env: pytest.MonkeyPatch) -> None:
    send(dingtalk(stand_in, secret_env, at_all=True), message(text="第一行\n第二行"))
    doc = stand_in.seen[0].doc
    assert doc["markdown"]["text"] == f"#### {SUBJECT}\n\n第一行\n\n第二行"
    assert doc["at"] == {"atMobiles": [], "isAtAll": True}


def test_dingtalk_without_signing_secret_sends_no_signature(
    stand_in: StandIn, secret_env: pytest.MonkeyPatch
) -> None:
    stand_in.dingtalk_signed = False
    assert send(dingtalk(stand_in, secret_env, secret=None), message()) == "errcode 0"
    assert set(stand_in.seen[0].query) == {"access_token"}


def test_dingtalk_wrong_signing_secret_is_refused_permanently(
    stand_in: StandIn, secret_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_env.setenv("T_DT_SECRET", DT_SECRET + "x")
    with pytest.raises(DeliveryError) as info:
        send(dingtalk(stand_in, secret_env), message())
    assert info.value.retryable is False
    assert info.value.reason.startswith("DingTalk robot rejected the message: errcode 310000 sign not match")
    assert "加签" in info.value.reason
    assert_no_secret(info.value, caplog)


@pytest.mark.parametrize(
    ("errcode", "retryable"),
    [(130101, True), (410100, True), (-1, True), (987654, True), (300001, False), (460101, False)],
)
def test_dingtalk_errcodes(
    stand_in: StandIn, secret_env: pytest.MonkeyPatch, errcode: int, retryable: bool
) -> None:
    stand_in.reply = (200, json.dumps({"errcode": errcode, "errmsg": "send too fast"}).encode())
    with pytest.raises(DeliveryError) as info:
        send(dingtalk(stand_in, secret_env), message())
    assert info.value.retryable is retryable
    assert f"errcode {errcode} send too fast" in info.value.reason


@pytest.mark.parametrize(
    ("status", "body", "retryable", "expected"),
    [
        (200, b"<html>proxy login</html>", True, "without a JSON errcode: '<html>proxy login</html>'"),
        (200, b'{"errmsg": "ok"}', True, "without a JSON errcode"),
        (502, b"bad gateway", True, "answered HTTP 502: bad gateway"),
        (404, b"not found", False, "answered HTTP 404"),
        (302, b"", False, "HTTP 302 (redirects are not followed)"),
    ],
)
def test_dingtalk_replies_that_are_not_a_success(
    stand_in: StandIn,
    secret_env: pytest.MonkeyPatch,
    status: int,
    body: bytes,
    retryable: bool,
    expected: str,
) -> None:
    stand_in.reply = (status, body)
    with pytest.raises(DeliveryError) as info:
        send(dingtalk(stand_in, secret_env), message())
    assert info.value.retryable is retryable
    assert expected in info.value.reason


def test_dingtalk_long_text_is_cut_to_the_body_limit(
    stand_in: StandIn, secret_env: pytest.MonkeyPatch
) -> None:
    # Quotes and newlines grow under JSON escaping; the cut must account for that.
    md = ('表空间"USERS"使用率 97%\n' * 2000) + "END"
    receipt = send(dingtalk(stand_in, secret_env, mention_mobiles=["13800000001"]), message(markdown=md))
    assert receipt == "errcode 0"  # the stand-in refuses bodies over 20 000 bytes with 460101
    seen = stand_in.seen[0]
    assert MAX_BODY_BYTES - 200 < len(seen.raw) <= MAX_BODY_BYTES
    text = seen.doc["markdown"]["text"]
    assert text.endswith(TRUNCATION_NOTICE + "\n\n@13800000001")
    assert md.startswith(text[: -len(TRUNCATION_NOTICE + "\n\n@13800000001")])


def test_dingtalk_server_down_names_host_not_url(
    secret_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    secret_env.setenv("T_DT_WEBHOOK", f"http://127.0.0.1:{port}/robot/send?access_token={DT_TOKEN}")
    settings = parse_channel({"type": "dingtalk", "webhook": "${T_DT_WEBHOOK}", "secret": "${T_DT_SECRET}"})
    with pytest.raises(DeliveryError) as info:
        send(settings, message())
    assert info.value.retryable is True
    assert info.value.reason == f"DingTalk robot: connection refused by 127.0.0.1:{port}"
    assert_no_secret(info.value, caplog)


# ====================================================================== WeCom


def test_wecom_markdown(stand_in: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    assert send(wecom(stand_in, monkeypatch), message(markdown="### HIS\n> 97%")) == "errcode 0"
    [seen] = stand_in.seen
    assert seen.query == {"key": WECOM_KEY}
    assert seen.doc == {"msgtype": "markdown", "markdown": {"content": "### HIS\n> 97%"}}


def test_wecom_plain_text_fallback_gets_the_subject(
    stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(wecom(stand_in, monkeypatch), message())
    assert (
        stand_in.seen[0].doc["markdown"]["content"]
        == f"### {SUBJECT}\nHIS 核心库 USERS 表空间 97%\n已持续 15 分钟"
    )


def test_wecom_mentions_send_one_text_message(stand_in: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = wecom(stand_in, monkeypatch, mention_mobiles=["13800000001"])
    send(settings, message(markdown="### ignored for text", mention_mobiles=("13900000002",)))
    [seen] = stand_in.seen
    assert seen.doc == {
        "msgtype": "text",
        "text": {
            "content": f"{SUBJECT}\nHIS 核心库 USERS 表空间 97%\n已持续 15 分钟",
            "mentioned_mobile_list": ["13800000001", "13900000002"],
        },
    }


def test_wecom_long_content_is_cut_on_a_character_boundary(
    stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = wecom(stand_in, monkeypatch)
    send(settings, message(markdown="医" * 3000))  # 9000 bytes
    send(wecom(stand_in, monkeypatch, mention_mobiles=["13800000001"]), message(text="院" * 3000))
    md = stand_in.seen[0].doc["markdown"]["content"]
    text = stand_in.seen[1].doc["text"]["content"]
    assert 4000 < len(md.encode()) <= MARKDOWN_MAX_BYTES and md.endswith(TRUNCATION_NOTICE)
    assert set(md[: -len(TRUNCATION_NOTICE)]) == {"医"}
    assert 1900 < len(text.encode()) <= TEXT_MAX_BYTES and text.endswith(TRUNCATION_NOTICE)


@pytest.mark.parametrize(
    ("errcode", "retryable"), [(93000, False), (40058, False), (45009, True), (-1, True)]
)
def test_wecom_errcodes(
    stand_in: StandIn, monkeypatch: pytest.MonkeyPatch, errcode: int, retryable: bool
) -> None:
    stand_in.reply = (200, json.dumps({"errcode": errcode, "errmsg": "api freq out of limit"}).encode())
    with pytest.raises(DeliveryError) as info:
        send(wecom(stand_in, monkeypatch), message())
    assert info.value.retryable is retryable
    assert f"WeCom robot rejected the message: errcode {errcode} api freq out of limit" in info.value.reason


def test_wecom_wrong_key_is_permanent_and_scrubbed(
    stand_in: StandIn, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A platform that echoes the request URL in its error must not carry the key into ours.
    stand_in.reply = (
        200,
        json.dumps(
            {"errcode": 93000, "errmsg": f"invalid webhook url /cgi-bin/webhook/send?key={WECOM_KEY}"}
        ).encode(),
    )
    with pytest.raises(DeliveryError) as info:
        send(wecom(stand_in, monkeypatch), message())
    assert info.value.retryable is False
    assert "errcode 93000 invalid webhook url" in info.value.reason and "***" in info.value.reason
    assert_no_secret(info.value, caplog)


# ====================================================================== generic webhook


def test_webhook_payload_and_secret_header(stand_in: StandIn, secret_env: Any) -> None:
    msg = message(markdown="**HIS**", mention_mobiles=("13800000001",))
    assert send(webhook(stand_in.url("/hook")), msg) == "HTTP 200"
    [seen] = stand_in.seen
    assert seen.headers["Authorization"] == HOOK_TOKEN
    assert seen.headers["Content-Type"] == "application/json; charset=utf-8"
    sent_at = seen.doc.pop("sent_at")
    sent = datetime.strptime(sent_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((sent - datetime.now(UTC)).total_seconds()) < 60
    assert seen.doc == {
        "version": 1,
        "subject": SUBJECT,
        "text": "HIS 核心库 USERS 表空间 97%\n已持续 15 分钟",
        "markdown": "**HIS**",
        "level": 1,
        "level_name": "一级",
        "mention_mobiles": ["13800000001"],
        "headers": {"X-Sentinel-Fault": "F-2024-0042"},
    }
    assert SUBJECT.encode() in seen.raw  # UTF-8 on the wire, not \u escapes


@pytest.mark.parametrize(
    ("status", "retryable"), [(204, None), (500, True), (503, True), (429, True), (401, False), (301, False)]
)
def test_webhook_status_decides(
    stand_in: StandIn,
    secret_env: Any,
    caplog: pytest.LogCaptureFixture,
    status: int,
    retryable: bool | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    # The peer echoes the Authorization header it got: a leak path the error text must close.
    stand_in.reply = (status, b'{"error":"denied for {auth}"}' if status != 204 else b"")
    settings = webhook(stand_in.url("/hook"))
    if retryable is None:
        assert send(settings, message()) == "HTTP 204"
        return
    with pytest.raises(DeliveryError) as info:
        send(settings, message())
    assert info.value.retryable is retryable
    assert f"webhook answered HTTP {status}" in info.value.reason
    assert "denied for ***" in info.value.reason
    assert_no_secret(info.value, caplog)


@pytest.mark.parametrize("kind", ["webhook", "dingtalk"])
def test_https_is_verified_by_default_and_ca_bundle_trusts_a_private_ca(
    start_stand_in: Callable[..., StandIn], tmp_path: Path, secret_env: pytest.MonkeyPatch, kind: str
) -> None:
    cert, key, _ = make_cert(tmp_path, days_left=30)
    srv = start_stand_in((cert, key))

    def settings(**kw: Any) -> WebhookChannel | DingTalkChannel:
        if kind == "webhook":
            return webhook(srv.url("/hook", "https"), **kw)
        secret_env.setenv("T_DT_WEBHOOK", srv.url(f"/robot/send?access_token={DT_TOKEN}", "https"))
        return DingTalkChannel.model_validate(
            {"type": "dingtalk", "webhook": "${T_DT_WEBHOOK}", "secret": "${T_DT_SECRET}", **kw}
        )

    with pytest.raises(DeliveryError) as info:
        send(settings(), message())
    assert info.value.retryable is False
    assert info.value.reason.endswith(
        f"TLS verification failed for 127.0.0.1:{srv.port}: self-signed certificate "
        "(set ca_bundle to trust a private CA)"
    )
    assert srv.seen == []
    assert send(settings(ca_bundle=str(cert)), message()) in ("HTTP 200", "errcode 0")
    assert len(srv.seen) == 1


def test_webhook_silent_peer_is_bounded_by_the_timeout(secret_env: Any) -> None:
    with silent_tcp_server() as port:
        t0 = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            send(webhook(f"http://127.0.0.1:{port}/hook", timeout=0.5), message())
        elapsed = time.monotonic() - t0
    assert info.value.retryable is True
    assert info.value.reason == (
        f"webhook: no complete answer from 127.0.0.1:{port} within 0.5 s (while waiting for the reply)"
    )
    assert elapsed < 3


def test_webhook_dripping_peer_cannot_stretch_the_timeout(secret_env: Any) -> None:
    """A header line every 0.1 s resets a plain per-read timeout forever; the deadline holds."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(100):  # at most 10 s, then the thread ends on its own
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(f"X-Drip-{i}: x\r\n".encode())
                except OSError:
                    return

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            send(webhook(f"http://127.0.0.1:{port}/hook", timeout=0.6), message())
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        t.join(2)
        listener.close()
    assert info.value.retryable is True
    assert "within 0.6 s" in info.value.reason
    assert elapsed < 2


def test_send_rejects_something_that_is_not_a_channel() -> None:
    with pytest.raises(TypeError, match="not a channel"):
        send(object(), message())  # type: ignore[arg-type]


def test_preflight_reads_secrets_and_checks_url_shapes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("T_DT_WEBHOOK", f"oapi.dingtalk.com/robot/send?access_token={DT_TOKEN}")  # no scheme
    monkeypatch.delenv("T_MISSING", raising=False)
    loose = tmp_path / "wecom-url"
    loose.write_text(f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}\n")
    loose.chmod(0o644)
    monkeypatch.setenv("T_BAD_HEADER", "Bearer a\nInjected: yes")
    cases = {
        "dingtalk": (
            {"type": "dingtalk", "webhook": "${T_DT_WEBHOOK}", "secret": "${T_MISSING}"},
            [
                "the DingTalk webhook URL is not a valid http(s) URL",
                "cannot read the DingTalk signing secret: environment variable T_MISSING is not set",
            ],
        ),
        "wecom": (
            {"type": "wecom", "webhook": f"file:{loose}"},
            [f"cannot read the WeCom webhook URL: secret file {loose} is accessible by group or others "
             "(mode 0644); chmod 600 it"],
        ),
        "webhook": (
            {"type": "webhook", "url": "https://h/x", "secret_headers": {"Authorization": "${T_BAD_HEADER}"}},
            ["the secret for header Authorization contains line breaks or non-ASCII text"],
        ),
        "email": (
            {"type": "email", "host": "h", "sender": "m@h.cn", "to": ["a@h.cn"], "username": "u",
             "password": "${T_MISSING}"},
            ["cannot read the SMTP password: environment variable T_MISSING is not set"],
        ),
    }  # fmt: skip
    for raw, expected in cases.values():
        # `sentinel config validate` checks the models; the monitoring process has plain copies.
        assert preflight(parse_channel(raw)) == expected
        assert preflight(parse_channel(raw)) == expected
    loose.chmod(0o600)
    monkeypatch.setenv("T_DT_WEBHOOK", f"https://oapi.dingtalk.com/robot/send?access_token={DT_TOKEN}")
    monkeypatch.setenv("T_MISSING", DT_SECRET)
    for raw, _ in cases.values():
        if raw["type"] != "webhook":
            assert preflight(parse_channel(raw)) == []
            assert preflight(parse_channel(raw)) == []
