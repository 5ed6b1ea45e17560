"""Settings of the TCP probe: a pydantic model, validated in the configuration process.

The probe itself (probes.tcp) runs on its plain form; see probes.plain.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from probes.settings import Duration, HostName, ProbeSettings, Regex
from probes.tcp.probe import _parse_hex, decode_escapes

__all__ = ["Settings"]



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
        if v is not None and not _parse_hex(v):
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
