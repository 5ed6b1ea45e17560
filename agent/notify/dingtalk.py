"""DingTalk (钉钉) custom group robot (自定义机器人).

Protocol, as documented by DingTalk and confirmed against client libraries:

- POST JSON to the robot's webhook URL, ``https://oapi.dingtalk.com/robot/send?access_token=…``.
  The URL carries the access token, so it is configured as a secret.
- 加签 (signing): ``timestamp`` = now in milliseconds; ``sign`` = URL-encoded
  base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")); both are added to the query.
  DingTalk rejects a timestamp more than an hour away from its clock (errcode 310000).
- Body: ``{"msgtype": "markdown", "markdown": {"title", "text"}, "at": {"atMobiles", "isAtAll"}}``.
  A mention only notifies when ``@<mobile>`` also appears in the text, so it is appended.
  ``title`` only shows in the conversation list and the push notification.
- Limits: request body at most 20 000 bytes (errcode 460101 "message too long"); 20 messages a
  minute per robot, beyond that errcode 130101 "send too fast" and about ten minutes of block.
  Longer text is cut on a character boundary with a visible notice; the mentions are kept.
- Failures come back as HTTP 200 with a non-zero ``errcode``.

Retry policy for non-zero errcodes: 300001/300005 (token invalid or unknown), 310000
(security settings: signature mismatch, timestamp off by more than an hour, keyword missing,
IP not allowed) and 460101 (too long) need a person and are not retryable. Everything else is
retried — 130101 (rate limit), -1 (system busy) and any code not listed here (see
httppost.check_errcode for why unknown codes are retried).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, urlsplit, urlunsplit

from agent.notify.channels import TRUNCATION_NOTICE, Message, fit_utf8, merge_mobiles, reveal
from agent.notify.httppost import check_errcode, post_json, url_secrets

if TYPE_CHECKING:
    from agent.config.channels import DingTalkChannel

__all__ = [
    "MAX_BODY_BYTES",
    "PERMANENT_ERRCODES",
    "build_payload",
    "send_dingtalk",
    "sign",
]

log = logging.getLogger("agent.notify.dingtalk")

MAX_BODY_BYTES = 20_000
PERMANENT_ERRCODES = {
    300001: "the access token in the webhook URL is invalid",
    300005: "the access token in the webhook URL does not exist; was the robot removed?",
    310000: "refused by the robot's security settings (加签 secret, clock more than 1 h off, keyword "
    "or IP allow-list)",
    460101: "message too long",
}
WHAT = "DingTalk robot"


def sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's 加签 value, already URL-encoded for the query string."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def _json_len(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


def _fit_json(text: str, tail: str, max_json_bytes: int) -> str:
    """text + tail, cut so that its JSON string form fits; the tail (mentions) always stays."""
    if _json_len(text + tail) <= max_json_bytes:
        return text + tail
    # JSON escapes make the encoded size non-linear in the cut point: search it.
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _json_len(text[:mid] + TRUNCATION_NOTICE + tail) <= max_json_bytes:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + TRUNCATION_NOTICE + tail


def build_payload(settings: DingTalkChannel, message: Message) -> dict[str, object]:
    mobiles = merge_mobiles(settings.mention_mobiles, message.mention_mobiles)
    if message.markdown is not None:
        body = message.markdown
    else:
        # DingTalk's markdown joins single newlines; a blank line between lines keeps them apart.
        body = f"#### {message.subject}\n\n" + "\n\n".join(message.text.splitlines())
    missing = [m for m in mobiles if f"@{m}" not in body]
    tail = ("\n\n" + " ".join(f"@{m}" for m in missing)) if missing else ""
    title = fit_utf8(message.subject, 256, "…")
    payload: dict[str, object] = {
        "msgtype": "markdown",
        "markdown": {"title": title, "text": ""},
        "at": {"atMobiles": mobiles, "isAtAll": settings.at_all},
    }
    overhead = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    room = MAX_BODY_BYTES - overhead + _json_len("")
    payload["markdown"] = {"title": title, "text": _fit_json(body, tail, room)}
    return payload


def signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    parts = urlsplit(url)
    extra = f"timestamp={timestamp_ms}&sign={sign(secret, timestamp_ms)}"
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def send_dingtalk(
    settings: DingTalkChannel, message: Message, *, clock: Callable[[], float] = time.time
) -> str:
    url = reveal(settings.webhook, "DingTalk webhook URL")
    secrets = url_secrets(url)
    if settings.secret is not None:
        key = reveal(settings.secret, "DingTalk signing secret")
        ts = int(clock() * 1000)
        secrets += [key, sign(key, ts)]
        url = signed_url(url, key, ts)
        secrets += url_secrets(url)
    reply = post_json(
        url,
        build_payload(settings, message),
        what=WHAT,
        timeout=settings.timeout,
        verify_tls=settings.verify_tls,
        ca_bundle=settings.ca_bundle,
        secrets=secrets,
    )
    receipt = check_errcode(WHAT, reply, permanent=PERMANENT_ERRCODES, secrets=secrets)
    log.debug("DingTalk robot accepted %r: %s", message.subject, receipt)
    return receipt
