"""What the notification channels' settings are checked against: addresses, URLs, headers.

Shared by the channel models (agent.notify.models, run in the validating process) and the
senders, and kept free of smtplib, http.client and ssl so validation does not load them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.notify.channels import DeliveryError
from probes.plain import Methods
from probes.tcp.probe import hostport

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


class EmailMethods(Methods):
    """The addresses SMTP needs, derived from the configured header forms."""

    if TYPE_CHECKING:
        # Declared for type checkers only: a mixin has no fields of its own (the model has).
        sender: str
        to: tuple[str, ...]
        cc: tuple[str, ...]

    @property
    def envelope_from(self) -> str:
        return parse_addresses(self.sender)[0][1]

    @property
    def recipients(self) -> list[str]:
        seen: dict[str, None] = {}
        for item in (*self.to, *self.cc):
            for _, spec in parse_addresses(item):
                seen.setdefault(spec, None)
        return list(seen)


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
    bad = DeliveryError(f"the {what} is not a valid http(s) URL", retryable=False)
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
        raise DeliveryError(f"the {what} must be ASCII (percent-encode it, punycode the host)", False)
    tls = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(tls, parts.hostname, port or (443 if tls else 80), path)


HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
FRAMING_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})
