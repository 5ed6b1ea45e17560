"""E-mail over SMTP: STARTTLS or implicit TLS, verified by default, AUTH only when configured.

MIME layout (what Outlook, Foxmail and mobile clients render best)::

    multipart/mixed                      (only with attachments)
      multipart/alternative              (only with an HTML body)
        text/plain
        multipart/related                (only with inline images)
          text/html                      <img src="cid:chart1">
          image/png  Content-ID: <chart1>
      application/pdf  巡检报告.pdf

Attachment file names: Content-Disposition carries the RFC 2231 form (``filename*=utf-8''…``,
split into ``filename*0*`` … continuations when long), which standards-following clients read;
Content-Type carries ``name="=?utf-8?b?…?="`` (RFC 2047 words), which is what Outlook and older
Foxmail versions look at when they ignore RFC 2231. ASCII names stay plain in both.

Size: `max_message_bytes` bounds the encoded message (what crosses the wire, base64 included).
Relays commonly refuse 10–25 MB; a message over the bound is refused before connecting, not
retried, so a report with a huge PDF fails visibly instead of bouncing hours later.

Non-ASCII headers are RFC 2047 encoded words; bodies are base64 or quoted-printable, never raw
8-bit, because hospital relays without 8BITMIME still exist. The envelope sender and every
recipient address must be ASCII (display names may be Chinese).

Failures: connection refused, timeouts, dropped connections, TLS handshake errors and every
4xx reply are retryable; 5xx replies (authentication 535, recipient 550, size 552), a server
without STARTTLS or AUTH, and an untrusted certificate are not. If the server accepts some
recipients and refuses others the message counts as delivered (retrying would duplicate it for
the accepted ones); the receipt names the refused addresses and a warning is logged.

`timeout` bounds each SMTP command (connect, greeting, every reply), as smtplib applies it per
socket operation; a delivery is a handful of commands.
"""

from __future__ import annotations

import base64
import logging
import re
import smtplib
import socket
import ssl
from datetime import datetime
from email import policy
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

from agent.config.channels import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PORTS, parse_addresses
from agent.notify.channels import DeliveryError, Message, reveal, scrub
from probes.http.probe import tls_context
from probes.tcp.probe import describe_connect_error, hostport

if TYPE_CHECKING:
    from agent.config.channels import EmailChannel

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_PORTS",
    "build_email",
    "encoded_size",
    "parse_addresses",
    "send_email",
]

log = logging.getLogger("agent.notify.email")

# SMTP policy (CRLF, 78-column folding), but 7-bit transfer encodings for every body part.
_POLICY = policy.SMTP.clone(cte_type="7bit")


def build_email(settings: EmailChannel, message: Message, *, now: datetime | None = None) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = message.subject
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.to)
    if settings.cc:
        msg["Cc"] = ", ".join(settings.cc)
    msg["Date"] = format_datetime((now or datetime.now()).astimezone())
    given_id = next((v for k, v in message.headers.items() if k.lower() == "message-id"), None)
    # make_msgid() without a domain asks DNS for this host's FQDN, which can hang for seconds.
    msg["Message-ID"] = given_id or make_msgid(domain=settings.envelope_from.rpartition("@")[2])
    for name, value in message.headers.items():
        if name.lower() != "message-id":
            msg[name] = value

    msg.set_content(message.text)
    if message.html is not None:
        msg.add_alternative(message.html, subtype="html")
        html_part = _last_part(msg)
        for cid, mime, data in message.inline_images:
            maintype, subtype = mime.split("/", 1)
            html_part.add_related(data, maintype, subtype, cid=f"<{cid}>", disposition="inline")
    for filename, mime, data in message.attachments:
        maintype, subtype = mime.split("/", 1)
        msg.add_attachment(data, maintype, subtype, filename=filename)
        part = _last_part(msg)
        # name= on Content-Type as well: some clients ignore Content-Disposition's filename.
        # set_raw keeps our RFC 2047 words; the header classes would re-encode them as RFC 2231.
        del part["Content-Type"]
        part.set_raw("Content-Type", f"{mime};\n name={_quoted_name(filename)}")
    for part in msg.walk():
        if part is not msg:
            # add_related/add_attachment give every part its own MIME-Version; only the top
            # level may carry one (RFC 2045 §4), and strict gateways flag the rest.
            del part["MIME-Version"]
    return msg


def _last_part(msg: EmailMessage) -> EmailMessage:
    """The part just added to a multipart message (its payload is then a list of parts)."""
    parts = msg.get_payload()
    assert isinstance(parts, list) and isinstance(parts[-1], EmailMessage)
    return parts[-1]


def _quoted_name(filename: str) -> str:
    """Content-Type name parameter: plain when ASCII, else folded RFC 2047 words in quotes."""
    if filename.isascii() and '"' not in filename and "\\" not in filename and len(filename) < 60:
        return f'"{filename}"'
    # Header folds between whole encoded words ("\n "), each within the 75-character limit.
    return '"' + Header(filename, "utf-8", header_name="Content-Type").encode(maxlinelen=70) + '"'


def encoded_size(message: Message) -> int:
    """An upper estimate of the encoded size of `message`, without building it.

    Base64 lines are 76 characters + CRLF: 4/3 of the data plus 2/76 for line ends.
    """
    raw = len(message.text.encode("utf-8")) + len((message.html or "").encode("utf-8"))
    raw += sum(len(d) for _, _, d in message.attachments) + sum(len(d) for _, _, d in message.inline_images)
    parts = 2 + len(message.attachments) + len(message.inline_images)
    return raw * 4 // 3 * 78 // 76 + 1024 * parts + 4096


