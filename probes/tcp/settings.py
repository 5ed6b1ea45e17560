"""Settings of the TCP probe (see probes.tcp.probe for what it does with them)."""

from __future__ import annotations

import binascii
import codecs

from pydantic import Field, field_validator, model_validator

from probes.settings import Duration, HostName, ProbeSettings, Regex

__all__ = ["Settings", "decode_escapes", "parse_hex"]


def decode_escapes(text: str) -> bytes:
    """'\\x0bMSH|...\\x1c\\r' -> bytes. Escapes give raw bytes, other non-ASCII text is UTF-8."""
    try:
        # Going through UTF-8 first keeps literal non-ASCII text intact; unicode_escape
        # then maps every byte >= 0x80 to the same code point, which latin-1 maps back.
        decoded = codecs.decode(text.encode("utf-8"), "unicode_escape")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid escape sequence: {exc.reason}") from None
    try:
        return decoded.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(
            "\\u/\\U/\\N escapes above \\xff are not supported; write the bytes as \\x.."
        ) from None


def parse_hex(value: str) -> bytes:
    try:
        return binascii.unhexlify("".join(value.split()))
    except (binascii.Error, ValueError):
        raise ValueError("send_hex must be pairs of hex digits, e.g. '0b 4d 53 48'") from None


class Settings(ProbeSettings):
    host: HostName = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    send: str | None = None
    send_hex: str | None = None
    expect: str | None = None
    expect_regex: Regex | None = None
    latency_warn: Duration | None = None
    latency_crit: Duration | None = None

    @field_validator("send", "expect")
    @classmethod
    def _check_escapes(cls, v: str | None) -> str | None:
        if v is not None and not decode_escapes(v):
            raise ValueError("must not be empty")
        return v

    @field_validator("send_hex")
    @classmethod
    def _check_hex(cls, v: str | None) -> str | None:
        if v is not None and not parse_hex(v):
            raise ValueError("send_hex must not be empty")
        return v

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.send is not None and self.send_hex is not None:
            raise ValueError("set either send or send_hex, not both")
        if self.expect is not None and self.expect_regex is not None:
            raise ValueError("set either expect or expect_regex, not both")
        if self.latency_warn and self.latency_crit and self.latency_warn > self.latency_crit:
            raise ValueError("latency_warn must not be greater than latency_crit")
        return self

    def request(self) -> bytes | None:
        """The bytes to send (`send` with its escapes decoded, or `send_hex`); None: send nothing."""
        if self.send is not None:
            return decode_escapes(self.send)
        if self.send_hex is not None:
            return parse_hex(self.send_hex)
        return None

    def expected(self) -> bytes | None:
        """`expect` as bytes; None when no literal reply is expected."""
        return decode_escapes(self.expect) if self.expect is not None else None
