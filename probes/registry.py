"""Every probe kind: what it is made of and which report sections it feeds.

One entry per kind, a `KindSpec`: its settings model, its probe class, the default threshold
rules, the metrics whose stored history it needs, its default confirmations and the report
sections it feeds. Reports ask `kinds_feeding(Section.HOSTS)` rather than naming kinds, so a
registered kind shows up in every section it declares.

A kind's modules are imported on its first `spec(kind)`, so a kind nobody configures costs no
memory. Database and SSH drivers (psycopg, pymysql, oracledb, pymssql, paramiko) are imported
only inside a probe's run, never when its modules load: most sites use one engine or none.

Adding a kind (ARCHITECTURE.md has the checklist): the package `probes/<kind>/` (`__init__.py`,
`settings.py` with a `ProbeSettings` subclass, `probe.py` with a `Probe` class: `kind`, built with
the settings, `run(ctx) -> CheckResult`), a `_<kind>()` loader and an `_Entry` in `_KINDS` below
(the report sections go on the `_Entry`), the package in pyproject.toml's list, and a settings
example in tests/probes/test_kind_contract.py. A check's model is
`CheckCommon` + the kind's settings, so settings fields and validators must not reuse
CheckCommon's names (name, system, interval, timeout, thresholds, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from probes.base import Probe
from probes.settings import ProbeSettings
from probes.thresholds import Threshold

__all__ = [
    "KINDS",
    "KindSpec",
    "ProbeClass",
    "Section",
    "kinds",
    "kinds_feeding",
    "spec",
]


class Section(StrEnum):
    """The report sections a kind's results can feed (beyond the check list every check is in)."""

    HOSTS = "hosts"
    """Servers: CPU, load, memory, swap, uptime and disks (cpu.pct, mem.pct, disk:<mount>.*)."""
    INTERFACES = "interfaces"
    """Endpoints: latency percentiles, failures, availability and certificates."""
    DATABASES = "databases"
    """Database space, findings and facts (details with "facts")."""
    BACKUPS = "backups"
    """Backups of the night and expected backup slots (details with "backups_expected")."""
    LOGS = "logs"
    """Matching log lines."""


S = TypeVar("S", bound=ProbeSettings)
S_contra = TypeVar("S_contra", bound=ProbeSettings, contravariant=True)


class ProbeClass(Protocol[S_contra]):
    """A kind's probe class: names its kind and is built once per check with its settings."""

    @property
    def kind(self) -> str: ...

    def __call__(self, settings: S_contra, /) -> Probe: ...


_NO_RULES: Mapping[str, Threshold] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class KindSpec(Generic[S]):
    """What the agent knows about one probe kind."""

    kind: str
    settings: type[S]
    """The kind's settings model; a check of this kind validates as CheckCommon + this model."""
    probe: ProbeClass[S]
    default_thresholds: Mapping[str, Threshold] = field(default_factory=lambda: _NO_RULES)
    """Metric pattern -> rule applied after the probe, under the check's own `thresholds:`."""
    history_metrics: tuple[str, ...] = ()
    """GLOB patterns of metrics whose stored history the agent hands in ctx.history (trends)."""
    default_confirmations: int | None = None
    """Consecutive samples before a new state is confirmed; None: CheckCommon's default. Kinds
    whose failures are events (a matching log line) are over by the next run and need 1."""
    sections: frozenset[Section] = field(default_factory=frozenset)
    """The report sections the kind's results feed (declared by its registry entry)."""

    def build(self, check: BaseModel) -> Probe:
        """The probe of one check (a validated check of this kind: CheckCommon + `settings`)."""
        if not isinstance(check, self.settings):
            want = f"{self.settings.__module__}.{self.settings.__qualname__}"
            raise TypeError(f"a {self.kind} probe needs {want}, not {type(check).__qualname__}")
        return self.probe(check)


def _host() -> KindSpec[Any]:
    from probes.host import probe, settings

    return KindSpec("host", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS, probe.HISTORY_METRICS)


def _ssh_host() -> KindSpec[Any]:
    from probes.ssh_host import probe, settings

    return KindSpec(
        "ssh_host", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS, probe.HISTORY_METRICS
    )


def _http() -> KindSpec[Any]:
    from probes.http import probe, settings

    return KindSpec("http", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS)


def _tcp() -> KindSpec[Any]:
    from probes.tcp import probe, settings

    return KindSpec("tcp", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS)


def _plugin() -> KindSpec[Any]:
    from probes.plugin import probe, settings

    return KindSpec("plugin", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS)


def _service() -> KindSpec[Any]:
    from probes.service import probe, settings

    return KindSpec("service", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS)


