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
from typing import Any, ClassVar
from urllib.parse import urljoin

from probes.base import CheckResult, Metric, ProbeContext, Status, Stopwatch
from probes.boundary import run_guarded
from probes.http.parse import (
    BAD_HEADER_VALUE,
    Target,
    describe_ranges,
    merge_ranges,
    parse_json_path,
    parse_status_spec,
)
from probes.http.settings import JsonAssertion, Settings
from probes.tcp.probe import describe_connect_error, fmt_ms, open_connection
from probes.thresholds import Threshold
from probes.values import SecretError, hostport, scrub_secrets

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAX_REDIRECTS",
    "DeadlineSocket",
    "Probe",
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
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:\-]+)", re.IGNORECASE)


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
        self._target = Target.parse(s.url)
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
        self._ranges = merge_ranges([parse_status_spec(x) for x in s.expect_status])
        self._expected = describe_ranges(self._ranges)
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
                nxt = Target.parse(urljoin(target.url, reply.location), "latin-1")
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
            if BAD_HEADER_VALUE.search(value) or not value.isascii():
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
        target: Target,
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
            expires: float | None = ssl.cert_time_to_seconds(str(not_after)) if not_after else None
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
