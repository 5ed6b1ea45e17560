"""`storage.backup`: online copies of the store, verified after copying."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from agent.config.base import FAULT_LEVELS, Model
from agent.config.windows import parse_hhmm
from probes.ssh.settings import SshSettings

_LEVEL_BY_NAME = {v: k for k, v in FAULT_LEVELS.items()}


class StoreBackup(Model):
    directory: str = Field(min_length=1)
    """Where the copies go: a local directory (relative: from the agent's working directory,
    like the store), or a directory on the `ssh` host (relative: from the login's home)."""
    ssh: SshSettings | None = None
    """Set: copy over SFTP with these settings (host key verified like every SSH check)."""
    at: str = "02:30"
    """Local time of day (site time zone) of the daily copy, 'HH:MM'."""
    keep: int = Field(7, ge=1, le=1000)
    """Copies kept; older ones are deleted after a verified new copy."""
    include_key: bool = True
    """Also keep the evidence key file created next to the store (`<store>.key`, mode 0600) in
    the backup directory: without it a copy can be neither verified nor written to after the
    store's disk is lost. Ignored when `storage.evidence_key` is set (that key is kept
    elsewhere by its owner). Set false when the backup directory is less trusted than the
    store's own."""
    fault_level: Literal[1, 2, 3, 4] = 3
    """Level of the fault a failed backup opens (一级 … 四级, or 1 … 4)."""

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: Any) -> str:
        return parse_hhmm(v)

    @field_validator("fault_level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip() in _LEVEL_BY_NAME:
            return _LEVEL_BY_NAME[v.strip()]
        return v

    @property
    def remote(self) -> bool:
        return self.ssh is not None

    @property
    def where(self) -> str:
        """The target as people read it: a local path, or `user@host:port:directory`."""
        return self.directory if self.ssh is None else f"{self.ssh.where}:{self.directory}"

    def resolved(self, base: Path) -> StoreBackup:
        """A local relative directory fixed against `base` (the agent's working directory), as
        the store path is; a remote one stays as written (the SFTP server resolves it)."""
        if self.ssh is not None or Path(self.directory).is_absolute():
            return self
        return self.model_copy(update={"directory": str(base / self.directory)})
