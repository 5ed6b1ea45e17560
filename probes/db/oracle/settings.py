"""Oracle check settings; the probe is probes/db/oracle/probe.py."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from probes.db.items import Item
from probes.db.oracle.items import ITEMS
from probes.db.settings import BackupType, DbSettings

__all__ = ["Settings", "Thick"]

_NAME = re.compile(r"^[A-Za-z0-9_.$#-]+$")


class Thick(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    lib_dir: str = Field(min_length=1)
    """Directory of the Oracle Instant Client (needed for 11g, which thin mode cannot reach)."""


class Settings(DbSettings):
    service_name: str | None = Field(None, pattern=_NAME.pattern)
    sid: str | None = Field(None, pattern=_NAME.pattern)
    thick: Thick | None = None

    ITEMS: ClassVar[Sequence[Item]] = ITEMS
    BACKUP_TYPES: ClassVar[Mapping[BackupType, str]] = {
        "full": "v$rman_backup_job_details (DB FULL, DB INCR level 0)",
        "incremental": "v$rman_backup_job_details (DB INCR)",
        "archivelog": "v$rman_backup_job_details (ARCHIVELOG)",
    }
    ENGINE: ClassVar[str] = "Oracle"

    @model_validator(mode="after")
    def _one_target(self) -> Settings:
        if (self.service_name is None) == (self.sid is None):
            raise ValueError("set exactly one of service_name or sid")
        return self
