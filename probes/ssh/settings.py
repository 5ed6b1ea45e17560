"""The `ssh:` block of SSH checks: where and how to log in (see probes.ssh.conn for the transport)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probes.settings import Duration, SecretRef
from probes.values import hostport

__all__ = ["DEFAULT_KNOWN_HOSTS", "SshSettings"]

DEFAULT_KNOWN_HOSTS = "var/ssh_known_hosts"


class SshSettings(BaseModel):
    """Where and how to log in; nested under `ssh:` in a check's settings."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )

    address: str = Field(min_length=1, max_length=253)
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=64)
    password: SecretRef | None = None
    key_file: str | None = None
    key_passphrase: SecretRef | None = None
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    """Relative paths are relative to the agent's working directory, like the store."""
    connect_timeout: Duration = 5.0
    """Bound of each step: TCP connect, banner + key exchange, authentication."""

    @field_validator("address")
    @classmethod
    def _check_address(cls, v: str) -> str:
        if any(c.isspace() for c in v) or "/" in v or "@" in v:
            raise ValueError("address must be a host name or IP address, without user@, path or spaces")
        return v.strip("[]")

    @model_validator(mode="after")
    def _check_auth(self) -> SshSettings:
        if self.password is None and self.key_file is None:
            raise ValueError("set password (a secret reference) or key_file, or both")
        if self.key_passphrase is not None and self.key_file is None:
            raise ValueError("key_passphrase needs key_file")
        return self

    @property
    def where(self) -> str:
        """`user@host:port`, how messages name the login."""
        return f"{self.user}@{hostport(self.address, self.port)}"
