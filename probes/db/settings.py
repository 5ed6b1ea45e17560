"""Per-check configuration shared by the four database probes.

An engine's `Settings` (probes/db/<engine>/settings.py) extends `DbSettings` and sets `ITEMS`
(its item table) and `BACKUP_TYPES`; a typo in an item name, a threshold key or an
unsupported backup type is then a configuration error with its key path, not a silently
ignored line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from probes.db.items import Item
from probes.settings import Duration, HostName, ProbeSettings, Schedule, SecretRef
from probes.thresholds import Threshold

__all__ = ["BackupExpectation", "BackupType", "DbSettings", "ItemOverride", "ThresholdSpec"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ThresholdSpec(_Strict):
    """Overrides an item's default threshold field by field: `{warn: 5}` keeps the default
    crit; `{crit: null}` removes it."""

    warn: float | None = None
    crit: float | None = None
    below: bool = False

    def over(self, default: Threshold | None) -> Threshold:
        """`default` with the fields written in the configuration replaced."""
        base = default or Threshold()
        given = self.model_fields_set
        return Threshold(
            warn=self.warn if "warn" in given else base.warn,
            crit=self.crit if "crit" in given else base.crit,
            below=self.below if "below" in given else base.below,
        )


class ItemOverride(_Strict):
    enabled: bool = True
    thresholds: dict[str, ThresholdSpec] = {}
    options: dict[str, Any] = {}


BackupType = Literal["full", "diff", "log", "incremental", "archivelog"]


class BackupExpectation(_Strict):
    database: str = Field("*", min_length=1)
    """A database name, or "*" for every user database."""
    type: BackupType
    schedule: Schedule
    grace: Duration = 3600.0


class DbSettings(ProbeSettings):
    host: HostName = Field(min_length=1, max_length=253)
    port: int | None = Field(None, ge=1, le=65535)
    """None: the engine's default port."""
    user: str = Field(min_length=1)
    password: SecretRef | None = None
    login_timeout: Duration = 5.0
    query_timeout: Duration = 10.0
    """Per statement; the check's `timeout` bounds the whole run as well."""
    databases: list[str] = []
    """Databases (schemas on MySQL) that must exist and be usable; missing -> CRIT."""
    server_role: Literal["primary", "standby", "any"] = "any"
    """What this server should be: a primary that turned read-only / into a standby is CRIT."""
    items: dict[str, ItemOverride] = {}
    backups: list[BackupExpectation] = []

    ITEMS: ClassVar[Sequence[Item]] = ()
    """The engine's full item table (every flavour), for validating `items:` keys."""
    BACKUP_TYPES: ClassVar[Mapping[BackupType, str]] = {}
    """Backup types the engine can judge from the server's own records -> where they come from."""
    ENGINE: ClassVar[str] = "database"

    @model_validator(mode="after")
    def _check_items_and_backups(self) -> DbSettings:
        if self.ITEMS:
            known: dict[str, set[str]] = {}
            for item in self.ITEMS:
                known.setdefault(item.name, set()).update(item.thresholds)
            for name, override in self.items.items():
                if name not in known:
                    raise ValueError(f"items: unknown item {name!r}; known: {', '.join(sorted(known))}")
                for key in override.thresholds:
                    if key not in known[name]:
                        keys = ", ".join(sorted(known[name])) or "none"
                        raise ValueError(f"items.{name}.thresholds: unknown key {key!r}; known: {keys}")
        for i, exp in enumerate(self.backups):
            if exp.type not in self.BACKUP_TYPES:
                supported = ", ".join(self.BACKUP_TYPES) or "none"
                raise ValueError(
                    f"backups[{i}]: {self.ENGINE} keeps no server-side record of {exp.type!r} backups "
                    f"(judged here: {supported}); watch the backup files with a backup-file check instead"
                )
        return self
