"""Notification channel settings: the pydantic models the configuration is validated with.

Only the configuration side imports this module. The monitoring process gets the channels as
plain objects (`probes.plain`) and the senders read their fields; the few derived values they
need (an e-mail channel's envelope addresses) live in `Methods` mixins next to the senders.
`ChannelSettings` is the union to use in the configuration, discriminated by `type`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from agent.config.base import Model
from agent.notify.channels import DeliveryError, check_mobile
from agent.notify.rules import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PORTS,
    FRAMING_HEADERS,
    HEADER_TOKEN,
    EmailMethods,
    parse_addresses,
    split_url,
)
from probes.settings import Duration, SecretRef

__all__ = [
    "ChannelBase",
    "ChannelSettings",
    "DingTalkChannel",
    "EmailChannel",
    "WeComChannel",
    "WebhookChannel",
    "parse_channel",
]

Timeout = Annotated[Duration, Field(le=600)]


class ChannelBase(Model):
    """Settings every channel has: a bounded time budget and TLS trust."""

    # A validation error must not echo the rejected input: it may be an inline token or URL.
    model_config = ConfigDict(hide_input_in_errors=True)

    timeout: Timeout = 30.0
    """Upper bound of one delivery attempt (HTTP: the whole request; SMTP: each command)."""
    verify_tls: bool = True
    ca_bundle: Path | None = None
    """PEM file of CA certificates to trust instead of the system's (absolute path)."""

    @field_validator("ca_bundle")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        if v is not None and not (v.is_absolute() or re.match(r"^[A-Za-z]:[\\/]", str(v))):
            raise ValueError("ca_bundle must be an absolute path")
        return v

    @model_validator(mode="after")
    def _tls_combination(self) -> ChannelBase:
        if not self.verify_tls and self.ca_bundle is not None:
            raise ValueError("ca_bundle has no effect with verify_tls: false")
        return self


class EmailChannel(EmailMethods, ChannelBase):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    """Defaults by security: starttls 587, ssl 465, none 25."""
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretRef | None = None
    sender: str
    """From header, may carry a display name: 'HIS 监控 <monitor@hospital.cn>'."""
    to: tuple[str, ...] = Field(min_length=1)
    cc: tuple[str, ...] = ()
    helo_name: str | None = None
    """Name sent in EHLO; default is this host's name (no DNS lookup, which can hang)."""
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=64 * 1024, le=200 * 1024 * 1024)
    """Largest encoded message this channel sends (base64 makes attachments ~4/3 larger)."""

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("port") is None:
            security = data.get("security", "starttls")
            data = {**data, "port": DEFAULT_PORTS.get(security, 587)}
        return data

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str) -> str:
        if len(parse_addresses(v)) != 1:
            raise ValueError("sender must be exactly one address")
        return v

    @field_validator("to", "cc")
    @classmethod
    def _recipients(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            parse_addresses(item)
        return v

    @field_validator("host", "helo_name")
    @classmethod
    def _hostname(cls, v: str | None) -> str | None:
        if v is not None and (not v.isascii() or any(c.isspace() for c in v) or not v):
            raise ValueError("must be an ASCII host name or address without spaces")
        return v

    @model_validator(mode="after")
    def _auth(self) -> EmailChannel:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.password is not None and self.security == "none":
            raise ValueError("a password would cross the network in clear text: use security starttls or ssl")
        return self


def _mobiles(v: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(check_mobile(m) for m in v)


Mobiles = Annotated[tuple[str, ...], AfterValidator(_mobiles)]
"""Mobile numbers a robot message @-mentions (checked, as the robots need them)."""


class DingTalkChannel(ChannelBase):
    type: Literal["dingtalk"]
    webhook: SecretRef
    """The robot's webhook URL (with its access_token), e.g. '${DINGTALK_WEBHOOK}'."""
    secret: SecretRef | None = None
    """The 加签 secret ('SEC…') when the robot's security setting is signing."""
    mention_mobiles: Mobiles = ()
    at_all: bool = False


class WeComChannel(ChannelBase):
    type: Literal["wecom"]
    webhook: SecretRef
    """The robot's webhook URL (with its key), e.g. '${WECOM_WEBHOOK}'."""
    mention_mobiles: Mobiles = ()


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
            if not HEADER_TOKEN.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if name.lower() in FRAMING_HEADERS:
                raise ValueError(f"header {name} is set by the agent")
        return v


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
