"""What every notification channel shares at run time: the message, the delivery error, helpers.

A channel's `send()` delivers one `Message` once and returns a short receipt, or raises
`DeliveryError`. It never retries: the outbox owns retries, so it needs to know whether a
retry can help. `retryable=True` means "the same message sent later, with the same
configuration, may well go through" (timeouts, refused connections, 4xx SMTP replies, rate
limits, 5xx); `retryable=False` means a person has to change something first (wrong password,
bad token or signature, recipient rejected with 5xx, TLS certificate not trusted).

Secrets (SMTP password, robot webhook URLs that carry their token, signing secrets, webhook
header values) are revealed at send time only and are scrubbed from every reason text; errors
name the host and port, never the URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.config.channels import check_mobile
from probes.values import Secret, SecretError

__all__ = [
    "TRUNCATION_NOTICE",
    "DeliveryError",
    "Message",
    "fit_utf8",
    "merge_mobiles",
    "reveal",
    "scrub",
]

TRUNCATION_NOTICE = "\n…（内容过长，已截断，完整内容见邮件或报告）"
"""Appended where a chat message had to be cut to the platform's size limit."""

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the e-mail channel writes itself; letting a caller set them would produce duplicates
# or a message that contradicts its own envelope. Message-ID may be set (stable IDs let mail
# clients drop a duplicate after an ambiguous retry), and In-Reply-To/References thread a
# recovery notice under its alert.
_RESERVED_HEADERS = frozenset(
    {
        "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date", "mime-version",
        "content-type", "content-transfer-encoding", "content-disposition", "content-id",
        "return-path", "received",
    }
)  # fmt: skip
# A Content-ID is referenced from HTML as src="cid:…"; keep it to characters that need no
# escaping there and are valid in an RFC 5322 msg-id.
_CID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,99}$")
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DeliveryError(Exception):
    """A message that was not delivered. `reason` never contains a secret."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"DeliveryError({self.reason!r}, retryable={self.retryable})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickles only `args`; the outbox may hand errors across processes.
        return (DeliveryError, (self.reason, self.retryable))


def check_header(name: str, value: str) -> None:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"invalid header name {name!r}")
    if name.lower() in _RESERVED_HEADERS:
        raise ValueError(f"header {name} is set by the channel itself")
    if _CONTROL.search(value):
        raise ValueError(f"header {name}: value must not contain line breaks or control characters")


def _check_parts(kind: str, parts: Iterable[Any], key: str) -> tuple[tuple[str, str, bytes], ...]:
    out = []
    for item in parts:
        if not (isinstance(item, tuple | list) and len(item) == 3):
            raise ValueError(f"{kind} must be ({key}, mime type, bytes) triples")
        name, mime, data = item
        if not isinstance(name, str) or not name.strip() or _CONTROL.search(name):
            raise ValueError(f"{kind}: {key} must be a non-empty single-line string")
        if not isinstance(mime, str) or not _MIME_TYPE.match(mime.lower()):
            raise ValueError(f"{kind} {name!r}: {mime!r} is not a MIME type like 'application/pdf'")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"{kind} {name!r}: content must be bytes")
        out.append((name, mime.lower(), bytes(data)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Message:
    """One notification, rendered for every kind of channel.

    `text` is the plain-text body (e-mail text part; chat fallback). `html` is the e-mail HTML
    part, `markdown` the complete chat body (DingTalk/WeCom; when absent the chat channels send
    `text` under the subject as a heading). `inline_images` are (cid, mime, bytes) referenced
    from the HTML as ``src="cid:<cid>"``; `attachments` are (file name, mime, bytes).
    `headers` become e-mail headers and the webhook's "headers" member.
    """

    subject: str
    text: str
    html: str | None = None
    markdown: str | None = None
    level: int | None = None
    mention_mobiles: tuple[str, ...] = ()
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    inline_images: tuple[tuple[str, str, bytes], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Validated here, not at send time: a malformed message is the caller's bug and
        # should fail where it was built, not as a delivery error in the outbox hours later.
        if not isinstance(self.subject, str) or not self.subject.strip():
            raise ValueError("subject must be a non-empty string")
        if _CONTROL.search(self.subject):
            raise ValueError("subject must be one line (no line breaks or control characters)")
        if not isinstance(self.text, str):
            raise ValueError("text is required")
        if self.level is not None and (
            isinstance(self.level, bool) or not isinstance(self.level, int) or not 1 <= self.level <= 4
        ):
            raise ValueError("level must be 1-4 (一级-四级) or None")
        mobiles = tuple(check_mobile(m) for m in self.mention_mobiles)
        attachments = _check_parts("attachments", self.attachments, "file name")
        images = _check_parts("inline_images", self.inline_images, "cid")
        for cid, _, _ in images:
            if not _CID.match(cid):
                raise ValueError(f"inline image cid {cid!r}: use letters, digits and . _ + @ - only")
        if images and self.html is None:
            raise ValueError("inline_images need an html body that references them")
        headers = dict(self.headers)
        for name, value in headers.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise ValueError("headers must map strings to strings")
            check_header(name, value)
        object.__setattr__(self, "mention_mobiles", mobiles)
        object.__setattr__(self, "attachments", attachments)
        object.__setattr__(self, "inline_images", images)
        object.__setattr__(self, "headers", MappingProxyType(headers))

    def __repr__(self) -> str:
        # Bodies and attachments can be megabytes; a log line needs only their shape.
        return (
            f"Message(subject={self.subject!r}, text={len(self.text)} chars, "
            f"html={'yes' if self.html is not None else 'no'}, "
            f"markdown={'yes' if self.markdown is not None else 'no'}, level={self.level}, "
            f"attachments={[a[0] for a in self.attachments]}, inline_images={len(self.inline_images)}, "
            f"headers={dict(self.headers)})"
        )


def merge_mobiles(*lists: Iterable[str]) -> list[str]:
    """Configured and per-message mentions together, first occurrence kept."""
    seen: dict[str, None] = {}
    for items in lists:
        for m in items:
            seen.setdefault(m, None)
    return list(seen)


def fit_utf8(text: str, max_bytes: int, notice: str = TRUNCATION_NOTICE) -> str:
    """`text` if it fits in `max_bytes` of UTF-8, else cut on a character boundary + `notice`."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    room = max_bytes - len(notice.encode("utf-8"))
    if room <= 0:
        return notice.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
    # errors="ignore" drops only the partial trailing character that the byte cut produced.
    return data[:room].decode("utf-8", "ignore") + notice


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value (longest first, so a URL goes before its token) with ***."""
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def reveal(secret: Secret, what: str) -> str:
    """The secret's value, or a non-retryable DeliveryError that names only the reference."""
    try:
        return secret.reveal()
    except SecretError as exc:
        raise DeliveryError(f"cannot read the {what}: {exc}", retryable=False) from None
    except OSError as exc:
        raise DeliveryError(f"cannot read the {what}: {exc.strerror or type(exc).__name__}", False) from None
    except UnicodeError:
        raise DeliveryError(f"cannot read the {what}: the file is not UTF-8 text", False) from None
