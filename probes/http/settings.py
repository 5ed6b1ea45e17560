"""Settings of the HTTP(S) probe (see probes.http.probe for what it does with them)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from probes.http.parse import (
    BAD_HEADER_VALUE,
    Target,
    check_header_name,
    check_header_value,
    parse_json_path,
    parse_status_spec,
)
from probes.settings import Duration, ProbeSettings, Regex, SecretRef

__all__ = ["BasicAuth", "JsonAssertion", "Settings", "StatusSpec"]

_SECRET_HEADERS_HINT = "e.g. Authorization: '${HIS_API_TOKEN}'"


def _check_status_item(item: int | str) -> int | str:
    parse_status_spec(item)
    return item


StatusSpec = Annotated[int | str, AfterValidator(_check_status_item)]
"""200, '2xx' or '200-204'; checked per entry so an error points at the entry."""


class BasicAuth(ProbeSettings):
    model_config = ConfigDict(hide_input_in_errors=True)

    username: str = Field(min_length=1)
    password: SecretRef

    @field_validator("username")
    @classmethod
    def _check_username(cls, v: str) -> str:
        if ":" in v or BAD_HEADER_VALUE.search(v):
            raise ValueError("username must not contain ':' or line breaks")
        return v


class JsonAssertion(ProbeSettings):
    """`equals` is compared only when it is written in the configuration (null included)."""

    path: str
    equals: Any = None
    exists: bool = True

    @property
    def compares(self) -> bool:
        """Whether `equals` was written (`equals: null` requires a JSON null; left out, only
        the path's existence is tested)."""
        return "equals" in self.model_fields_set

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
        Target.parse(v)
        return v

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            check_header_value(check_header_name(name), value)
            if name.lower() in ("authorization", "proxy-authorization") and value.strip():
                # Plain headers end up in the configuration file, the report and the database.
                raise ValueError(f"put {name} in secret_headers ({_SECRET_HEADERS_HINT})")
        return v

    @field_validator("secret_headers")
    @classmethod
    def _check_secret_headers(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            check_header_name(name)
        return v

    @field_validator("content_type", "host_header")
    @classmethod
    def _check_single_value(cls, v: str | None) -> str | None:
        if v is not None:
            if not v.strip():
                raise ValueError("must not be empty")
            check_header_value("value", v)
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
