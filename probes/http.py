"""HTTP(S) probe: one fresh request per run; status, content, latency and certificate checks.

Built on the standard library's http.client rather than requests/urllib3: about a third of
the CPU per request and no connection pool. Every run opens a new connection so that
connect and TLS failures are seen, and sends ``Connection: close``.

Time budget: the whole run is bounded by ``ctx.timeout_s``. Connecting, the TLS handshake,
sending, and every single read of the status line, headers and body only get the time
that is left, so a server that accepts and never answers, never finishes the handshake or
drips its body byte by byte cannot stretch a run. Only name resolution (getaddrinfo) cannot
be interrupted; it is normally answered by the local resolver cache.

JSONPath subset used by ``json_assertions``::

    $          the whole document
    .name      member of an object (any characters except . [ ] and white space)
    ['name']   member whose name has other characters ("name" also accepted)
    [N]        array element, counted from 0; negative N counts from the end ([-1] = last)

Example: ``$.data.items[0]['patient-id']``. No wildcards, slices, filters or ``..``.
``equals`` compares with JSON semantics (``true`` is not ``1``, ``"200"`` is not ``200``);
``equals: null`` requires a JSON null, leaving ``equals`` out only tests that the path
exists; ``exists: false`` requires it to be absent.

Body text for keyword/regex/JSON: charset from Content-Type, else UTF-8, else GB18030
(older hospital systems often send GBK pages without a charset).

Redirects (``follow_redirects``) are followed for at most 5 hops within the same budget.
301/302 after POST and 303 continue as GET without the body, like browsers. Secret headers
and basic auth are only sent to the origin (scheme, host, port) of the configured URL.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote_from_bytes, urljoin, urlsplit

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch
from probes.boundary import run_guarded
from probes.settings import Duration, ProbeSettings, Regex, SecretError, SecretRef, scrub_secrets
from probes.tcp import describe_connect_error, fmt_ms, hostport, open_connection
from probes.thresholds import Threshold

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAX_REDIRECTS",
    "BasicAuth",
    "JsonAssertion",
    "Probe",
    "Settings",
    "der_not_after",
    "parse_json_path",
    "parse_status_spec",
    "tls_context",
]

# The probe judges latency and certificate age from its own settings (per check); generic
# default rules on top would judge the same metrics a second time with other limits.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {}

MAX_REDIRECTS = 5
USER_AGENT = "HIS-Sentinel/0.1"
_READ_CHUNK = 64 * 1024
_EXCERPT_CHARS = 200
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_UNSAFE_URL_CHARS = re.compile(r"[^\x21-\x7e]+")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:\-]+)", re.IGNORECASE)
_STATUS_SPEC = re.compile(r"^\s*(?:([1-5])xx|(\d{3})(?:\s*-\s*(\d{3}))?)\s*$", re.IGNORECASE)
_PATH_STEP = re.compile(r"""\.([^.\[\]\s]+)|\[(-?\d+)\]|\['([^']*)'\]|\["([^"]*)"\]""")
_SECRET_HEADERS_HINT = "e.g. Authorization: '${HIS_API_TOKEN}'"


# --------------------------------------------------------------------------- settings


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


def _check_status_item(item: int | str) -> int | str:
    parse_status_spec(item)
    return item


StatusSpec = Annotated[int | str, AfterValidator(_check_status_item)]
"""200, '2xx' or '200-204'; checked per entry so an error points at the entry."""


def _merge_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _describe_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
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
class _Target:
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
    def parse(cls, url: str, encoding: str = "utf-8") -> _Target:
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


def _check_header_name(name: str) -> str:
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name {name!r}")
    return name


def _check_header_value(name: str, value: str) -> str:
    if _BAD_VALUE.search(value):
        raise ValueError(f"header {name}: value must not contain line breaks or NUL")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"header {name}: HTTP header values must be ASCII (or latin-1)") from None
    return value


