"""Notification channels: e-mail (SMTP), DingTalk and WeCom group robots, generic webhooks.

    from agent.notify import Message, send, DeliveryError
    receipt = send(settings, Message(subject="【一级】HIS 不可用", text="…", level=1))

`send()` makes exactly one delivery attempt and returns a short receipt (SMTP queue reply,
"errcode 0", "HTTP 204"). It raises `DeliveryError(reason, retryable)`; the reason never
contains a secret. Retrying, deduplication and escalation belong to the outbox.

Channel settings are pydantic models discriminated by `type`; `ChannelSettings` is the union
to use in the configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated

from pydantic import ConfigDict, Field, TypeAdapter

from agent.notify.channels import TRUNCATION_NOTICE, DeliveryError, Message, reveal
from agent.notify.dingtalk import DingTalkChannel, send_dingtalk
from agent.notify.email import EmailChannel, send_email
from agent.notify.httppost import split_url
from agent.notify.webhook import WebhookChannel, secret_header, send_webhook
from agent.notify.wecom import WeComChannel, send_wecom

__all__ = [
    "TRUNCATION_NOTICE",
    "ChannelSettings",
    "DeliveryError",
    "DingTalkChannel",
    "EmailChannel",
    "Message",
    "WeComChannel",
    "WebhookChannel",
    "parse_channel",
    "preflight",
    "send",
]

ChannelSettings = Annotated[
    EmailChannel | DingTalkChannel | WeComChannel | WebhookChannel,
    Field(discriminator="type"),
]

# Pydantic renders a rejected input (an inline token, say) in a ValidationError according to
# the OUTERMOST model's config, so the channel models' own hide_input_in_errors only helps when
# they are validated on their own or through this adapter.
_ADAPTER: TypeAdapter[EmailChannel | DingTalkChannel | WeComChannel | WebhookChannel] = TypeAdapter(
    ChannelSettings, config=ConfigDict(hide_input_in_errors=True)
)


def parse_channel(raw: object) -> EmailChannel | DingTalkChannel | WeComChannel | WebhookChannel:
    """Validate one channel's settings (a mapping with `type`); errors never echo the input."""
    return _ADAPTER.validate_python(raw)


def send(settings: EmailChannel | DingTalkChannel | WeComChannel | WebhookChannel, message: Message) -> str:
    """Deliver `message` once over the channel `settings` describe; see the module docstring."""
    if isinstance(settings, EmailChannel):
        return send_email(settings, message)
    if isinstance(settings, DingTalkChannel):
        return send_dingtalk(settings, message)
    if isinstance(settings, WeComChannel):
        return send_wecom(settings, message)
    if isinstance(settings, WebhookChannel):
        return send_webhook(settings, message)
    raise TypeError(f"not a channel's settings: {type(settings).__name__}")


def preflight(settings: EmailChannel | DingTalkChannel | WeComChannel | WebhookChannel) -> list[str]:
    """Read every secret the channel needs and check its shape, without sending anything.

    Returns the problems (texts without secret values); empty when the channel is usable.
    Meant for `sentinel config validate` and daemon start, so a robot URL in the wrong
    variable shows up at start and not with the first 一级 alert.
    """
    if not isinstance(settings, EmailChannel | DingTalkChannel | WeComChannel | WebhookChannel):
        raise TypeError(f"not a channel's settings: {type(settings).__name__}")
    checks: list[Callable[[], object]] = []
    if isinstance(settings, EmailChannel) and settings.password is not None:
        password = settings.password
        checks.append(lambda: reveal(password, "SMTP password"))
    if isinstance(settings, DingTalkChannel | WeComChannel):
        what = f"{'DingTalk' if isinstance(settings, DingTalkChannel) else 'WeCom'} webhook URL"
        webhook = settings.webhook
        checks.append(lambda: split_url(reveal(webhook, what), what))
    if isinstance(settings, DingTalkChannel) and settings.secret is not None:
        key = settings.secret
        checks.append(lambda: reveal(key, "DingTalk signing secret"))
    if isinstance(settings, WebhookChannel):
        checks.extend(partial(secret_header, name, ref) for name, ref in settings.secret_headers.items())
    problems = []
    for check in checks:
        try:
            check()
        except DeliveryError as exc:
            problems.append(exc.reason)
    return problems
