"""PostgreSQL check settings; the probe is probes/db/postgres/probe.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from pydantic import Field

from probes.db.items import Item
from probes.db.postgres.items import ITEMS
from probes.db.settings import BackupType, DbSettings

__all__ = ["Settings"]


class Settings(DbSettings):
    database: str = Field("postgres", min_length=1)
    """The database to log in to."""
    sslmode: str = Field("verify-full", pattern=r"^(disable|allow|prefer|require|verify-ca|verify-full)$")
    """TLS verified by default (certificate and host name, CA from `sslrootcert` or
    ~/.postgresql/root.crt). A server without TLS needs an explicit `sslmode: disable`: the
    agent never silently falls back to an unverified or plaintext connection."""
    sslrootcert: str | None = None
    """CA bundle for verify-ca / verify-full."""

    ITEMS: ClassVar[Sequence[Item]] = ITEMS
    BACKUP_TYPES: ClassVar[Mapping[BackupType, str]] = {
        "log": "pg_stat_archiver.last_archived_time",
        "archivelog": "pg_stat_archiver.last_archived_time",
    }
    ENGINE: ClassVar[str] = "PostgreSQL"
