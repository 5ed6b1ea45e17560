"""Report delivery through the outbox to a real SMTP server (aiosmtpd on 127.0.0.1).

The archived report here is built from files written by the test (HTML with two charts by
Content-ID, two real PNGs, a PDF, the JSON), the way agent.reports.archive leaves them on disk.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import struct
import zlib
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from agent.config.channels import parse_channel
from agent.config.schema import parse
from agent.faults.notices import message_to_json
from agent.notify import Message
from agent.notify.channels import DeliveryError
from agent.notify.email import send_email
from agent.notify.outbox import BACKOFF_S, Dispatcher, list_rows, retry_failed
from agent.reports.archive import ArchivedReport
from agent.reports.delivery import (
    ReportPayload,
    dedup_key,
    load_report_message,
    make_sender,
    report_channels,
    report_payload,
    send_report,
    unqueued_channels,
)
from agent.store.db import Store
from tests.conftest import FakeClock, free_port, need
from tests.helpers.smtp import SmtpServer

T0 = 1_793_577_600.0  # 2026-11-02 00:00 Shanghai (Mon), the first working day after October
TITLE = "月度巡检报告"
SUBJECT = "【月度巡检报告】测试医院 2026-10"
PDF_NAME = "测试医院-月度巡检报告-2026-10.pdf"


def png(width: int, height: int, grey: int) -> bytes:
    """A real, minimal PNG (8-bit greyscale), as a chart renderer would write."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\x00" + bytes([grey]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_archive(root: Path, pdf_size: int = 40_000, kind: str = "monthly", period: str = "2026-10") -> Any:
    root.mkdir(parents=True, exist_ok=True)
    charts = [("chart-avail", root / "avail.png"), ("chart-faults", root / "faults.png")]
    charts[0][1].write_bytes(png(60, 20, 80))
    charts[1][1].write_bytes(png(40, 30, 200))
    # The archive's form: charts embedded as data: URIs, named by data-cid for the mail.
    imgs = "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" alt="图{n}" '
        f'data-cid="{cid}" width="60">'
        for n, (cid, path) in enumerate(charts)
    )
    html = root / f"{kind}-{period}.html"
    html.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>月度巡检报告</title></head><body>"
        f"<h1>月度巡检报告 2026年10月</h1><p>HIS 可用率 99.812%</p>{imgs}</body></html>",
        encoding="utf-8",
    )
    pdf = root / f"{kind}-{period}.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * (pdf_size // 256) + b"\n%%EOF\n")
    data = root / f"{kind}-{period}.json"
    data.write_text('{"kind": "monthly"}', encoding="utf-8")
    return ArchivedReport(
        kind=kind,
        period=period,
        title=TITLE,
        html_path=html,
        pdf_path=pdf,
        json_path=data,
        sha256={"html": "x", "pdf": "y", "json": "z"},
        chain_head="9f2c" * 16,
        images=charts,
        text_body="月度巡检报告 2026年10月\nHIS 可用率 99.812%（目标 99.5%）：达标\n"
        "一级故障 0 起，二级故障 1 起",
        generated_ms=int(T0 * 1000),
        late=False,
        site="测试医院",
    )


@dataclass(frozen=True)
class Reports:
    recipients: dict[str, tuple[str, ...]]
    pdf: tuple[str, ...] = ("monthly", "acceptance")


@dataclass(frozen=True)
class Cfg:
    """The parsed configuration with the report fields the lead adds to `reports`."""

    site: Any
    notifications: Any
    reports: Reports


def make_config(smtp_port: int, max_bytes: int | None = None) -> Cfg:
    extra = f", max_message_bytes: {max_bytes}" if max_bytes else ""
    base = parse(f"""
site: {{name: 测试医院, timezone: Asia/Shanghai}}
notifications:
  channels:
    ops-mail: {{type: email, host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 5s,
               sender: "HIS Sentinel <sentinel@hospital.local>", to: ["信息科 <ops@hospital.local>"]{extra}}}
    committee: {{type: email, host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 5s,
               sender: "HIS Sentinel <sentinel@hospital.local>", to: [yanshou@hospital.local]}}
    ops-hook: {{type: webhook, url: "http://127.0.0.1:9/hook"}}
""")
    return Cfg(base.site, base.notifications, Reports({"monthly": ("ops-mail",), "daily": ("ops-hook",)}))


