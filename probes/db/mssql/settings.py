"""SQL Server check settings; the probe is probes/db/mssql/probe.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

from pydantic import Field

from probes.db.items import Item
from probes.db.mssql.items import ALL_ITEMS
from probes.db.settings import BackupType, DbSettings

__all__ = ["Settings"]


class Settings(DbSettings):
    database: str = Field("master", min_length=1)
    """The database to log in to; every query names its catalog views explicitly."""
    tds_version: Literal["7.1", "7.2", "7.3", "7.4"] = "7.4"

    ITEMS: ClassVar[Sequence[Item]] = ALL_ITEMS
    BACKUP_TYPES: ClassVar[Mapping[BackupType, str]] = {
        "full": "msdb.dbo.backupset type D",
        "diff": "msdb.dbo.backupset type I",
        "log": "msdb.dbo.backupset type L",
    }
    ENGINE: ClassVar[str] = "SQL Server"
