"""WeCom (企业微信) group robot (群机器人).

Protocol (developer.work.weixin.qq.com, document 91770 "群机器人配置说明"):

- POST JSON to ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…``; the key is the
  only credential, so the whole URL is a secret.
- markdown: ``{"msgtype": "markdown", "markdown": {"content": …}}``, content at most 4096 bytes
  of UTF-8 (errcode 40058 "markdown.content exceed max length 4096").
- text: ``{"msgtype": "text", "text": {"content": …, "mentioned_mobile_list": [...]}}``,
  content at most 2048 bytes. Only text messages can mention by mobile number; markdown can
  only mention by WeCom user id (``<@userid>``), which the agent does not know.
- 20 messages a minute per robot (errcode 45009 "api freq out of limit").
- Failures come back as HTTP 200 with a non-zero ``errcode``.

Mentions: when mobiles are to be mentioned (configured or per message), ONE text message is
sent instead of markdown, carrying the subject and the plain text. Not markdown followed by a
second text message: two requests would use two of the 20 per minute and could half-succeed,
and the outbox's retry of the pair would then post the first one twice.

Too long content is cut on a character boundary with a visible notice.

Retry policy: 93000 (invalid webhook key — robot removed or key wrong), 40008 (invalid
message type) and 40058 (invalid parameter, e.g. too long) are not retryable; 45009 (rate
limit), -1 (system busy) and every undocumented code are.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.notify.channels import Message, fit_utf8, merge_mobiles, reveal
from agent.notify.httppost import check_errcode, post_json, url_secrets

if TYPE_CHECKING:
    from agent.config.channels import WeComChannel

__all__ = [
    "MARKDOWN_MAX_BYTES",
    "PERMANENT_ERRCODES",
    "TEXT_MAX_BYTES",
    "build_payload",
    "send_wecom",
]

log = logging.getLogger("agent.notify.wecom")

MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048
PERMANENT_ERRCODES = {
    93000: "invalid webhook key: was the robot removed from the group?",
    40008: "invalid message type",
    40058: "invalid parameter",
}
WHAT = "WeCom robot"


def build_payload(settings: WeComChannel, message: Message) -> dict[str, object]:
    mobiles = merge_mobiles(settings.mention_mobiles, message.mention_mobiles)
    if mobiles:
        content = fit_utf8(f"{message.subject}\n{message.text}", TEXT_MAX_BYTES)
        return {"msgtype": "text", "text": {"content": content, "mentioned_mobile_list": mobiles}}
    content = message.markdown if message.markdown is not None else f"### {message.subject}\n{message.text}"
    return {"msgtype": "markdown", "markdown": {"content": fit_utf8(content, MARKDOWN_MAX_BYTES)}}


def send_wecom(settings: WeComChannel, message: Message) -> str:
    url = reveal(settings.webhook, "WeCom webhook URL")
    secrets = url_secrets(url)
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
    log.debug("WeCom robot accepted %r: %s", message.subject, receipt)
    return receipt
