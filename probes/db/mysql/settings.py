"""MySQL / MariaDB check settings; the probe is probes/db/mysql/probe.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

from probes.db.items import Item
from probes.db.mysql.items import ITEMS
from probes.db.settings import BackupType, DbSettings

__all__ = ["Settings"]


class Settings(DbSettings):
    ssl_mode: Literal["verify_identity", "verify_ca", "disabled"] = "verify_identity"
    """TLS with the server's certificate verified (and its host name, by default), as the
    MySQL client's --ssl-mode. A server without TLS needs an explicit `ssl_mode: disabled`:
    the agent never uses an unverified TLS connection or falls back to plaintext on its own."""
    ssl_ca: str | None = None
    """CA bundle for the server's certificate (default: the system's trust store)."""

    ITEMS: ClassVar[Sequence[Item]] = ITEMS
    BACKUP_TYPES: ClassVar[Mapping[BackupType, str]] = {}
    ENGINE: ClassVar[str] = "MySQL/MariaDB"
