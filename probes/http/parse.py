"""What the HTTP probe reads from its settings: status ranges, JSON paths, URLs, header checks.

Used both by the settings' validators (probes.http.settings) and by the probe, so
configuration errors and run-time behaviour come from one reading of the values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote_from_bytes, urlsplit

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")
_UNSAFE_URL_CHARS = re.compile(r"[^\x21-\x7e]+")
_STATUS_SPEC = re.compile(r"^\s*(?:([1-5])xx|(\d{3})(?:\s*-\s*(\d{3}))?)\s*$", re.IGNORECASE)
_PATH_STEP = re.compile(r"""\.([^.\[\]\s]+)|\[(-?\d+)\]|\['([^']*)'\]|\["([^"]*)"\]""")


def parse_status_spec(item: int | str) -> tuple[int, int]:
    """200 -> (200, 200); '2xx' -> (200, 299); '200-204' -> (200, 204)."""
    if isinstance(item, bool):
        raise ValueError("expect_status entries are status codes like 200 or strings like '2xx'")
    if isinstance(item, int):
        lo = hi = item
    else:
        m = _STATUS_SPEC.match(item)
        if m is None:
            raise ValueError(f"invalid expect_status entry {item!r}: use 200, '2xx' or '200-204'")
        if m.group(1):
            lo = int(m.group(1)) * 100
            hi = lo + 99
        else:
            lo = int(m.group(2))
            hi = int(m.group(3) or m.group(2))
    if not 100 <= lo <= hi <= 599:
        raise ValueError(f"invalid expect_status entry {item!r}: status codes run from 100 to 599")
    return lo, hi


def merge_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def describe_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    def one(lo: int, hi: int) -> str:
        if lo == hi:
            return str(lo)
        if lo % 100 == 0 and hi == lo + 99:
            return f"{lo // 100}xx"
        return f"{lo}-{hi}"

    return ", ".join(one(lo, hi) for lo, hi in ranges)


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """'$.a.b[0].c' -> ('a', 'b', 0, 'c'); see the module docstring for the subset."""
    if not path.startswith("$"):
        raise ValueError(f"JSONPath {path!r} must start with '$'")
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _PATH_STEP.match(path, pos)
        if m is None or m.group(1) == "*":
            raise ValueError(
                f"JSONPath {path!r}: unsupported syntax at position {pos}; "
                "use $, .name, [index] or ['name'] (no wildcards, slices or filters)"
            )
        name, index, single, double = m.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(next(s for s in (name, single, double) if s is not None))
        pos = m.end()
    return tuple(steps)


def _ascii_host(host: str) -> str:
    return host if host.isascii() else host.encode("idna").decode("ascii")


@dataclass(frozen=True, slots=True)
class Target:
    """One URL split into what a request needs."""

    url: str
    tls: bool
    host: str
    port: int
    path: str
    """Request target: path and query, percent-encoded."""
    netloc: str
    """Default Host header."""

    @property
    def origin(self) -> tuple[bool, str, int]:
        return self.tls, self.host, self.port

    @classmethod
    def parse(cls, url: str, encoding: str = "utf-8") -> Target:
        """Raises ValueError with a message fit for a configuration error."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"URL scheme must be http or https, not {scheme or 'missing'!r}")
        if "@" in parts.netloc:
            raise ValueError("credentials in the URL are not allowed; use basic_auth with a secret reference")
        host = parts.hostname
        if not host:
            raise ValueError("URL has no host")
        try:
            explicit_port = parts.port
        except ValueError:
            raise ValueError("URL has an invalid port") from None
        tls = scheme == "https"
        default_port = 443 if tls else 80
        port = explicit_port or default_port
        try:
            ascii_host = _ascii_host(host)
        except UnicodeError:
            raise ValueError(f"host {host!r} is not a valid domain name") from None
        shown = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
        netloc = shown if port == default_port else f"{shown}:{port}"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        # Encode what http.client would reject (spaces, non-ASCII) instead of failing the run.
        path = _UNSAFE_URL_CHARS.sub(lambda m: quote_from_bytes(m.group().encode(encoding, "replace")), path)
        return cls(url, tls, host, port, path, netloc)


def check_header_name(name: str) -> str:
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name {name!r}")
    return name


def check_header_value(name: str, value: str) -> str:
    if BAD_HEADER_VALUE.search(value):
        raise ValueError(f"header {name}: value must not contain line breaks or NUL")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"header {name}: HTTP header values must be ASCII (or latin-1)") from None
    return value

