"""Notification channel settings: the pydantic models the configuration is validated with,
and the rules they are checked against (addresses, URLs, headers, mobiles).

The senders in agent.notify read these models. `ChannelSettings` is the union to use in the
configuration, discriminated by `type`. Nothing here loads smtplib, http.client or ssl.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from agent.config.base import Model
from probes.settings import Duration, SecretRef
from probes.tcp.probe import hostport

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_PORTS",
    "ChannelBase",
    "ChannelSettings",
    "DingTalkChannel",
    "EmailChannel",
    "InvalidUrl",
    "Target",
    "WeComChannel",
    "WebhookChannel",
    "check_mobile",
    "parse_addresses",
    "parse_channel",
    "split_url",
]

_MOBILE = re.compile(r"^\+?[0-9][0-9-]{4,19}$")


class InvalidUrl(ValueError):
    """A URL the notification channels cannot use; the text never repeats the URL."""


def check_mobile(value: str) -> str:
    if not _MOBILE.match(value):
        raise ValueError(f"{value!r} is not a mobile number (digits, optionally +country code)")
    return value


DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_MAX_MESSAGE_BYTES = 20 * 1024 * 1024
"""Encoded size; many hospital relays (and Exchange's default) refuse more than 20–25 MB."""


def parse_addresses(value: str) -> list[tuple[str, str]]:
    """'张工 <zhang@h.cn>, li@h.cn' -> [(display name, addr-spec), …]; ValueError if malformed."""
    # Imported here: the e-mail header machinery is large, and most validations have no address.
    from email import policy

    header = policy.default.header_factory("To", value)
    addresses = getattr(header, "addresses", ())
    if header.defects or not addresses:
        hint = "" if value.isascii() else " (the address itself must be ASCII; display names may be Chinese)"
        raise ValueError(f"{value!r} is not a valid e-mail address{hint}")
    out = []
    for a in addresses:
        spec = a.addr_spec
        if "@" not in spec or not a.username or not a.domain:
            raise ValueError(f"{value!r} is not a valid e-mail address (need name@domain)")
        if not spec.isascii():
            raise ValueError(f"{spec!r}: the address itself must be ASCII (punycode the domain)")
        out.append((a.display_name, spec))
    return out


@dataclass(frozen=True, slots=True)
class Target:
    tls: bool
    host: str
    port: int
    path: str  # path and query, as sent in the request line

    @property
    def where(self) -> str:
        return hostport(self.host, self.port)


def split_url(url: str, what: str) -> Target:
    """Parse an http(s) URL; the error never repeats the URL (it may hold a token)."""
    bad = InvalidUrl(f"the {what} is not a valid http(s) URL")
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise bad
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise bad from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        raise bad
    if not url.isascii():
        raise InvalidUrl(f"the {what} must be ASCII (percent-encode it, punycode the host)")
    tls = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(tls, parts.hostname, port or (443 if tls else 80), path)


HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
FRAMING_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})


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


class EmailChannel(ChannelBase):
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

    @property
    def envelope_from(self) -> str:
        """The SMTP envelope sender: the address of `sender` (validated to be exactly one)."""
        return parse_addresses(self.sender)[0][1]

    @property
    def recipients(self) -> list[str]:
        """Envelope recipients: every address of `to` and `cc`, once each, in order."""
        seen: dict[str, None] = {}
        for item in (*self.to, *self.cc):
            for _, spec in parse_addresses(item):
                seen.setdefault(spec, None)
        return list(seen)


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
        split_url(v, "url")  # InvalidUrl is a ValueError: pydantic reports it at the key
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
