"""Settings of the local host probe (see probes.host.probe for what it does with them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from probes.settings import Duration, ProbeSettings

__all__ = ["ProcessSpec", "Settings"]


class ProcessSpec(BaseModel):
    """A process that must be running: `min` instances matching `match` (or named `name`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="display name, also the metric name proc:<name>.count")
    match: str | None = Field(
        default=None, min_length=1, description="substring of the command line; default: exact process name"
    )
    min: int = Field(default=1, ge=0)


class Settings(ProbeSettings):
    processes: list[ProcessSpec] = []
    include_mounts: list[str] = []
    """Shell globs on mount points; empty = every real mount."""
    exclude_mounts: list[str] = []
    disk_timeout: Duration = 2.0
    trend_min_span: Duration = 3600.0
    """Minimum history span before days_to_full is reported."""

    @model_validator(mode="after")
    def _unique_process_names(self) -> Settings:
        seen: set[str] = set()
        for spec in self.processes:
            if spec.name in seen:
                # Two specs with one name would write the same metric twice.
                raise ValueError(f"process name {spec.name!r} is listed twice")
            seen.add(spec.name)
        return self
