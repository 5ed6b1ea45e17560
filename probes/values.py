"""Value types and parsers shared by probe settings and probe runtime code.

`probes.settings` wraps these functions as pydantic field types (a duration, a secret
reference, a regular expression); probes and the agent call them directly, e.g. to reveal a
secret or to name an endpoint in a message.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Iterable
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1.5h', '2d', '250ms' or a bare number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s', '5m', '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"invalid duration {value!r}: use a number with s, m, h, d or ms, e.g. '30s'")
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError("a duration must be a number of seconds or a string like '30s', '5m', '1h'")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


def hostport(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets: how messages name an endpoint."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def check_encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}") from None
    return value


class SecretError(ValueError):
    """A secret reference that cannot be resolved. Its text never contains the secret."""


_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class Secret:
    """A reference to a secret: `${ENV_VAR}` or `file:/path` (file readable by its owner only).

    The value is read when `reveal()` is called and never kept on the object, so no repr,
    log line or exception can show it.
    """

    __slots__ = ("ref",)

    def __init__(self, ref: str) -> None:
        self.ref = ref

    @classmethod
    def parse(cls, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise ValueError("a secret must be a reference: '${ENV_VAR}' or 'file:/path'")
        if _ENV_REF.match(value):
            return cls(value)
        if value.startswith("file:"):
            path = value[5:]
            if not os.path.isabs(path):
                raise ValueError("a secret file reference needs an absolute path: 'file:/etc/sentinel/x'")
            return cls(value)
        # The inline value itself is never echoed back.
        raise ValueError("secrets may not be written inline; use '${ENV_VAR}' or 'file:/path' (mode 0600)")

    def check(self) -> None:
        """Raise SecretError if the reference cannot be resolved (used by config validation)."""
        self.reveal()

    def reveal(self) -> str:
        m = _ENV_REF.match(self.ref)
        if m:
            name = m.group(1)
            if name not in os.environ:
                raise SecretError(f"environment variable {name} is not set")
            return os.environ[name]
        path = self.ref[5:]
        try:
            st = os.stat(path)
        except OSError as exc:
            raise SecretError(f"secret file {path}: {exc.strerror}") from None
        # Windows reports emulated mode bits (always group/other readable), so the POSIX test
        # would refuse every file there; NTFS ACLs protect it instead (docs/windows.md).
        if os.name != "nt" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(
                f"secret file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it"
            )
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")

    def __repr__(self) -> str:
        return f"Secret({self.ref})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)


def scrub_secrets(text: str, secrets: Iterable[str | None], *, min_length: int = 1) -> str:
    """`text` with every revealed secret value replaced by ***.

    Longest first, so a secret that contains another is masked whole. Values shorter than
    `min_length` are left alone: a probe whose secrets may be very short (a database
    password) would otherwise mask unrelated digits in its own texts.
    """
    values = {v for v in secrets if v and len(v) >= max(min_length, 1)}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text
