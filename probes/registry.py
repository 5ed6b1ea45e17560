"""Which probe kinds exist and where they live.

Modules are imported on first use so a kind nobody configures costs no memory
(the Oracle or SSH drivers, for instance).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

from probes.settings import ProbeSettings
from probes.thresholds import Threshold

# kind -> module. Each module defines `Settings` (a ProbeSettings subclass),
# `Probe` (constructed with its settings, `run(ctx) -> CheckResult`) and
# `DEFAULT_THRESHOLDS` (metric pattern -> Threshold), and optionally `HISTORY_METRICS`
# (GLOB patterns of metrics whose stored history the agent passes in ctx.history) and
# `DEFAULT_CONFIRMATIONS` (for kinds whose failures are events, e.g. a matching log line).
# A check's model is `CheckCommon` + the kind's `Settings`, so settings fields and validators
# must not reuse CheckCommon's names (name, system, interval, timeout, thresholds, ...).
# The configuration imports every module for its `Settings`, so a module must import
# heavy drivers (oracledb, paramiko, ...) inside the probe, not at module level.
KINDS: Mapping[str, str] = {
    "host": "probes.host",
    "http": "probes.http",
    "tcp": "probes.tcp",
    "plugin": "probes.plugin",
    "service": "probes.service",
    "backup_files": "probes.backup_files",
    "log": "probes.logscan",
    "postgres": "probes.db.postgres",
    "mysql": "probes.db.mysql",
    "oracle": "probes.db.oracle",
    "mssql": "probes.db.mssql",
    "ssh_host": "probes.ssh_host",
    "ssh_command": "probes.ssh_command",
}


def module(kind: str) -> ModuleType:
    return importlib.import_module(KINDS[kind])


def settings_model(kind: str) -> type[ProbeSettings]:
    return module(kind).Settings  # type: ignore[no-any-return]


def default_thresholds(kind: str) -> Mapping[str, Threshold]:
    return module(kind).DEFAULT_THRESHOLDS  # type: ignore[no-any-return]
