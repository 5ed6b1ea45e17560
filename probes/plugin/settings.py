"""Settings of the Nagios-plugin probe (see probes.plugin.probe for what it does with them)."""

from __future__ import annotations

import os
import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, field_validator

from probes.settings import Encoding, ProbeSettings, Secret

__all__ = ["EnvValue", "Settings"]

_SECRET_IN_ARG = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME = re.compile(r"pass|secret|token|_pwd$", re.IGNORECASE)


def _env_value(value: Any) -> Any:
    if isinstance(value, str) and (_ENV_REF.match(value) or value.startswith("file:")):
        return Secret.parse(value)
    return value


EnvValue = Annotated[
    str | Secret,
    BeforeValidator(_env_value),
    PlainSerializer(lambda v: v.ref if isinstance(v, Secret) else v, return_type=str),
]


def _split_suggestion(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


class Settings(ProbeSettings):
    command: list[str] = Field(min_length=1)
    """Program and arguments, e.g. ["/usr/lib/nagios/plugins/check_disk", "-w", "10%", "-p", "/"]."""
    env: dict[str, EnvValue] = {}
    workdir: str | None = None
    on_timeout: Literal["UNKNOWN", "CRIT"] = "UNKNOWN"
    max_output_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    encoding: Encoding = "utf-8"
    """Of the plugin's output; 'gbk' for Chinese Windows tools."""

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, v: Any) -> Any:
        if isinstance(v, str):
            if any(c.isspace() for c in v.strip()):
                suggestion = ", ".join(f'"{a}"' for a in _split_suggestion(v))
                raise ValueError(
                    "command must be a list of arguments (it is never run through a shell); "
                    f"write it as [{suggestion}]"
                )
            return [v.strip()]
        return v

    @field_validator("command")
    @classmethod
    def _check_argv(cls, v: list[str]) -> list[str]:
        program = v[0]
        if not program:
            raise ValueError("the program (first element) must not be empty")
        if not os.path.isabs(program) and (os.sep in program or (os.altsep and os.altsep in program)):
            raise ValueError(f"use an absolute path or a bare program name found in PATH, not {program!r}")
        for arg in v:
            if "\0" in arg:
                raise ValueError("arguments must not contain NUL characters")
            if _SECRET_IN_ARG.search(arg):
                raise ValueError(
                    "arguments are passed literally and are visible in the process list: put the "
                    "secret in env (e.g. env: {PGPASSWORD: '${DB_PASSWORD}'}) for the plugin to read"
                )
        return v

    @field_validator("env")
    @classmethod
    def _check_env(cls, v: dict[str, str | Secret]) -> dict[str, str | Secret]:
        for name, value in v.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
            if isinstance(value, str) and "\0" in value:
                raise ValueError(f"env {name} must not contain NUL characters")
            if isinstance(value, str) and value and _SECRET_NAME.search(name):
                raise ValueError(
                    f"env {name} looks like a secret: write it as '${{ENV_VAR}}' or 'file:/path', not inline"
                )
        return v

    @field_validator("workdir")
    @classmethod
    def _check_workdir(cls, v: str | None) -> str | None:
        if v is not None and not os.path.isabs(v):
            raise ValueError("workdir must be an absolute path")
        return v
