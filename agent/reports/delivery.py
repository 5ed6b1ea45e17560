"""Archived reports go out through the notification outbox, one row per recipient channel.

    n = send_report(config, store, archived, now_ms)   # queue; the dispatcher sends
    unqueued_channels(config, store, kind, period, generated_ms)   # [] once every row is there

Why the outbox: a report must not be lost while SMTP is down; the row waits and is retried with
the outbox's backoff until the relay takes it. The row holds the small parts (subject, plain
text, chat summary) and the PATHS of the archived HTML, chart images and PDF with their SHA-256
as they were when queued; the files are read when the message is sent, so the outbox table does
not grow by megabytes per report. If a file is gone or was changed after queueing, the delivery
fails with a reason that names the file, and the row stays visible as failed
(`sentinel notifications`) until someone restores the file or re-runs the report.

Deduplication: the row's key is ``report:<kind>:<period>:<channel>`` (inspections, which are
run on demand, add their generation time). Queueing the same report
again (a re-run, a catch-up after a restart) does not send it twice: a delivered row stays
delivered; an undelivered one is replaced by the newer version and tried at once.

E-mail channels get the full report (HTML with the charts inline by Content-ID, a plain-text
alternative, and the PDF attached for the kinds configured). Chat channels (DingTalk, WeCom,
webhooks) get the subject and a short summary, since they cannot carry HTML or files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config.schema import Config
from agent.notify.channels import DeliveryError, Message
from agent.notify.outbox import Sender, SendError
from agent.store import outbox
from agent.store.db import Store

if TYPE_CHECKING:
    from agent.reports.archive import ArchivedReport

__all__ = [
    "DEFAULT_PDF_KINDS",
    "PAYLOAD_TYPE",
    "REPORT_EVENT",
    "ReportPayload",
    "dedup_key",
    "deliver_unless_agent_runs",
    "is_report_payload",
    "load_report_message",
    "make_sender",
    "pdf_kinds",
    "report_channels",
    "report_payload",
    "send_report",
    "unqueued_channels",
]

REPORT_EVENT = "report"
"""The outbox `event` of report rows (fault notifications use the fault events)."""
PAYLOAD_TYPE = "report"
PAYLOAD_VERSION = 1
DEFAULT_PDF_KINDS = ("monthly", "quarterly", "yearly", "acceptance")
"""Kinds whose PDF is attached unless `reports.pdf` says otherwise: the ones that get printed."""
MAX_TEXT_CHARS = 100_000
"""The plain-text part is kept in the outbox row; a runaway text body must not bloat the table."""
CHAT_SUMMARY_LINES = 30

_CID_REF = re.compile(r"""cid:([^"'\s)>]+)""", re.IGNORECASE)
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_DATA_CID = re.compile(r'\bdata-cid="([^"]+)"')
_DATA_SRC = re.compile(r'\bsrc="data:[^"]*"')
_UNSAFE_FILENAME = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')
_MSGID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_MIME_BY_SUFFIX = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


@dataclass(frozen=True, slots=True)
class FileRef:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ReportPayload:
    """What an outbox row of a report holds (JSON). Files are referenced, never embedded."""

    kind: str
    period: str
    subject: str
    text: str
    markdown: str
    html: FileRef
    images: tuple[tuple[str, str, FileRef], ...]
    """(cid, mime type, file)."""
    pdf: tuple[str, FileRef] | None
    """(file name shown to the reader, file)."""
    headers: Mapping[str, str]

    def to_json(self) -> str:
        def ref(f: FileRef) -> dict[str, Any]:
            return {"path": f.path, "sha256": f.sha256, "size": f.size}

        return json.dumps(
            {
                "type": PAYLOAD_TYPE,
                "version": PAYLOAD_VERSION,
                "kind": self.kind,
                "period": self.period,
                "subject": self.subject,
                "text": self.text,
                "markdown": self.markdown,
                "html": ref(self.html),
                "images": [[cid, mime, ref(f)] for cid, mime, f in self.images],
                "pdf": None if self.pdf is None else [self.pdf[0], ref(self.pdf[1])],
                "headers": dict(self.headers),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> ReportPayload:
        d = json.loads(text)
        if d.get("type") != PAYLOAD_TYPE:
            raise ValueError("not a report payload")
        if d.get("version") != PAYLOAD_VERSION:
            raise ValueError(f"report payload version {d.get('version')!r} is not {PAYLOAD_VERSION}")

        def ref(r: Mapping[str, Any]) -> FileRef:
            return FileRef(str(r["path"]), str(r["sha256"]), int(r["size"]))

        pdf = d.get("pdf")
        return cls(
            kind=str(d["kind"]),
            period=str(d["period"]),
            subject=str(d["subject"]),
            text=str(d["text"]),
            markdown=str(d["markdown"]),
            html=ref(d["html"]),
            images=tuple((str(c), str(m), ref(r)) for c, m, r in d.get("images", ())),
            pdf=None if pdf is None else (str(pdf[0]), ref(pdf[1])),
            headers={str(k): str(v) for k, v in d.get("headers", {}).items()},
        )


# --------------------------------------------------------------------------- configuration


def report_channels(config: Config, kind: str) -> list[str]:
    """Channel names that receive reports of `kind` (`reports.recipients`), in order, once each."""
    recipients = getattr(config.reports, "recipients", None) or {}
    names = recipients.get(kind, ())
    return list(dict.fromkeys(names))


def pdf_kinds(config: Config) -> tuple[str, ...]:
    kinds = getattr(config.reports, "pdf", None)
    return DEFAULT_PDF_KINDS if kinds is None else tuple(kinds)


ON_DEMAND_KINDS = frozenset({"inspection"})
"""Kinds where each run is a new report (an inspection run twice on one day is two inspections)."""


def dedup_key(kind: str, period: str, channel: str, generated_ms: int | None = None) -> str:
    """The outbox key: one delivery per report, period and channel.

    On-demand kinds add the generation time, so a second inspection is sent as well, while
    the periodic kinds' re-runs and catch-ups are not sent twice.
    """
    if kind in ON_DEMAND_KINDS and generated_ms is not None:
        period = f"{period}@{generated_ms}"
    return f"report:{kind}:{period}:{channel}"


def _message_id(key: str) -> str:
    # A stable Message-ID per row: a retry after an ambiguous SMTP timeout arrives with the
    # same ID and mail clients drop the duplicate. The hash keeps IDs of similar periods apart
    # after the unsafe characters are flattened.
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"<{_MSGID_UNSAFE.sub('-', key).strip('-')}.{digest}@his-sentinel>"


# --------------------------------------------------------------------------- queueing


def _file_ref(path: Path | str, what: str) -> FileRef:
    p = Path(path)
    h = hashlib.sha256()
    size = 0
    try:
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
                size += len(block)
    except OSError as exc:
        raise FileNotFoundError(f"{what} {p}: {exc.strerror or type(exc).__name__}") from None
    return FileRef(str(p.resolve()), h.hexdigest(), size)


def _mime_of(path: Path) -> str:
    return _MIME_BY_SUFFIX.get(path.suffix.lower(), "image/png")


def pdf_filename(site_name: str, title: str, period: str) -> str:
    """'测试医院-月度巡检报告-2026-10.pdf': what the reader sees and saves."""
    parts = [site_name, title] if period in title else [site_name, title, period]
    name = "-".join(p.strip() for p in parts if p and p.strip())
    return _UNSAFE_FILENAME.sub("_", name)[:150] + ".pdf"


def report_subject(site_name: str, title: str, period: str, late: bool) -> str:
    subject = f"【{site_name}】{title}" if site_name else title
    if period not in title:
        subject += f"（{period}）"
    if late:
        subject += "【补发】"
    return " ".join(subject.split())


def _reason_of(archived: ArchivedReport) -> str | None:
    """An inspection's reason (国庆节前巡检) from its archived data: it belongs in the subject."""
    if archived.kind not in ON_DEMAND_KINDS:
        return None
    try:
        reason = json.loads(Path(archived.json_path).read_text(encoding="utf-8")).get("reason")
    except (OSError, ValueError, AttributeError):
        return None
    return " ".join(str(reason).split())[:60] if reason else None


def report_payload(config: Config, archived: ArchivedReport) -> ReportPayload:
    """The outbox payload of `archived` (the same for every channel but its Message-ID).

    Raises FileNotFoundError when an archived file is missing already: a report that cannot
    be sent should not be queued as if it could.
    """
    from agent.text.render import environment

    site_name = str(config.site.name)
    own = getattr(archived, "subject", None)
    if callable(own):  # the archive's own wording (and language) for the report
        subject = " ".join(str(own()).split()) + ("【补发】" if archived.late else "")
    else:
        subject = report_subject(site_name, archived.title, archived.period, archived.late)
    reason = _reason_of(archived)
    if reason and reason not in subject:
        subject += f" {reason}"
    html = _file_ref(archived.html_path, "report HTML")
    images = tuple(
        (str(cid), _mime_of(Path(path)), _file_ref(path, f"chart image {cid}"))
        for cid, path in archived.images
    )
    pdf = None
    if archived.pdf_path is not None and archived.kind in pdf_kinds(config):
        pdf = (
            pdf_filename(site_name, archived.title, archived.period),
            _file_ref(archived.pdf_path, "report PDF"),
        )
    context = {
        "a": archived,
        "subject": subject,
        "site_name": site_name,
        "site_tz": config.site.tz,
        "tz_name": str(config.site.timezone),
        "html_sha256": html.sha256,
        "pdf": pdf,
        "body": archived.text_body.strip(),
        "summary": "\n".join(archived.text_body.strip().splitlines()[:CHAT_SUMMARY_LINES]),
    }
    env = environment()
    text = env.get_template("notify/report.txt").render(**context).strip() + "\n"
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS] + "\n…（纯文本过长已截断，完整内容见 HTML 正文或 PDF 附件）\n"
    markdown = env.get_template("notify/report.md").render(**context).strip() + "\n"
    # The hashes and the chain head go in the text, not in headers: a 64-digit value makes the
    # header fold, and parsers then hand it back with a leading blank.
    headers = {"X-Sentinel-Report": f"{archived.kind} {archived.period}"}
    return ReportPayload(
        kind=archived.kind,
        period=archived.period,
        subject=subject,
        text=text,
        markdown=markdown,
        html=html,
        images=images,
        pdf=pdf,
        headers=headers,
    )


def send_report(
    config: Config,
    store: Store,
    archived: ArchivedReport,
    now_ms: int,
    channels: Sequence[str] | None = None,
) -> int:
    """Queue `archived` for every recipient channel of its kind; returns rows queued or renewed.

    `channels` overrides the configured recipients (e.g. a one-off send from the CLI). A
    channel that already delivered this report for this period is left alone (0 for it).
    Raises KeyError for a channel that is not configured, FileNotFoundError for a missing file.
    """
    names = list(dict.fromkeys(channels)) if channels is not None else report_channels(config, archived.kind)
    known = config.notifications.channels
    missing = [n for n in names if n not in known]
    if missing:
        raise KeyError(", ".join(missing))
    if not names:
        return 0
    payload = report_payload(config, archived)
    queued = 0
    with store.tx() as db:
        for channel in names:
            key = dedup_key(archived.kind, archived.period, channel, archived.generated_ms)
            headers = {**dict(payload.headers), "Message-ID": _message_id(key)}
            message = replace(payload, headers=headers).to_json()
            # A newer version of an undelivered report replaces the old one and goes now;
            # a delivered one is never sent again.
            renewed = outbox.enqueue_or_renew(
                db,
                created_ts=now_ms,
                dedup_key=key,
                channel=channel,
                event=REPORT_EVENT,
                message=message,
                next_attempt_ts=now_ms,
            )
            queued += int(renewed)
    return queued


def unqueued_channels(config: Config, store: Store, kind: str, period: str, generated_ms: int) -> list[str]:
    """Recipient channels of `kind` for which the outbox holds no row of this report.

    [] when every recipient has its row (pending, failed or delivered: getting it to the relay
    is the dispatcher's job from then on) or when the kind has no recipients. For an
    inspection, `period` is whatever the caller records it under (the scheduler: the holiday);
    the row is found by the report's generation time, which its key carries.
    """
    names = report_channels(config, kind)
    if not names:
        return []
    if kind in ON_DEMAND_KINDS:
        keys = outbox.keys_like(store.db, REPORT_EVENT, f"report:{kind}:%")
        return [c for c in names if not any(k.endswith(f"@{generated_ms}:{c}") for k in keys)]
    wanted = {dedup_key(kind, period, c): c for c in names}
    found = outbox.existing_keys(store.db, list(wanted))
    return [c for key, c in wanted.items() if key not in found]


# --------------------------------------------------------------------------- sending


def deliver_unless_agent_runs(config: Config, store: Store, archived: ArchivedReport) -> str:
    """For CLI `--send`: deliver the report's rows now when no agent holds the store.

    With an agent running, its dispatcher sends them (two dispatchers could both pick a row
    and send it twice). Without one, one pass here; a failed attempt stays queued for the
    agent's next start. Returns a line for the user.
    """
    import os
    import time

    from agent.notify.outbox import Dispatcher
    from agent.store.db import StoreLocked, acquire_lock

    try:
        fd = acquire_lock(Path(config.storage.path))
    except StoreLocked:
        return "已加入发送队列，由运行中的监测程序发送（sentinel notifications 查看进度）"
    try:
        channels = config.notifications.channels
        Dispatcher(store, make_sender(channels), time.time, known_channels=channels).run_once()
    finally:
        os.close(fd)  # releases the lock at once: a starting agent must not find it taken
    keys = [
        dedup_key(archived.kind, archived.period, c, archived.generated_ms)
        for c in report_channels(config, archived.kind)
    ]
    failed = [r["last_error"] for r in outbox.statuses(store.db, keys) if r["status"] != "delivered"]
    if failed:
        return f"发送未成功，已留在队列中：{failed[0] or '等待重试'}"
    return "已发送"


def is_report_payload(text: str) -> bool:
    try:
        d = json.loads(text)
    except ValueError:
        return False
    return isinstance(d, dict) and d.get("type") == PAYLOAD_TYPE


def _read(ref: FileRef, what: str) -> bytes:
    try:
        data = Path(ref.path).read_bytes()
    except FileNotFoundError:
        raise DeliveryError(
            f"{what} {ref.path} is missing from the report archive; restore it or re-run the report",
            retryable=False,
        ) from None
    except OSError as exc:
        # A share that is briefly unavailable: the file may well be readable at the next try.
        raise DeliveryError(
            f"cannot read {what} {ref.path}: {exc.strerror or type(exc).__name__}", True
        ) from None
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise DeliveryError(
            f"{what} {ref.path} changed after the report was queued (SHA-256 differs); "
            "re-run the report to queue the current version",
            retryable=False,
        )
    return data


def cid_form(html: str, cids: set[str]) -> str:
    """The archived HTML as mail wants it: charts embedded as data: URIs (the archive's form,
    which Outlook and most webmail block) switched to ``cid:`` references of the attached PNGs.

    An <img> is switched when it names one of `cids` in ``data-cid``; others stay as they are.
    """

    def fix(m: re.Match[str]) -> str:
        tag = m.group(0)
        named = _DATA_CID.search(tag)
        if named is None or named.group(1) not in cids:
            return tag
        return _DATA_SRC.sub(lambda _: f'src="cid:{named.group(1)}"', tag, count=1)

    return _IMG_TAG.sub(fix, html)


def load_report_message(payload: ReportPayload, settings: Any) -> Message:
    """The Message for one channel, with the archived files read now.

    Chat and webhook channels get text and a summary only. E-mail gets HTML, images and the
    PDF; when the whole would exceed the channel's `max_message_bytes`, the PDF is left out and
    the text says where it lies; if even that is too large, DeliveryError (not retryable).
    """
    from agent.notify.email import encoded_size

    if settings.type != "email":
        return Message(
            subject=payload.subject, text=payload.text, markdown=payload.markdown, headers=payload.headers
        )
    html_bytes = _read(payload.html, "report HTML")
    try:
        html = html_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise DeliveryError(f"report HTML {payload.html.path} is not UTF-8", retryable=False) from None
    images = tuple((cid, mime, _read(ref, f"chart image {cid}")) for cid, mime, ref in payload.images)
    have = {cid for cid, _, _ in images}
    html = cid_form(html, have)
    dangling = sorted({c for c in _CID_REF.findall(html) if c not in have})
    if dangling:
        raise DeliveryError(
            f"report HTML {payload.html.path} shows cid:{', cid:'.join(dangling)} but the report has no such "
            "image; the mail would show broken pictures",
            retryable=False,
        )
    text = payload.text
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    if payload.pdf is not None:
        name, ref = payload.pdf
        attachments = ((name, "application/pdf", _read(ref, "report PDF")),)
    message = Message(
        subject=payload.subject,
        text=text,
        html=html,
        markdown=payload.markdown,
        attachments=attachments,
        inline_images=images,
        headers=payload.headers,
    )
    limit = int(settings.max_message_bytes)
    if attachments and encoded_size(message) > limit:
        name, ref = payload.pdf  # type: ignore[misc]
        note = (
            f"\n注：PDF 版（{name}，{ref.size / 1048576:.1f} MB）超过邮件大小上限 "
            f"{limit / 1048576:.1f} MB，未随邮件附上；归档位置：{ref.path}\n"
        )
        message = Message(
            subject=payload.subject,
            text=text + note,
            html=html,
            markdown=payload.markdown,
            inline_images=images,
            headers=payload.headers,
        )
    if encoded_size(message) > limit:
        raise DeliveryError(
            f"report {payload.kind} {payload.period} is about {encoded_size(message) / 1048576:.1f} MB "
            f"without the PDF, over the channel's max_message_bytes ({limit / 1048576:.1f} MB)",
            retryable=False,
        )
    return message


def make_sender(channels: Mapping[str, Any]) -> Sender:
    """The outbox sender for fault notices AND reports: use it in place of alerts.make_sender."""
    from agent.faults.notices import make_sender as alert_sender
    from agent.notify import send

    fallback: Callable[[str, str], str] = alert_sender(channels)

    def sender(channel: str, text: str) -> str:
        if not is_report_payload(text):
            return fallback(channel, text)
        settings = channels.get(channel)
        if settings is None:
            raise SendError(f"channel {channel!r} is not configured", retryable=False)
        try:
            payload = ReportPayload.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise SendError(f"unreadable report row: {exc}", retryable=False) from None
        try:
            return str(send(settings, load_report_message(payload, settings)))
        except DeliveryError as exc:
            raise SendError(str(exc), retryable=exc.retryable) from None

    return sender
