"""Settings of the backup-file probe (see probes.backup_files.probe for what it does with them)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probes.settings import Duration, ProbeSettings, Schedule
from probes.ssh.settings import SshSettings

__all__ = ["BackupSet", "Settings"]

_NAME = re.compile(r"^[A-Za-z0-9_\-\u4e00-\u9fff]+$")


class BackupSet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=40)
    """Used in metric names: backup.<name>.age_s."""
    directory: str = Field(min_length=1)
    pattern: str = Field(default="*", min_length=1)
    schedule: Schedule
    grace: Duration = 3600.0
    shrink_warn_pct: float = Field(default=30.0, gt=0, le=100)
    shrink_crit_pct: float = Field(default=50.0, gt=0, le=100)
    baseline_copies: int = Field(default=5, ge=1, le=100)
    """How many previous copies form the median the newest is compared with."""
    min_copies: int = Field(default=1, ge=0)
    max_copies: int | None = Field(default=None, ge=1)
    min_bytes: int = Field(default=1, ge=0)
    """A newest file smaller than this is CRIT (an empty dump)."""
    checksum: Literal["none", "sha256", "md5"] = "none"
    checksum_max_bytes: int = Field(default=16 * 1024**3, ge=1)
    space_factor: float = Field(default=1.2, ge=0)
    """CRIT when free space < newest size × this (0 disables the space check)."""
    space_warn_factor: float = Field(default=2.0, ge=0)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("a backup set name may contain letters, digits, '_', '-' and Chinese characters")
        return v

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, v: str) -> str:
        if "/" in v or "\\" in v:
            raise ValueError("pattern matches file names in `directory`; put the path in directory")
        return v

    @model_validator(mode="after")
    def _check_limits(self) -> BackupSet:
        if self.shrink_warn_pct > self.shrink_crit_pct:
            raise ValueError("shrink_warn_pct must not be greater than shrink_crit_pct")
        if self.max_copies is not None and self.max_copies < self.min_copies:
            raise ValueError("max_copies must not be less than min_copies")
        if self.space_factor and self.space_warn_factor and self.space_warn_factor < self.space_factor:
            raise ValueError("space_warn_factor must not be less than space_factor")
        return self


class Settings(ProbeSettings):
    sets: list[BackupSet] = Field(min_length=1)
    ssh: SshSettings | None = None
    """Look at the sets over SFTP on that host instead of locally."""

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        names = [s.name for s in self.sets]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"backup set name {sorted(dup)[0]!r} is used twice")
        return self
