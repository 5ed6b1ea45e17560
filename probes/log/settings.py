"""Settings of the log probe (see probes.log.probe for what it does with them)."""

from __future__ import annotations

import codecs
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from probes.settings import Duration, Encoding, ProbeSettings, Regex
from probes.ssh.settings import SshSettings

__all__ = ["DEFAULT_CONFIRMATIONS", "LogPattern", "PatternSpec", "Settings"]

# A matching line is an event: the next run finds no new match, so a failure must count at once
# (or be held with `hold`) instead of waiting for 3 confirming samples that never come.
DEFAULT_CONFIRMATIONS = 1

# Encodings whose byte 0x0A is always a newline, never part of a multi-byte character.
_ENCODINGS = frozenset(
    {"utf-8", "gbk", "gb2312", "gb18030", "big5", "big5hkscs", "latin-1", "ascii", "cp1252"}
)

_NAME = re.compile(r"^[A-Za-z0-9_\-\u4e00-\u9fff]+$")


def _pattern_from_str(value: Any) -> Any:
    return {"regex": value} if isinstance(value, str) else value


class LogPattern(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    regex: Regex
    status: Literal["WARN", "CRIT"] = "WARN"
    name: str | None = Field(default=None, min_length=1, max_length=40)
    """Metric suffix (`matches.<name>`); default pattern1, pattern2, ..."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError("a pattern name may contain letters, digits, '_', '-' and Chinese characters")
        return v


PatternSpec = Annotated[LogPattern, BeforeValidator(_pattern_from_str)]


class Settings(ProbeSettings):
    files: list[str] = Field(min_length=1)
    """Paths or globs (`/u01/app/oracle/diag/rdbms/*/*/trace/alert_*.log`)."""
    patterns: list[PatternSpec] = Field(min_length=1)
    ignore: list[Regex] = []
    encoding: Encoding = "utf-8"
    mask: list[Regex] = []
    """Extra patterns masked in excerpts (added to the built-in ones); a group masks only itself."""
    max_lines: int = Field(default=20_000, ge=1)
    max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    from_start: bool = False
    hold: Duration | None = None
    missing: Literal["OK", "WARN", "CRIT", "UNKNOWN"] = "WARN"
    """Status when a path (or every match of a glob) does not exist."""
    excerpt_lines: int = Field(default=20, ge=0, le=200)
    ssh: SshSettings | None = None
    """Read the files over SFTP on that host instead of locally."""

    @field_validator("encoding")
    @classmethod
    def _check_encoding(cls, v: str) -> str:
        # Encoding has already refused names Python does not know.
        name = codecs.lookup(v).name
        name = {"iso8859-1": "latin-1", "cp936": "gbk", "euc_cn": "gb2312"}.get(name, name)
        if name.replace("_", "-") not in _ENCODINGS:
            raise ValueError(f"encoding {v!r} is not supported: use one of {', '.join(sorted(_ENCODINGS))}")
        return name

    @field_validator("files")
    @classmethod
    def _check_files(cls, v: list[str]) -> list[str]:
        if any(not p.strip() for p in v):
            raise ValueError("a file path must not be empty")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for i, p in enumerate(self.patterns):
            name = p.name or f"pattern{i + 1}"
            if name in seen:
                raise ValueError(f"pattern name {name!r} is used twice")
            seen.add(name)
        return self
