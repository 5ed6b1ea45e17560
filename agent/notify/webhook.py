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
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agent.config.base import FAULT_LEVELS
from agent.notify.channels import DeliveryError, Message, reveal
from agent.notify.httppost import http_status_error, post_json
from probes.values import Secret

if TYPE_CHECKING:
    from agent.config.channels import WebhookChannel

__all__ = ["PAYLOAD_VERSION", "build_payload", "secret_header", "send_webhook"]

log = logging.getLogger("agent.notify.webhook")

PAYLOAD_VERSION = 1
"""Headers the agent writes itself; a configured secret header may not replace them."""
WHAT = "webhook"


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
