"""Settings of `ssh_command` checks (see probes.ssh_command.probe for what the probe does)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from probes.settings import Duration, Encoding, ProbeSettings, Regex
from probes.ssh.settings import SshSettings

__all__ = ["Settings"]


class Settings(ProbeSettings):
    ssh: SshSettings
    command: list[str] = Field(min_length=1)
    expect_exit: list[int] = Field(default=[0], min_length=1)
    stdout_match: list[Regex] = []
    stdout_not_match: list[Regex] = []
    stderr_match: list[Regex] = []
    stderr_not_match: list[Regex] = []
    json_field: str | None = Field(default=None, min_length=1)
    json_equals: str | int | float | bool | None = None
    json_warn: float | None = None
    json_crit: float | None = None
    json_below: bool = False
    command_timeout: Duration | None = None
    """Default: the check's timeout, less the time taken to connect."""
    encoding: Encoding = "utf-8"
    """Of the command's output, e.g. gbk for Chinese Windows tools run through OpenSSH."""
    max_output: int = Field(default=1 << 20, ge=1024, le=16 << 20)

    @field_validator("command")
    @classmethod
    def _check_command(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("the program (first element) must not be empty")
        if any("\0" in a for a in v):
            raise ValueError("arguments must not contain NUL characters")
        return v

    @model_validator(mode="after")
    def _check_json(self) -> Settings:
        judged = self.json_equals is not None or self.json_warn is not None or self.json_crit is not None
        if judged and self.json_field is None:
            raise ValueError("json_equals/json_warn/json_crit need json_field")
        if self.json_equals is not None and (self.json_warn is not None or self.json_crit is not None):
            raise ValueError("use either json_equals or json_warn/json_crit, not both")
        return self