class Rig:
    def __init__(self, tmp_path: Path, smtp_port: int, max_bytes: int | None = None) -> None:
        self.config = make_config(smtp_port, max_bytes)
        self.clock = FakeClock(T0)
        self.store = Store(tmp_path / "s.db")
        self.dispatcher = Dispatcher(
            Store(tmp_path / "s.db"),
            make_sender(self.config.notifications.channels),
            self.clock,
            known_channels=self.config.notifications.channels,
        )

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def rows(self) -> list[tuple[str, str, int, str | None]]:
        return list(
            self.store.db.execute("SELECT channel, status, attempts, last_error FROM outbox ORDER BY id")
        )


def children(part: EmailMessage) -> list[EmailMessage]:
    return list(part.iter_parts())


def test_monthly_report_arrives_with_alternative_related_images_and_pdf(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    rig = Rig(tmp_path, smtp.port)
    archived = make_archive(tmp_path / "archive")
    assert send_report(rig.config, rig.store, archived, rig.now_ms()) == 1  # monthly -> ops-mail only
    assert rig.dispatcher.run_once() == 1
    assert rig.rows() == [("ops-mail", "delivered", 1, None)]
    [mail] = smtp.inbox.messages

    raw = mail.as_bytes()
    raw.decode("ascii")  # 7-bit on the wire: no raw UTF-8 anywhere for relays without 8BITMIME
    subject_line = next(line for line in raw.decode("ascii").splitlines() if line.startswith("Subject:"))
    assert subject_line.startswith("Subject: =?utf-8?")  # RFC 2047 encoded words
    assert mail["Subject"] == SUBJECT
    assert mail["X-Sentinel-Report"] == "monthly 2026-10"
    assert mail["To"].addresses[0].display_name == "信息科"

    # multipart/mixed [ multipart/alternative [ text/plain, multipart/related [ html, png, png ] ], pdf ]
    assert mail.get_content_type() == "multipart/mixed"
    alt, pdf = children(mail)
    assert alt.get_content_type() == "multipart/alternative"
    text, related = children(alt)
    assert text.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html, *images = children(related)
    assert html.get_content_type() == "text/html"
    body = text.get_content()
    assert "HIS 可用率 99.812%（目标 99.5%）：达标" in body
    assert f"PDF 附件（{PDF_NAME}）" in body
    assert "证据链头：" + "9f2c" * 16 in body
    html_text = html.get_content()
    assert "HIS 可用率 99.812%" in html_text
    assert "data:image" not in html_text  # embedded charts switched to cid: for mail clients

    by_cid = {p["Content-ID"].strip("<>"): p for p in images}
    referenced = set(re.findall(r'src="cid:([^"]+)"', html_text))
    assert referenced == set(by_cid) == {"chart-avail", "chart-faults"}
    for cid, path in archived.images:
        part = by_cid[cid]
        assert part.get_content_type() == "image/png"
        assert part.get_content_disposition() == "inline"
        assert part.get_content() == Path(path).read_bytes()

    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content_disposition() == "attachment"
    assert pdf.get_filename() == PDF_NAME  # from Content-Disposition, RFC 2231
    assert "filename*0*=utf-8''" in str(pdf.as_string()) or "filename*=utf-8''" in pdf.as_string()
    name_param = pdf.get_param("name")
    assert str(make_header(decode_header(str(name_param)))) == PDF_NAME
    raw_pdf_head = raw[raw.index(b"Content-Type: application/pdf") :][:400].decode("ascii")
    assert 'name="=?utf-8?b?' in raw_pdf_head  # RFC 2047 words for clients that skip RFC 2231
    assert pdf.get_content() == Path(archived.pdf_path).read_bytes()
    for part in mail.walk():
        if part is not mail:
            assert part["MIME-Version"] is None


def test_outbox_row_refers_to_files_instead_of_holding_them(tmp_path: Path) -> None:
    rig = Rig(tmp_path, free_port())
    archived = make_archive(tmp_path / "archive", pdf_size=600_000)
    send_report(rig.config, rig.store, archived, rig.now_ms())
    [(message,)] = rig.store.db.execute("SELECT message FROM outbox").fetchall()
    assert len(message) < 10_000  # a 600 kB PDF is not in the row
    payload = ReportPayload.from_json(message)
    assert payload.pdf is not None and payload.pdf[1].path == str(Path(archived.pdf_path).resolve())
    assert payload.pdf[1].size == Path(archived.pdf_path).stat().st_size
    assert [r.subject for r in list_rows(rig.store)] == [SUBJECT]


def test_smtp_down_then_up_report_arrives_exactly_once(tmp_path: Path) -> None:
    server = SmtpServer(free_port())  # not started yet: connection refused
    rig = Rig(tmp_path, server.port)
    archived = make_archive(tmp_path / "archive")
    assert send_report(rig.config, rig.store, archived, rig.now_ms()) == 1
    for n in (1, 2):
        assert rig.dispatcher.run_once() == 1
        [(channel, status, attempts, error)] = rig.rows()
        assert (status, attempts) == ("pending", n) and "refused" in (error or "")
        assert rig.dispatcher.run_once() == 0  # backing off, nothing due
        rig.clock.advance(BACKOFF_S[n - 1] + 1)
    # The daemon restarts and its catch-up queues the same report again: still one row.
    assert send_report(rig.config, rig.store, archived, rig.now_ms()) == 1
    assert rig.store.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
    server.start()
    try:
        assert rig.dispatcher.run_once() == 1
        assert rig.rows()[0][1] == "delivered"
        # Re-running the report after delivery queues nothing and sends nothing.
        assert send_report(rig.config, rig.store, archived, rig.now_ms()) == 0
        rig.clock.advance(3600)
        assert rig.dispatcher.run_once() == 0
        assert len(server.inbox.messages) == 1
        assert server.inbox.messages[0]["Subject"] == SUBJECT
    finally:
        server.stop()


def test_vanished_archive_file_fails_visibly_and_retry_sends_after_restore(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    rig = Rig(tmp_path, smtp.port)
    archived = make_archive(tmp_path / "archive")
    send_report(rig.config, rig.store, archived, rig.now_ms())
    pdf = Path(archived.pdf_path)
    kept = pdf.read_bytes()
    pdf.unlink()
    rig.dispatcher.run_once()
    [(_, status, _, error)] = rig.rows()
    assert status == "failed"
    assert error is not None and str(pdf.resolve()) in error and "missing" in error
    assert [r.last_error for r in list_rows(rig.store, failed_only=True)] == [error]
    assert smtp.inbox.messages == []
    pdf.write_bytes(kept)
    assert retry_failed(rig.store, rig.now_ms()) == 1
    rig.dispatcher.run_once()
    assert rig.rows()[0][1] == "delivered" and len(smtp.inbox.messages) == 1


def test_file_changed_after_queueing_is_refused_and_a_rerun_replaces_the_row(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    rig = Rig(tmp_path, smtp.port)
    archived = make_archive(tmp_path / "archive")
    send_report(rig.config, rig.store, archived, rig.now_ms())
    html = Path(archived.html_path)
    html.write_text(html.read_text(encoding="utf-8").replace("99.812%", "99.900%"), encoding="utf-8")
    rig.dispatcher.run_once()
    [(_, status, _, error)] = rig.rows()
    assert status == "failed" and "changed after the report was queued" in (error or "")
    # Re-running the report queues the current version in the same row, at once.
    assert send_report(rig.config, rig.store, archived, rig.now_ms()) == 1
    assert rig.rows()[0][1] == "pending"
    rig.dispatcher.run_once()
    [mail] = smtp.inbox.messages
    html_part = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    assert "99.900%" in html_part.get_content()


def test_html_showing_an_image_the_report_lacks_is_not_sent(tmp_path: Path) -> None:
    config = make_config(free_port())
    archived = make_archive(tmp_path / "a")
    html = Path(archived.html_path)
    html.write_text(html.read_text(encoding="utf-8") + '<img src="cid:chart-gone">', encoding="utf-8")
    payload = report_payload(config, archived)
    with pytest.raises(DeliveryError) as exc:
        load_report_message(payload, config.notifications.channels["ops-mail"])
    assert "cid:chart-gone" in exc.value.reason and not exc.value.retryable


def test_pdf_over_the_size_bound_is_left_out_with_a_note(tmp_path: Path) -> None:
    config = make_config(free_port(), max_bytes=256 * 1024)
    channel = config.notifications.channels["ops-mail"]
    small = load_report_message(
        report_payload(config, make_archive(tmp_path / "s", pdf_size=50_000)), channel
    )
    assert [a[0] for a in small.attachments] == [PDF_NAME]
    big = make_archive(tmp_path / "b", pdf_size=400_000)
    message = load_report_message(report_payload(config, big), channel)
    assert message.attachments == ()
    assert "超过邮件大小上限 0.2 MB，未随邮件附上" in message.text
    assert str(Path(big.pdf_path).resolve()) in message.text
    assert len(message.inline_images) == 2  # the charts still go
    # Even without the PDF too large: refused, not retried.
    Path(big.html_path).write_text("<p>" + "很长" * 200_000 + "</p>", encoding="utf-8")
    with pytest.raises(DeliveryError) as exc:
        load_report_message(report_payload(config, big), channel)
    assert "max_message_bytes" in exc.value.reason and not exc.value.retryable


def test_email_channel_refuses_an_oversized_message_before_connecting() -> None:
    port = free_port()  # nothing listens: a connection attempt would be a retryable refusal
    channel = make_config(port, max_bytes=64 * 1024).notifications.channels["ops-mail"]
    message = Message(
        subject="大附件", text="见附件", attachments=(("大.bin", "application/octet-stream", b"x" * 80_000),)
    )
    with pytest.raises(DeliveryError) as exc:
        send_email(channel, message)
    assert "over this channel's max_message_bytes" in exc.value.reason and not exc.value.retryable


def test_chat_channels_get_the_summary_without_reading_files(tmp_path: Path) -> None:
    config = make_config(free_port())
    archived = make_archive(tmp_path / "a", kind="daily", period="2026-11-01")
    payload = report_payload(config, archived)
    Path(archived.html_path).unlink()  # a chat message never needs the files
    hook = config.notifications.channels["ops-hook"]
    assert hook.type == "webhook"
    message = load_report_message(payload, hook)
    assert message.attachments == () and message.html is None
    assert message.markdown is not None and "HIS 可用率 99.812%" in message.markdown
    assert payload.pdf is None  # daily is not a PDF kind in this configuration


def test_recipients_follow_the_kind_and_unknown_channels_are_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path, free_port())
    assert report_channels(rig.config, "monthly") == ["ops-mail"]
    assert report_channels(rig.config, "weekly") == []
    weekly = make_archive(tmp_path / "w", kind="weekly", period="2026-W44")
    assert send_report(rig.config, rig.store, weekly, rig.now_ms()) == 0
    assert send_report(rig.config, rig.store, weekly, rig.now_ms(), channels=["ops-mail", "committee"]) == 2
    keys = [k for (k,) in rig.store.db.execute("SELECT dedup_key FROM outbox ORDER BY id")]
    assert keys == [dedup_key("weekly", "2026-W44", "ops-mail"), dedup_key("weekly", "2026-W44", "committee")]
    with pytest.raises(KeyError):
        send_report(rig.config, rig.store, weekly, rig.now_ms(), channels=["nobody"])
    Path(weekly.html_path).unlink()
    with pytest.raises(FileNotFoundError):
        send_report(rig.config, rig.store, weekly, rig.now_ms(), channels=["ops-mail"])


def test_each_inspection_run_is_sent_but_a_periodic_rerun_is_not(tmp_path: Path) -> None:
    rig = Rig(tmp_path, free_port())
    first = make_archive(tmp_path / "i", kind="inspection", period="2026-09-30")
    second = dataclasses.replace(first, generated_ms=first.generated_ms + 3_600_000)
    assert send_report(rig.config, rig.store, first, rig.now_ms(), channels=["ops-mail"]) == 1
    assert send_report(rig.config, rig.store, second, rig.now_ms(), channels=["ops-mail"]) == 1
    monthly = make_archive(tmp_path / "m")
    later = dataclasses.replace(monthly, generated_ms=monthly.generated_ms + 3_600_000)
    assert send_report(rig.config, rig.store, monthly, rig.now_ms()) == 1
    assert send_report(rig.config, rig.store, later, rig.now_ms()) == 1  # replaces, same row
    assert rig.store.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 3


def test_a_report_is_queued_once_each_recipient_has_its_row(tmp_path: Path) -> None:
    """What the daemon asks before it counts a scheduled report as done."""
    rig = Rig(tmp_path, free_port())
    config = dataclasses.replace(
        rig.config, reports=Reports({"monthly": ("ops-mail", "committee"), "inspection": ("ops-mail",)})
    )
    monthly = make_archive(tmp_path / "m")
    gen = monthly.generated_ms
    assert unqueued_channels(config, rig.store, "monthly", "2026-10", gen) == ["ops-mail", "committee"]
    send_report(config, rig.store, monthly, rig.now_ms(), channels=["committee"])
    assert unqueued_channels(config, rig.store, "monthly", "2026-10", gen) == ["ops-mail"]
    send_report(config, rig.store, monthly, rig.now_ms())
    assert unqueued_channels(config, rig.store, "monthly", "2026-10", gen) == []
    assert unqueued_channels(config, rig.store, "monthly", "2026-09", gen) == ["ops-mail", "committee"]
    assert unqueued_channels(config, rig.store, "weekly", "2026-W44", gen) == []  # no recipients
    # An inspection is found by its generation time, under whatever period the scheduler
    # records it (the holiday's first day), not the day it ran.
    inspection = make_archive(tmp_path / "i", kind="inspection", period="2026-09-30")
    gen = inspection.generated_ms
    assert unqueued_channels(config, rig.store, "inspection", "2026-10-01", gen) == ["ops-mail"]
    send_report(config, rig.store, inspection, rig.now_ms())
    assert unqueued_channels(config, rig.store, "inspection", "2026-10-01", gen) == []
    assert unqueued_channels(config, rig.store, "inspection", "2026-10-01", gen + 1) == ["ops-mail"]


def test_fault_notices_still_go_through_the_combined_sender(tmp_path: Path, smtp: SmtpServer) -> None:
    rig = Rig(tmp_path, smtp.port)
    payload = message_to_json(Message(subject="【二级·故障】LIS 不可用", text="HTTP 500"))
    with rig.store.tx() as db:
        db.execute(
            "INSERT INTO outbox(created_ts, dedup_key, channel, event, message, next_attempt_ts) "
            "VALUES(?,?,?,?,?,?)",
            (rig.now_ms(), "F-1:opened::ops-mail", "ops-mail", "opened", payload, rig.now_ms()),
        )
    rig.dispatcher.run_once()
    assert [m["Subject"] for m in smtp.inbox.messages] == ["【二级·故障】LIS 不可用"]


def test_late_report_says_so_in_subject_and_text(tmp_path: Path) -> None:
    config = make_config(free_port())
    archived = dataclasses.replace(make_archive(tmp_path / "a"), late=True)
    payload = report_payload(config, archived)
    assert payload.subject.endswith("【补发】")
    assert "恢复后补做" in payload.text
    assert parse_channel({"type": "webhook", "url": "http://127.0.0.1:9/"})  # channel parsing unaffected


def test_real_monthly_report_from_the_archive_arrives_through_the_outbox(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    """The monthly report as agent.reports writes it (charts, WeasyPrint PDF), end to end."""
    try:
        import weasyprint
    except (ImportError, OSError):
        weasyprint = None
    need(weasyprint is not None, "WeasyPrint is not installed (PDF of the monthly report)")
    from agent.clock.periods import parse_period
    from agent.reports.archive import publish
    from agent.reports.periodic import build_periodic

    base = parse(f"""
site: {{name: 测试医院, timezone: Asia/Shanghai}}
storage: {{path: {tmp_path / "s.db"}}}
reports: {{output_dir: {tmp_path / "reports"}}}
systems: [{{name: HIS}}]
checks:
  - {{name: his-web, kind: tcp, host: 127.0.0.1, port: 9, system: HIS}}
notifications:
  channels:
    ops-mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, security: none, timeout: 5s,
               sender: "HIS Sentinel <sentinel@hospital.local>", to: [ops@hospital.local]}}
""")
    config = Cfg(base.site, base.notifications, Reports({"monthly": ("ops-mail",)}))
    clock = FakeClock(T0)
    store = Store(base.storage.path)
    store.sync_checks([("his-web", "tcp", "HIS")], 0)
    period = parse_period("2026-10", base.site.tz)
    archived = publish(
        base, build_periodic(base, store, "monthly", period, int(T0 * 1000)), pdf=True, recorder=store
    )
    assert archived.pdf_path is not None and archived.images
    assert send_report(config, store, archived, int(T0 * 1000)) == 1
    dispatcher = Dispatcher(Store(base.storage.path), make_sender(base.notifications.channels), clock)
    assert dispatcher.run_once() == 1
    [mail] = smtp.inbox.messages
    assert mail["Subject"] == "【月度巡检报告】测试医院 2026-10"
    alt, pdf = children(mail)
    text, related = children(alt)
    html, *images = children(related)
    assert (alt.get_content_type(), text.get_content_type(), html.get_content_type()) == (
        "multipart/alternative",
        "text/plain",
        "text/html",
    )
    html_text = html.get_content()
    refs = set(re.findall(r'src="cid:([^"]+)"', html_text))
    parts = {p["Content-ID"].strip("<>"): p.get_content() for p in images}
    assert refs == set(parts) == {cid for cid, _ in archived.images}
    assert all(data.startswith(b"\x89PNG") for data in parts.values())
    assert "data:image" not in html_text
    assert pdf.get_filename() == "测试医院-月度巡检报告-2026-10.pdf"
    assert pdf.get_content() == Path(archived.pdf_path).read_bytes()
    assert pdf.get_content().startswith(b"%PDF")
