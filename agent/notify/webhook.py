"""Generic webhook: one JSON POST per message, for a hospital's own ops platform or a relay.

Payload (UTF-8 JSON, ``Content-Type: application/json; charset=utf-8``)::

    {
      "version": 1,                       # bumped if members change meaning
      "subject": "【一级】HIS 数据库不可用",
      "text": "plain-text body",
      "markdown": "chat body" | null,
      "level": 1 | 2 | 3 | 4 | null,      # fault level
      "level_name": "一级" | … | null,
      "mention_mobiles": ["13800000000"],
      "headers": {"X-Sentinel-Fault": "F-2024-0001"},   # Message.headers, e.g. for dedup
      "sent_at": "2024-05-01T02:03:04Z"   # UTC, when this attempt was made
    }

HTML bodies, inline images and attachments are not sent (reports go by e-mail).
Success is any 2xx; 408, 425, 429 and 5xx are retryable, other statuses are not, and
redirects are not followed. `secret_headers` (e.g. ``Authorization: '${OPS_TOKEN}'``) are
revealed per request and scrubbed from every error.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import field_validator

from agent.model import FAULT_LEVELS
from agent.notify.channels import ChannelBase, DeliveryError, Message, reveal
from agent.notify.httppost import http_status_error, post_json, split_url
from probes.settings import Secret, SecretRef

__all__ = ["PAYLOAD_VERSION", "WebhookChannel", "build_payload", "secret_header", "send_webhook"]

log = logging.getLogger("agent.notify.webhook")

PAYLOAD_VERSION = 1
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FRAMING = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})
WHAT = "webhook"


class WebhookChannel(ChannelBase):
    type: Literal["webhook"]
    url: str
    """http:// or https:// URL. Put tokens in secret_headers, not in the URL."""
    secret_headers: dict[str, SecretRef] = {}

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if "@" in v.partition("//")[2].partition("/")[0]:
            # The URL is stored in the configuration, logs and reports; a password must not be.
            raise ValueError("no user:password in the URL; send credentials with secret_headers")
        try:
            split_url(v, "url")
        except DeliveryError as exc:
            raise ValueError(exc.reason) from None
        return v

    @field_validator("secret_headers")
    @classmethod
    def _headers(cls, v: dict[str, SecretRef]) -> dict[str, SecretRef]:
        for name in v:
            if not _TOKEN.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if name.lower() in _FRAMING:
                raise ValueError(f"header {name} is set by the agent")
        return v


def build_payload(message: Message, now: datetime | None = None) -> dict[str, object]:
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": PAYLOAD_VERSION,
        "subject": message.subject,
        "text": message.text,
        "markdown": message.markdown,
        "level": message.level,
        "level_name": FAULT_LEVELS.get(message.level) if message.level is not None else None,
        "mention_mobiles": list(message.mention_mobiles),
        "headers": dict(message.headers),
        "sent_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def secret_header(name: str, ref: Secret) -> str:
    """The header's value, revealed now; DeliveryError if unreadable or not a header value."""
    value = reveal(ref, f"secret for header {name}")
    if not value.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise DeliveryError(f"the secret for header {name} contains line breaks or non-ASCII text", False)
    return value


def send_webhook(settings: WebhookChannel, message: Message) -> str:
    headers: dict[str, str] = {}
    secrets: list[str] = []
    for name, ref in settings.secret_headers.items():
        headers[name] = secret_header(name, ref)
        secrets.append(headers[name])
    reply = post_json(
        settings.url,
        build_payload(message),
        what=WHAT,
        timeout=settings.timeout,
        verify_tls=settings.verify_tls,
        ca_bundle=settings.ca_bundle,
        headers=headers,
        secrets=secrets,
    )
    if not 200 <= reply.status < 300:
        raise http_status_error(WHAT, reply, secrets)
    log.debug("webhook accepted %r: HTTP %d", message.subject, reply.status)
    return f"HTTP {reply.status}"
