"""Notification channels: e-mail (SMTP), DingTalk and WeCom group robots, generic webhooks.

    from agent.notify import Message, send, DeliveryError
    receipt = send(settings, Message(subject="【一级】HIS 不可用", text="…", level=1))

`send()` makes exactly one delivery attempt and returns a short receipt (SMTP queue reply,
"errcode 0", "HTTP 204"). It raises `DeliveryError(reason, retryable)`; the reason never
contains a secret. Retrying, deduplication and escalation belong to the outbox.

This package is what the monitoring process runs and never imports pydantic: `send` and
`preflight` take a channel's validated settings in either form (the pydantic model or its
plain copy) and go by its `type` field. The models themselves, and `ChannelSettings`, the
union to use in the configuration, are in `agent.config.channels`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from agent.notify.channels import TRUNCATION_NOTICE, DeliveryError, Message, reveal
from agent.notify.httppost import target_of

if TYPE_CHECKING:
    from agent.config.channels import DingTalkChannel, EmailChannel, WebhookChannel, WeComChannel

    Channel = EmailChannel | DingTalkChannel | WeComChannel | WebhookChannel

__all__ = [
    "TRUNCATION_NOTICE",
    "DeliveryError",
    "Message",
    "preflight",
    "send",
]

# Sender modules are imported when a channel of their type first sends: validating a
# configuration (which imports this package for the models) then never loads smtplib or ssl.
_SENDERS: dict[str, tuple[str, str]] = {
    "email": ("agent.notify.email", "send_email"),
    "dingtalk": ("agent.notify.dingtalk", "send_dingtalk"),
    "wecom": ("agent.notify.wecom", "send_wecom"),
    "webhook": ("agent.notify.webhook", "send_webhook"),
}


def _kind(settings: object) -> str:
    kind = getattr(settings, "type", None)
    if not isinstance(kind, str) or kind not in _SENDERS:
        raise TypeError(f"not a channel's settings: {type(settings).__name__}")
    return kind


def send(settings: Channel, message: Message) -> str:
    """Deliver `message` once over the channel `settings` describe; see the module docstring."""
    module, name = _SENDERS[_kind(settings)]
    sender: Callable[[Any, Message], str] = getattr(importlib.import_module(module), name)
    return sender(settings, message)


def preflight(settings: Channel) -> list[str]:
    """Read every secret the channel needs and check its shape, without sending anything.

    Returns the problems (texts without secret values); empty when the channel is usable.
    Meant for `sentinel config validate` and daemon start, so a robot URL in the wrong
    variable shows up at start and not with the first 一级 alert.
    """
    kind = _kind(settings)
    s: Any = settings
    checks: list[Callable[[], object]] = []
    if kind == "email" and s.password is not None:
        password = s.password
        checks.append(lambda: reveal(password, "SMTP password"))
    if kind in ("dingtalk", "wecom"):
        what = f"{'DingTalk' if kind == 'dingtalk' else 'WeCom'} webhook URL"
        webhook = s.webhook
        checks.append(lambda: target_of(reveal(webhook, what), what))
    if kind == "dingtalk" and s.secret is not None:
        key = s.secret
        checks.append(lambda: reveal(key, "DingTalk signing secret"))
    if kind == "webhook":
        from agent.notify.webhook import secret_header

        checks.extend(partial(secret_header, name, ref) for name, ref in s.secret_headers.items())
    problems = []
    for check in checks:
        try:
            check()
        except DeliveryError as exc:
            problems.append(exc.reason)
    return problems
