"""Settings of `ssh_host` checks (see probes.ssh_host.probe for what the probe does)."""

from __future__ import annotations

from pydantic import Field

from probes.host.settings import Settings as HostSettings
from probes.settings import Duration
from probes.ssh.settings import SshSettings

__all__ = ["Settings"]


class Settings(HostSettings):
    ssh: SshSettings
    cpu_sample: Duration = Field(0.5, le=5.0)
    """Seconds between the two /proc/stat reads."""