class _KeepDataReply:
    """Keeps the reply to DATA, which carries the queue id; sendmail() throws it away."""

    data_reply: tuple[int, bytes] | None = None

    def data(self, msg: Any) -> tuple[int, bytes]:
        reply: tuple[int, bytes] = super().data(msg)  # type: ignore[misc]
        self.data_reply = reply
        return reply


class _SMTP(_KeepDataReply, smtplib.SMTP):
    pass


class _SMTPS(_KeepDataReply, smtplib.SMTP_SSL):
    pass


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())[:200]


def _by_code(code: int) -> bool:
    """4xx is a transient refusal; 5xx is permanent; anything else is a confused peer: retry."""
    return not 500 <= code < 600


def _failure(exc: BaseException, host: str, port: int, timeout: float, secrets: list[str]) -> DeliveryError:
    where = hostport(host, port)

    def err(reason: str, retryable: bool) -> DeliveryError:
        return DeliveryError(scrub(f"SMTP {where}: {reason}", secrets), retryable)

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{rcpt} {code} {_text(text)}" for rcpt, (code, text) in exc.recipients.items())
        return err(f"all recipients refused: {detail}", all(400 <= c < 500 for c in codes))
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return err(
            f"authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}", exc.smtp_code // 100 == 4
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return err(f"{_text(exc)} (check security and username)", False)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return err(
            f"sender {exc.sender} refused: {exc.smtp_code} {_text(exc.smtp_error)}", _by_code(exc.smtp_code)
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return err(f"{exc.smtp_code} {_text(exc.smtp_error)}", _by_code(exc.smtp_code))
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib reports a read timeout as a disconnect; the timeout is the useful part.
        if isinstance(exc.__context__, TimeoutError):
            return err(f"no answer within {timeout:g} s", True)
        return err("the server closed the connection unexpectedly", True)
    if isinstance(exc, smtplib.SMTPException):
        return err(f"{type(exc).__name__}: {_text(exc)}", True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "certificate not trusted"
        return err(f"TLS verification failed: {reason} (set ca_bundle to trust a private CA)", False)
    if isinstance(exc, ssl.SSLError):
        return err(f"TLS error: {exc.reason or 'handshake failed'}", True)
    if isinstance(exc, TimeoutError):
        return err(f"no answer within {timeout:g} s", True)
    if isinstance(exc, OSError):
        reason = describe_connect_error(exc, host, port, timeout)
        return DeliveryError(scrub(f"SMTP: {reason}", secrets), True)
    if isinstance(exc, UnicodeError):
        return err("the user name, password or HELO name has characters SMTP cannot send (use ASCII)", False)
    return err(type(exc).__name__, True)


def _default_helo() -> str:
    # smtplib's default asks DNS for this host's FQDN (can hang for seconds on hospital
    # networks); the plain host name is instant. A name SMTP cannot carry (Windows machines
    # often have Chinese names) falls back to "localhost"; set helo_name if a server minds.
    name = socket.gethostname()
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", name or "") else "localhost"


def send_email(settings: EmailChannel, message: Message) -> str:
    s = settings
    where = hostport(s.host, s.port)
    password = reveal(s.password, "SMTP password") if s.password is not None else None
    secrets: list[str] = []
    if password is not None:
        user = s.username or ""
        secrets += [
            password,
            base64.b64encode(password.encode("utf-8")).decode("ascii"),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii"),
        ]
    msg = build_email(s, message)
    data = msg.as_bytes()
    if len(data) > s.max_message_bytes:
        raise DeliveryError(
            f"SMTP {where}: the message is {len(data) / 1048576:.1f} MB encoded, over this channel's "
            f"max_message_bytes ({s.max_message_bytes / 1048576:.1f} MB); not sent",
            retryable=False,
        )
    ctx: ssl.SSLContext | None = None
    if s.security != "none":
        try:
            ctx = tls_context(s.verify_tls, str(s.ca_bundle) if s.ca_bundle is not None else None)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
            raise DeliveryError(f"SMTP: cannot load ca_bundle {s.ca_bundle}: {reason}", False) from None
    helo = s.helo_name or _default_helo()
    smtp: _SMTP | _SMTPS | None = None
    try:
        if s.security == "ssl":
            smtp = _SMTPS(s.host, s.port, local_hostname=helo, timeout=s.timeout, context=ctx)
        else:
            smtp = _SMTP(s.host, s.port, local_hostname=helo, timeout=s.timeout)
        if s.security == "starttls":
            smtp.starttls(context=ctx)
        if s.username is not None and password is not None:
            smtp.login(s.username, password)
        refused = smtp.sendmail(s.envelope_from, s.recipients, data)
        code, reply = smtp.data_reply or (250, b"")
    except (smtplib.SMTPException, OSError, UnicodeError) as exc:
        if smtp is not None:
            smtp.close()
        raise _failure(exc, s.host, s.port, s.timeout, secrets) from None
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        # The message is already queued; a failed goodbye must not turn into a retry (duplicate).
        smtp.close()
    receipt = f"{code} {_text(reply)}".strip()
    if refused:
        listed = "; ".join(f"{rcpt} {c} {_text(t)}" for rcpt, (c, t) in refused.items())
        receipt += f"; refused: {listed}"
        log.warning("SMTP %s accepted %r but refused some recipients: %s", where, message.subject, listed)
    receipt += f"; Message-ID {msg['Message-ID']}"
    log.debug("SMTP %s accepted %r: %s", where, message.subject, receipt)
    return receipt