def _ssh_command() -> KindSpec[Any]:
    from probes.ssh_command import probe, settings

    return KindSpec("ssh_command", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS)


def _backup_files() -> KindSpec[Any]:
    from probes.backup_files import probe, settings

    return KindSpec("backup_files", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS)


def _log() -> KindSpec[Any]:
    from probes.log import probe, settings

    return KindSpec(
        "log", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS,
        default_confirmations=settings.DEFAULT_CONFIRMATIONS,
    )  # fmt: skip


def _postgres() -> KindSpec[Any]:
    from probes.db.postgres import probe, settings

    return KindSpec(
        "postgres", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS, probe.HISTORY_METRICS
    )


def _mysql() -> KindSpec[Any]:
    from probes.db.mysql import probe, settings

    return KindSpec("mysql", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS, probe.HISTORY_METRICS)


def _oracle() -> KindSpec[Any]:
    from probes.db.oracle import probe, settings

    return KindSpec("oracle", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS, probe.HISTORY_METRICS)


def _mssql() -> KindSpec[Any]:
    from probes.db.mssql import probe, settings

    return KindSpec("mssql", settings.Settings, probe.Probe, probe.DEFAULT_THRESHOLDS, probe.HISTORY_METRICS)


@dataclass(frozen=True, slots=True)
class _Entry:
    package: str
    """Holds the kind's `settings` and `probe` modules."""
    sections: frozenset[Section]
    """Declared here rather than in the loaded spec, so that a report can ask which kinds feed a
    section without importing every kind's modules."""
    load: Callable[[], KindSpec[Any]]


_HOSTS = frozenset({Section.HOSTS})
_INTERFACES = frozenset({Section.INTERFACES})
_DATABASE = frozenset({Section.DATABASES, Section.BACKUPS})
_NONE: frozenset[Section] = frozenset()

_KINDS: Mapping[str, _Entry] = {
    # A server read locally or over SSH: the same metric names, the same host table.
    "host": _Entry("probes.host", _HOSTS, _host),
    "ssh_host": _Entry("probes.ssh_host", _HOSTS, _ssh_host),
    "http": _Entry("probes.http", _INTERFACES, _http),
    "tcp": _Entry("probes.tcp", _INTERFACES, _tcp),
    # A database server's own records are its backup history (RMAN, msdb, WAL archiving).
    "postgres": _Entry("probes.db.postgres", _DATABASE, _postgres),
    "mysql": _Entry("probes.db.mysql", _DATABASE, _mysql),
    "oracle": _Entry("probes.db.oracle", _DATABASE, _oracle),
    "mssql": _Entry("probes.db.mssql", _DATABASE, _mssql),
    "backup_files": _Entry("probes.backup_files", frozenset({Section.BACKUPS}), _backup_files),
    "log": _Entry("probes.log", frozenset({Section.LOGS}), _log),
    # These check whatever they are pointed at (a Nagios plugin, a remote command, processes
    # and Windows services), with no metrics a section's table has columns for: like every
    # check they are in the check list, the state changes, faults and availability.
    "plugin": _Entry("probes.plugin", _NONE, _plugin),
    "service": _Entry("probes.service", _NONE, _service),
    "ssh_command": _Entry("probes.ssh_command", _NONE, _ssh_command),
}

KINDS: Mapping[str, str] = MappingProxyType({kind: e.package for kind, e in _KINDS.items()})
"""kind -> the package holding its `settings` and `probe` modules."""


def kinds() -> tuple[str, ...]:
    """Every registered kind."""
    return tuple(_KINDS)


def kinds_feeding(section: Section) -> tuple[str, ...]:
    """The kinds whose results feed `section` of the reports (imports nothing)."""
    return tuple(kind for kind, e in _KINDS.items() if section in e.sections)


@functools.cache
def spec(kind: str) -> KindSpec[Any]:
    """The kind's spec, its modules imported on first use. KeyError for an unknown kind."""
    entry = _KINDS[kind]
    loaded = entry.load()
    if loaded.kind != kind:
        raise RuntimeError(f"registry entry {kind!r} loads the spec of {loaded.kind!r}")
    if loaded.sections and loaded.sections != entry.sections:
        # Sections belong on the _Entry (reports ask without loading kinds): say so, never drop.
        raise RuntimeError(f"registry entry {kind!r}: declare its report sections on its _Entry")
    # Read-only: every check of the kind shares these rules.
    rules = MappingProxyType(dict(loaded.default_thresholds))
    return replace(loaded, default_thresholds=rules, sections=entry.sections)