class BasicAuth(ProbeSettings):
    model_config = ConfigDict(hide_input_in_errors=True)

    username: str = Field(min_length=1)
    password: SecretRef

    @field_validator("username")
    @classmethod
    def _check_username(cls, v: str) -> str:
        if ":" in v or _BAD_VALUE.search(v):
            raise ValueError("username must not contain ':' or line breaks")
        return v


class JsonAssertion(ProbeSettings):
    """`equals` is compared only when it is written in the configuration (null included)."""

    path: str
    equals: Any = None
    exists: bool = True

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        parse_json_path(v)
        return v

    @model_validator(mode="after")
    def _check_combination(self) -> JsonAssertion:
        if not self.exists and "equals" in self.model_fields_set:
            raise ValueError("equals cannot be combined with exists: false")
        return self

    @property
    def compares(self) -> bool:
        return "equals" in self.model_fields_set


class Settings(ProbeSettings):
    # Inline secrets are rejected by SecretRef; this keeps pydantic from echoing them back.
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, str] = {}
    secret_headers: dict[str, SecretRef] = {}
    """Header values read from ${ENV} or file: references at run time, e.g. Authorization."""
    basic_auth: BasicAuth | None = None
    body: str | None = None
    """Request body sent as UTF-8 (SOAP envelope, JSON); needs method POST or PUT."""
    content_type: str | None = None
    expect_status: tuple[StatusSpec, ...] = ("2xx", "3xx")
    keyword: str | None = Field(None, min_length=1)
    keyword_absent: str | None = Field(None, min_length=1)
    regex: Regex | None = None
    json_assertions: tuple[JsonAssertion, ...] = ()
    latency_warn: Duration | None = None
    latency_crit: Duration | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    """Absolute path of a PEM file with the CA certificates to trust instead of the system's."""
    cert_expiry_warn_days: int = Field(30, ge=0)
    cert_expiry_crit_days: int = Field(7, ge=0)
    follow_redirects: bool = False
    max_body_bytes: int = Field(1 << 20, ge=1, le=64 << 20)
    host_header: str | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if v != v.strip() or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in v):
            raise ValueError("URL must not contain spaces or control characters (percent-encode them)")
        _Target.parse(v)
        return v

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            _check_header_value(_check_header_name(name), value)
            if name.lower() in ("authorization", "proxy-authorization") and value.strip():
                # Plain headers end up in the configuration file, the report and the database.
                raise ValueError(f"put {name} in secret_headers ({_SECRET_HEADERS_HINT})")
        return v

    @field_validator("secret_headers")
    @classmethod
    def _check_secret_headers(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            _check_header_name(name)
        return v

    @field_validator("content_type", "host_header")
    @classmethod
    def _check_single_value(cls, v: str | None) -> str | None:
        if v is not None:
            if not v.strip():
                raise ValueError("must not be empty")
            _check_header_value("value", v)
        return v

    @field_validator("expect_status")
    @classmethod
    def _check_status(cls, v: tuple[int | str, ...]) -> tuple[int | str, ...]:
        if not v:
            raise ValueError("expect_status must list at least one status")
        return v

    @field_validator("ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/") and not re.match(r"^[A-Za-z]:[\\/]", v):
            raise ValueError("ca_bundle must be an absolute path")
        return v

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        lower = {n.lower() for n in self.headers}
        for name in self.secret_headers:
            if name.lower() in lower:
                raise ValueError(f"header {name} is set in both headers and secret_headers")
        secret_lower = {n.lower() for n in self.secret_headers}
        if self.basic_auth is not None and "authorization" in lower | secret_lower:
            raise ValueError("basic_auth and an Authorization header cannot be combined")
        if self.host_header is not None and "host" in lower | secret_lower:
            raise ValueError("set the Host header either with host_header or in headers, not both")
        if self.content_type is not None and "content-type" in lower | secret_lower:
            raise ValueError("set Content-Type either with content_type or in headers, not both")
        if self.body is not None and self.method not in ("POST", "PUT"):
            raise ValueError(f"a request body needs method POST or PUT (method is {self.method})")
        if self.content_type is not None and self.body is None:
            raise ValueError("content_type is only used together with body")
        if self.method == "HEAD" and (
            self.keyword or self.keyword_absent or self.regex or self.json_assertions
        ):
            raise ValueError(
                "HEAD responses have no body: keyword, regex and json_assertions need GET or POST"
            )
        if not self.verify_tls and self.ca_bundle is not None:
            raise ValueError("ca_bundle has no effect with verify_tls: false")
        if self.latency_warn and self.latency_crit and self.latency_warn > self.latency_crit:
            raise ValueError("latency_warn must not be greater than latency_crit")
        if self.cert_expiry_crit_days > self.cert_expiry_warn_days:
            raise ValueError("cert_expiry_crit_days must not be greater than cert_expiry_warn_days")
        return self


# --------------------------------------------------------------------------- TLS

_TLS_CONTEXTS: dict[tuple[bool, str | None], ssl.SSLContext] = {}
_TLS_LOCK = threading.Lock()


def tls_context(verify: bool, ca_bundle: str | None) -> ssl.SSLContext:
    """One shared client context per (verify, ca_bundle).

    Loading the system CA store costs about a megabyte and some milliseconds; hundreds of
    HTTPS checks share a handful of contexts instead of each holding its own. A configured
    context is safe to use from many threads. A changed CA file is read on agent restart.
    """
    key = (verify, ca_bundle)
    found = _TLS_CONTEXTS.get(key)
    if found is not None:
        return found
    with _TLS_LOCK:
        found = _TLS_CONTEXTS.get(key)
        if found is None:
            if verify:
                found = ssl.create_default_context(cafile=ca_bundle)
            else:
                found = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                found.check_hostname = False
                found.verify_mode = ssl.CERT_NONE
            _TLS_CONTEXTS[key] = found
    return found


def _der_tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(der[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(der):
        raise ValueError("truncated DER")
    return tag, pos, end


def der_not_after(der: bytes) -> float | None:
    """notAfter of a DER X.509 certificate as epoch seconds, None if it cannot be read.

    Used when verification is off: getpeercert() then returns only the DER bytes, and a
    walk over five TLV headers is far cheaper than a certificate library.
    """
    try:
        _, pos, _ = _der_tlv(der, 0)  # Certificate
        _, pos, _ = _der_tlv(der, pos)  # tbsCertificate
        if der[pos] == 0xA0:  # [0] version, absent in v1 certificates
            pos = _der_tlv(der, pos)[2]
        for _ in range(3):  # serialNumber, signature, issuer
            pos = _der_tlv(der, pos)[2]
        tag, pos, _ = _der_tlv(der, pos)  # validity
        if tag != 0x30:
            return None
        pos = _der_tlv(der, pos)[2]  # notBefore
        tag, start, end = _der_tlv(der, pos)
        text = der[start:end].decode("ascii")
        if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ; RFC 5280: YY >= 50 is 19YY
            yy = int(text[0:2])
            year = 1900 + yy if yy >= 50 else 2000 + yy
            rest = text[2:]
        elif tag == 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
            year = int(text[0:4])
            rest = text[4:]
        else:
            return None
        if not rest.endswith("Z") or len(rest) < 11:
            return None
        return datetime(
            year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]), int(rest[8:10]), tzinfo=UTC
        ).timestamp()
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------- I/O


class DeadlineReader(io.RawIOBase):
    """Socket reads that each get only the time left until the run's deadline.

    http.client reads the status line, headers and body through one buffered file; a plain
    socket timeout applies per recv, so a server sending a byte every second would never
    time out. Here every recv is bounded by the remaining budget instead.
    """

    def __init__(self, sock: Any, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("run deadline reached")
        self._sock.settimeout(remaining)
        return int(self._sock.recv_into(buf))


class DeadlineSocket:
    """What HTTPResponse needs from a socket (only makefile) with deadline-bound reads.

    Also used by the notification channels' HTTP POST, which has the same problem."""

    __slots__ = ("_deadline", "_sock")

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(DeadlineReader(self._sock, self._deadline))


@dataclass(slots=True)
class _Reply:
    status: int
    location: str | None
    content_type: str
    body: bytes
    truncated: bool
    cert_days: float | None


class _Failure(Exception):
    """A run that ended without a usable response; the message is the summary."""

    def __init__(self, status: Status, summary: str) -> None:
        super().__init__(summary)
        self.status = status
        self.summary = summary


def _printable(text: str) -> str:
    """Server-provided text made safe for a one-line summary: control bytes become escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.strip())


def _bad_response(exc: http.client.HTTPException, tls: bool) -> str:
    text = str(exc)
    if not tls and isinstance(exc, http.client.BadStatusLine) and text[:2] in ("\x15\x03", "\x16\x03"):
        return "the server answered with TLS; use an https:// URL"
    return _oneline(_printable(text), 80) or type(exc).__name__


def _first_lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _oneline(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _decode(body: bytes, content_type: str) -> str:
    m = _CHARSET.search(content_type)
    if m:
        try:
            return body.decode(m.group(1), "replace")
        except LookupError:
            pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # cut mid-character by max_body_bytes
            return body.decode("utf-8", "replace")
        return body.decode("gb18030", "replace")


_MISSING = object()


def _resolve(doc: Any, steps: tuple[str | int, ...]) -> Any:
    node = doc
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                return _MISSING
        elif not isinstance(node, dict) or step not in node:
            return _MISSING
        node = node[step]
    return node


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _show(value: Any) -> str:
    return _oneline(json.dumps(value, ensure_ascii=False, default=str), 60)


# --------------------------------------------------------------------------- probe


class Probe:
    kind: ClassVar[str] = "http"

    __slots__ = (
        "settings",
        "_target",
        "_headers",
        "_body",
        "_ranges",
        "_expected",
        "_regex",
        "_json",
        "_needs_text",
        "_tls",
    )

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        self._target = _Target.parse(s.url)
        # Header order and case as sent; later entries replace earlier ones case-insensitively.
        merged: dict[str, tuple[str, str]] = {}
        for name, value in (
            ("Host", s.host_header or self._target.netloc),
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Connection", "close"),
            *s.headers.items(),
        ):
            merged[name.lower()] = (name, value)
        # Secret headers are added per run; a default of the same name in another case must go.
        for name in (*s.secret_headers, *(["Authorization"] if s.basic_auth else [])):
            merged.pop(name.lower(), None)
        self._headers: dict[str, str] = dict(merged.values())
        self._body = s.body.encode("utf-8") if s.body is not None else None
        self._ranges = _merge_ranges([parse_status_spec(x) for x in s.expect_status])
        self._expected = _describe_ranges(self._ranges)
        self._regex = re.compile(s.regex) if s.regex is not None else None
        self._json = tuple((a, parse_json_path(a.path)) for a in s.json_assertions)
        self._needs_text = bool(s.keyword or s.keyword_absent or self._regex or self._json)
        self._tls: ssl.SSLContext | None = None

    # ---- run

    def run(self, ctx: ProbeContext) -> CheckResult:
        secrets: list[str] = []
        return run_guarded(
            ctx,
            "probe error",
            lambda sw: self._run(ctx, sw, secrets),
            secrets=secrets,
            details={"url": self.settings.url},
        )

    def _run(self, ctx: ProbeContext, sw: Stopwatch, secrets: list[str]) -> CheckResult:
        s = self.settings
        t0 = time.monotonic()
        deadline = t0 + ctx.timeout_s
        details: dict[str, Any] = {"url": s.url, "method": s.method}
        try:
            auth = self._auth_headers(secrets)
        except (SecretError, ValueError) as exc:
            return sw.result(
                Status.UNKNOWN, f"cannot read secret: {scrub_secrets(str(exc), secrets)}", details=details
            )

        target, method, body = self._target, s.method, self._body
        headers = {**self._headers, **auth}
        if body is not None and s.content_type is not None:
            headers["Content-Type"] = s.content_type
        cert_days: float | None = None
        hops = 0
        while True:
            try:
                reply = self._exchange(target, method, headers, body, deadline=deadline, ctx=ctx)
            except _Failure as failure:
                if hops:
                    details["redirects"] = hops
                    details["final_url"] = target.url
                return sw.result(failure.status, scrub_secrets(failure.summary, secrets), details=details)
            if cert_days is None:
                cert_days = reply.cert_days
            if not (s.follow_redirects and reply.status in _REDIRECT_CODES and reply.location):
                break
            hops += 1
            details["redirects"] = hops
            if hops > MAX_REDIRECTS:
                details["final_url"] = target.url
                return sw.result(Status.CRIT, f"more than {MAX_REDIRECTS} redirects", details=details)
            try:
                nxt = _Target.parse(urljoin(target.url, reply.location), "latin-1")
            except ValueError as exc:
                summary = f"HTTP {reply.status} redirect to an unusable location: {exc}"
                return sw.result(Status.CRIT, scrub_secrets(summary, secrets), details=details)
            if reply.status == 303 or (reply.status in (301, 302) and method == "POST"):
                method = "HEAD" if method == "HEAD" else "GET"
                body = None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            if nxt.origin != self._target.origin:
                # Credentials are only for the origin they were configured for.
                headers = {k: v for k, v in headers.items() if k not in auth}
                headers["Host"] = nxt.netloc
            target = nxt
        latency_ms = (time.monotonic() - t0) * 1000.0
        if hops:
            details["final_url"] = target.url
        return self._judge(
            sw, reply, latency_ms=latency_ms, cert_days=cert_days, details=details, secrets=secrets
        )

    def _auth_headers(self, secrets: list[str]) -> dict[str, str]:
        """Reveal secrets for this run only; every revealed value is remembered for scrubbing."""
        s = self.settings
        out: dict[str, str] = {}
        for name, ref in s.secret_headers.items():
            value = ref.reveal()
            secrets.append(value)
            if _BAD_VALUE.search(value) or not value.isascii():
                raise ValueError(f"secret for header {name} contains line breaks or non-ASCII characters")
            out[name] = value
        if s.basic_auth is not None:
            password = s.basic_auth.password.reveal()
            secrets.append(password)
            token = base64.b64encode(f"{s.basic_auth.username}:{password}".encode()).decode("ascii")
            secrets.append(token)
            out["Authorization"] = f"Basic {token}"
        return out

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            try:
                self._tls = tls_context(self.settings.verify_tls, self.settings.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
                raise _Failure(
                    Status.UNKNOWN, f"cannot load ca_bundle {self.settings.ca_bundle}: {reason}"
                ) from None
        return self._tls

    def _exchange(
        self,
        target: _Target,
        method: str,
        headers: dict[str, str],
        body: bytes | None,
        *,
        deadline: float,
        ctx: ProbeContext,
    ) -> _Reply:
        """One request on a fresh connection. Raises _Failure for anything but a response."""
        budget = f"{ctx.timeout_s:.1f} s"
        where = hostport(target.host, target.port)
        try:
            sock: Any = open_connection(target.host, target.port, deadline)
        except OSError as exc:
            raise _Failure(
                Status.CRIT, describe_connect_error(exc, target.host, target.port, ctx.timeout_s)
            ) from None
        phase = "tls"
        received = 0
        try:
            cert_days = None
            if target.tls:
                tls = self._tls_context()
                sock.settimeout(max(deadline - time.monotonic(), 1e-3))
                sock = tls.wrap_socket(sock, server_hostname=target.host)
                cert_days = self._cert_days(sock, ctx.clock())
            phase = "send"
            sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            conn = http.client.HTTPConnection(target.host, target.port)
            conn.sock = sock  # ours: opened within the budget, and closed below
            conn.request(method, target.path, body=body, headers=headers)
            phase = "wait"
            resp = http.client.HTTPResponse(DeadlineSocket(sock, deadline), method=method)  # type: ignore[arg-type]
            resp.begin()
            phase = "body"
            limit = self.settings.max_body_bytes
            parts: list[bytes] = []
            # read1 returns whatever one recv brings, so `received` is exact when the deadline
            # hits; one byte past the limit tells a body of exactly max_body_bytes from a longer one.
            while received <= limit:
                chunk = resp.read1(min(limit + 1 - received, _READ_CHUNK))
                if not chunk:
                    break
                parts.append(chunk)
                received += len(chunk)
            if received <= limit and resp.length:
                # read1 reports a peer that closed before Content-Length as a plain end of data.
                raise _Failure(
                    Status.CRIT, f"response body cut short after {received} B ({resp.length} B missing)"
                )
            data = b"".join(parts)
            truncated = received > limit
            return _Reply(
                status=resp.status,
                location=resp.getheader("Location"),
                content_type=resp.getheader("Content-Type") or "",
                body=data[:limit] if truncated else data,
                truncated=truncated,
                cert_days=cert_days,
            )
        except TimeoutError:
            raise _Failure(Status.CRIT, self._timeout_text(phase, where, budget, received)) from None
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or str(exc)
            raise _Failure(Status.CRIT, f"TLS verification failed: {reason}") from None
        except ssl.SSLError as exc:
            raise _Failure(Status.CRIT, f"TLS error with {where}: {exc.reason or exc}") from None
        except http.client.RemoteDisconnected:
            raise _Failure(Status.CRIT, "server closed the connection without answering") from None
        except http.client.IncompleteRead as exc:
            summary = f"response body cut short after {received + len(exc.partial)} B"
            raise _Failure(Status.CRIT, summary) from None
        except http.client.HTTPException as exc:
            raise _Failure(Status.CRIT, f"invalid HTTP response: {_bad_response(exc, target.tls)}") from None
        except OSError as exc:
            reason = _first_lower(exc.strerror or str(exc) or type(exc).__name__)
            when = {"tls": "during the TLS handshake", "send": "while sending the request"}.get(
                phase, "while reading the response"
            )
            raise _Failure(Status.CRIT, f"connection error {when}: {reason}") from None
        finally:
            sock.close()

    @staticmethod
    def _timeout_text(phase: str, where: str, budget: str, received: int) -> str:
        if phase == "tls":
            return f"TLS handshake with {where} not finished within {budget}"
        if phase == "send":
            return f"request could not be sent within {budget}"
        if phase == "wait":
            return f"no answer within {budget}"
        return f"response body incomplete after {budget} ({received} B received)"

    def _cert_days(self, sock: ssl.SSLSocket, now: float) -> float | None:
        if self.settings.verify_tls:
            cert = sock.getpeercert()
            not_after = cert.get("notAfter") if cert else None
            expires = ssl.cert_time_to_seconds(str(not_after)) if not_after else None
        else:
            der = sock.getpeercert(binary_form=True)
            expires = der_not_after(der) if der else None
        return None if expires is None else (expires - now) / 86400.0

    # ---- judging

    def _judge(
        self,
        sw: Stopwatch,
        reply: _Reply,
        *,
        latency_ms: float,
        cert_days: float | None,
        details: dict[str, Any],
        secrets: list[str],
    ) -> CheckResult:
        s = self.settings
        code = reply.status
        metrics = [
            Metric("latency_ms", round(latency_ms, 3), "ms"),
            Metric("status_code", float(code), ""),
            Metric("size_bytes", float(len(reply.body)), "B"),
        ]
        details["status_code"] = code
        details["size_bytes"] = len(reply.body)
        if reply.truncated:
            details["body_truncated"] = True
        problems: list[tuple[Status, str]] = []
        text: str | None = None
        code_ok = any(lo <= code <= hi for lo, hi in self._ranges)
        content_failed = not code_ok
        if code_ok:
            head = f"HTTP {code} in {fmt_ms(latency_ms)} ms"
            if self._needs_text:
                text = _decode(reply.body, reply.content_type)
                failed = self._assertions(text, reply.truncated)
                if failed:
                    content_failed = True
                    details["failed_assertions"] = failed
                    problems.extend((Status.CRIT, f) for f in failed)
            latency_s = latency_ms / 1000.0
            for limit, status, word in (
                (s.latency_crit, Status.CRIT, "critical"),
                (s.latency_warn, Status.WARN, "warning"),
            ):
                if limit is not None and latency_s > limit:
                    problems.append((status, f"slower than the {limit * 1000:.0f} ms {word} limit"))
                    break
        else:
            head = f"HTTP {code} (expected {self._expected})"
        if cert_days is not None:
            metrics.append(Metric("cert_days_left", round(cert_days, 2), "d"))
            if cert_days < 0:
                problems.append((Status.CRIT, f"certificate expired {-cert_days:.0f} d ago"))
            elif cert_days < s.cert_expiry_crit_days:
                problems.append((Status.CRIT, f"certificate expires in {cert_days:.0f} d"))
            elif cert_days < s.cert_expiry_warn_days:
                problems.append((Status.WARN, f"certificate expires in {cert_days:.0f} d"))
        if content_failed and reply.body:
            if text is None:
                # Only the excerpt is needed: decode a bounded prefix, not a whole large body.
                text = _decode(reply.body[: _EXCERPT_CHARS * 4], reply.content_type)
            excerpt = _oneline(text[: _EXCERPT_CHARS * 2], _EXCERPT_CHARS)
            details["body_excerpt"] = scrub_secrets(excerpt, secrets)
        status = max((Status.OK if code_ok else Status.CRIT, *(p[0] for p in problems)))
        if not problems:
            return sw.result(status, head, metrics, details)
        texts = [t for _, t in sorted(problems, key=lambda p: -p[0])]
        if len(texts) > 3:
            texts = [*texts[:3], f"+{len(texts) - 3} more"]
        return sw.result(status, scrub_secrets(f"{head}: {'; '.join(texts)}", secrets), metrics, details)

    def _assertions(self, text: str, truncated: bool) -> list[str]:
        s = self.settings
        failed: list[str] = []
        if s.keyword is not None and s.keyword not in text:
            failed.append(f"keyword {_oneline(s.keyword, 40)!r} not found")
        if s.keyword_absent is not None and s.keyword_absent in text:
            failed.append(f"unwanted keyword {_oneline(s.keyword_absent, 40)!r} found")
        if self._regex is not None and self._regex.search(text) is None:
            failed.append(f"regex {_oneline(self._regex.pattern, 40)!r} not matched")
        if self._json:
            try:
                doc = json.loads(text)
            except ValueError:
                cut = f" (body cut at {s.max_body_bytes} B)" if truncated else ""
                failed.append(f"response is not valid JSON{cut}")
                return failed
            for assertion, steps in self._json:
                failure = self._json_failure(assertion, _resolve(doc, steps))
                if failure:
                    failed.append(failure)
        return failed

    @staticmethod
    def _json_failure(assertion: JsonAssertion, found: Any) -> str | None:
        path = assertion.path
        if not assertion.exists:
            return None if found is _MISSING else f"{path} is present (expected absent)"
        if found is _MISSING:
            return f"{path} not found"
        if assertion.compares and not _json_equal(found, assertion.equals):
            return f"{path} is {_show(found)}, expected {_show(assertion.equals)}"
        return None
