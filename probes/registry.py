"""Which probe kinds exist and where they live.

Modules are imported on first use so a kind nobody configures costs no memory
(the Oracle or SSH drivers, for instance).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from probes.thresholds import Threshold

if TYPE_CHECKING:
    from probes.settings import ProbeSettings

# kind -> runtime module. It defines `Probe` (constructed with the check's settings,
# `run(ctx) -> CheckResult`) and `DEFAULT_THRESHOLDS` (metric pattern -> Threshold), and
# optionally `HISTORY_METRICS` (GLOB patterns of metrics whose stored history the agent passes
# in ctx.history) and `DEFAULT_CONFIRMATIONS` (for kinds whose failures are events, e.g. a
# matching log line). The runtime module never imports pydantic: the monitoring process runs
# probes on plain settings (probes.plain).
# Its settings live in the module of the same name + "_settings", which defines `Settings`
# (a ProbeSettings subclass) and re-exports `DEFAULT_CONFIRMATIONS` when the kind has it.
# It should not import the runtime module when that loads network libraries (http.client,
# ssl, drivers): validation runs in a helper process that must stay small.
# A check's model is `CheckCommon` + the kind's `Settings`, so settings fields and validators
# must not reuse CheckCommon's names (name, system, interval, timeout, thresholds, ...).
# Validation imports every configured kind's modules, so a module must import heavy drivers
# (oracledb, paramiko, ...) inside the probe, not at module level.
KINDS: Mapping[str, str] = {
    "host": "probes.host",
    "http": "probes.http",
    "tcp": "probes.tcp",
    "plugin": "probes.plugin",
    "service": "probes.service",
    "backup_files": "probes.backup_files",
    "log": "probes.log",
    "postgres": "probes.db.postgres",
    "mysql": "probes.db.mysql",
    "oracle": "probes.db.oracle",
    "mssql": "probes.db.mssql",
    "ssh_host": "probes.ssh_host",
    "ssh_command": "probes.ssh_command",
}


def module(kind: str) -> ModuleType:
    return importlib.import_module(KINDS[kind] + ".probe")


def settings_module(kind: str) -> ModuleType:
    return importlib.import_module(KINDS[kind] + ".settings")


def settings_model(kind: str) -> type[ProbeSettings]:
    return settings_module(kind).Settings  # type: ignore[no-any-return]


def default_thresholds(kind: str) -> Mapping[str, Threshold]:
    return module(kind).DEFAULT_THRESHOLDS  # type: ignore[no-any-return]
