"""One JSON POST over http.client, bounded by a deadline, with errors that name no URL.

The standard library instead of requests: the daemon runs in a 40 MiB budget and the probes
already load http.client and ssl. Each delivery opens a fresh connection (a notification
every few minutes gains nothing from a pool) and sends ``Connection: close``.

Every phase — connect, TLS handshake, send, each read of the status line, headers and body —
only gets the time left until the deadline, so a peer that accepts and never answers, or
drips its reply, cannot hold the outbox longer than the channel's timeout. Only the name
lookup (getaddrinfo) cannot be interrupted.

Webhook URLs of chat robots carry their access token, so no reason text ever contains the
URL: failures name host and port, and anything a server sends back is scrubbed of the
secrets the caller passes in.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.config.channels import InvalidUrl, Target, split_url
from agent.notify.channels import DeliveryError, scrub
from probes.http.probe import DeadlineSocket, tls_context
from probes.tcp.probe import describe_connect_error, open_connection

__all__ = ["Reply", "check_errcode", "post_json", "target_of", "url_secrets"]

MAX_REPLY_BYTES = 64 * 1024
"""Robot and webhook replies are a few hundred bytes; more is read no further."""

USER_AGENT = "HIS-Sentinel-notify/1"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str


def url_secrets(url: str) -> list[str]:
    """Pieces of a secret URL that must not show up in any text: the URL, its query values
    and long path segments (tokens travel as ?access_token=, ?key= or in the path)."""
    out = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    out.append(parts.path + ("?" + parts.query if parts.query else ""))
    out.append(parts.query)
    for pair in parts.query.split("&"):
        out.append(pair.partition("=")[2])
    out.extend(seg for seg in parts.path.split("/") if len(seg) >= 16)
    return out


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 1e-3)


def target_of(url: str, what: str) -> Target:
    """`url` parsed for sending; a URL that cannot be used is a DeliveryError nobody should retry
    (the text never repeats the URL: it may carry the robot's token)."""
    try:
        return split_url(url, what)
    except InvalidUrl as exc:
        raise DeliveryError(str(exc), retryable=False) from None


def post_json(
    url: str,
    payload: Any,
    *,
    what: str,
    timeout: float,
    verify_tls: bool = True,
    ca_bundle: Path | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> Reply:
    """POST `payload` as UTF-8 JSON; return the reply or raise DeliveryError.

    `what` names the peer in reasons ("DingTalk robot"); `secrets` are scrubbed from them.
    Transport failures are retryable except an untrusted certificate or an unusable CA file.
    """
    secrets = list(secrets)
    target = target_of(url, f"{what} URL")
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    deadline = time.monotonic() + timeout
    ctx: ssl.SSLContext | None = None
    if target.tls:
        try:
            ctx = tls_context(verify_tls, str(ca_bundle) if ca_bundle is not None else None)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
            raise DeliveryError(f"{what}: cannot load ca_bundle {ca_bundle}: {reason}", False) from None
    try:
        sock: Any = open_connection(target.host, target.port, deadline)
    except OSError as exc:
        reason = describe_connect_error(exc, target.host, target.port, timeout)
        raise DeliveryError(f"{what}: {reason}", retryable=True) from None
    phase = "during the TLS handshake"
    try:
        if ctx is not None:
            sock.settimeout(_left(deadline))
            sock = ctx.wrap_socket(sock, server_hostname=target.host)
        phase = "while sending"
        sock.settimeout(_left(deadline))
        conn = http.client.HTTPConnection(target.host, target.port)
        conn.sock = sock  # ours: opened within the deadline, closed below
        request_headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Connection": "close",
            **(headers or {}),
        }
        conn.request("POST", target.path, body=body, headers=request_headers)
        phase = "while waiting for the reply"
        resp = http.client.HTTPResponse(DeadlineSocket(sock, deadline), method="POST")  # type: ignore[arg-type]
        resp.begin()
        phase = "while reading the reply"
        data = resp.read(min(resp.length or MAX_REPLY_BYTES, MAX_REPLY_BYTES))
        return Reply(resp.status, data, resp.getheader("Content-Type") or "")
    except TimeoutError:
        raise DeliveryError(
            f"{what}: no complete answer from {target.where} within {timeout:g} s ({phase})", True
        ) from None
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or exc.reason or "certificate not trusted"
        raise DeliveryError(
            f"{what}: TLS verification failed for {target.where}: {reason} (set ca_bundle to trust a "
            "private CA)",
            retryable=False,
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or "handshake failed"
        raise DeliveryError(f"{what}: TLS error with {target.where}: {reason}", True) from None
    except http.client.HTTPException as exc:
        reason = scrub(type(exc).__name__, secrets)
        raise DeliveryError(f"{what}: invalid HTTP reply from {target.where} ({reason})", True) from None
    except OSError as exc:
        reason = scrub(exc.strerror or type(exc).__name__, secrets)
        raise DeliveryError(f"{what}: connection to {target.where} failed {phase}: {reason}", True) from None
    finally:
        sock.close()


def printable(data: bytes, limit: int = 120) -> str:
    """Start of a server reply, one line, control characters escaped."""
    text = data[: limit * 4].decode("utf-8", "replace")
    text = " ".join("".join(c if c.isprintable() else repr(c)[1:-1] for c in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def http_status_error(what: str, reply: Reply, secrets: Iterable[str]) -> DeliveryError:
    """Non-2xx: server trouble, timeouts and rate limits may pass; other 4xx will not; 3xx is
    not followed because a redirect would carry the token to another address."""
    status = reply.status
    retryable = status >= 500 or status in (408, 425, 429)
    hint = " (redirects are not followed)" if 300 <= status < 400 else ""
    snippet = scrub(printable(reply.body), secrets)
    tail = f": {snippet}" if snippet else ""
    return DeliveryError(f"{what} answered HTTP {status}{hint}{tail}", retryable)


def check_errcode(
    what: str,
    reply: Reply,
    *,
    permanent: Mapping[int, str],
    secrets: Iterable[str],
) -> str:
    """DingTalk and WeCom answer HTTP 200 even on failure; the JSON `errcode` decides.

    errcode 0 -> receipt "errcode 0". Codes in `permanent` (bad token, signature, payload)
    are not retryable; every other non-zero code is, because an unknown code is more likely a
    platform hiccup than a configuration error, and a lost alert costs more than a retry.
    """
    secrets = list(secrets)
    if not 200 <= reply.status < 300:
        raise http_status_error(what, reply, secrets)
    try:
        doc = json.loads(reply.body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        doc = {}
    code = doc.get("errcode")
    if not isinstance(code, int) or isinstance(code, bool):
        # A proxy's HTML page or a truncated body: not the platform's verdict, so try again.
        snippet = scrub(printable(reply.body, 80), secrets)
        raise DeliveryError(f"{what} answered HTTP {reply.status} without a JSON errcode: {snippet!r}", True)
    if code == 0:
        return "errcode 0"
    errmsg = scrub(printable(str(doc.get("errmsg", "")).encode("utf-8"), 160), secrets)
    hint = permanent.get(code)
    reason = f"{what} rejected the message: errcode {code} {errmsg}".rstrip()
    if hint:
        reason += f" ({hint})"
    raise DeliveryError(reason, retryable=hint is None)
