"""Building blocks for probe settings: pydantic field types and the settings base class.

Probe settings are pydantic models so the agent's configuration validates them together with
everything else and reports every problem with its key path; the probe receives the very same
validated object. The value types themselves (`Secret`, `parse_duration`, ...) live in
`probes.values`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from probes.schedule import Expectation
from probes.values import (
    Secret,
    SecretError,
    check_encoding,
    check_regex,
    parse_duration,
    scrub_secrets,
)

__all__ = [
    "Duration",
    "Encoding",
    "HostName",
    "ProbeSettings",
    "Regex",
    "Secret",
    "SecretError",
    "Schedule",
    "SecretRef",
    "parse_duration",
    "scrub_secrets",
]

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds as float; accepts '30s', '5m', '1h', '2d', '250ms' or a number."""

Regex = Annotated[str, AfterValidator(check_regex)]
"""A regular expression, compiled once at validation so a typo is a configuration error."""

Encoding = Annotated[str, AfterValidator(check_encoding)]
"""A text encoding Python knows ('utf-8', 'gbk' for Chinese Windows tools), kept as written."""

_HOST = re.compile(r"^[^\s/@]+$")


def _check_host(v: str) -> str:
    if not _HOST.match(v):
        raise ValueError("host must be a host name or IP address, without scheme, path or spaces")
    return v.strip("[]")


HostName = Annotated[str, AfterValidator(_check_host)]
"""A host name or IP address (IPv6 with or without brackets), no scheme, path or credentials."""

SecretRef = Annotated[
    Secret,
    BeforeValidator(Secret.parse),
    PlainSerializer(lambda s: s.ref, return_type=str),
]

Schedule = Annotated[Expectation, BeforeValidator(Expectation.parse), PlainSerializer(str)]
"""A backup schedule: 'daily 04:00', 'weekly sun 02:00', 'every 6h' (see probes.schedule)."""


class ProbeSettings(BaseModel):
    """Base of every probe's settings: immutable, unknown keys rejected."""

    # hide_input_in_errors: pydantic would otherwise quote an inline secret back in its error.
    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )
