"""The probe-kind contract (probes.registry), over every registered kind.

A kind is its settings model, its probe class, default thresholds, history metrics, default
confirmations and the report sections it feeds. Adding a kind means adding its entry to the
registry and its minimal settings here; everything else below then holds for it or fails.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from probes import registry
from probes.base import CheckResult, ProbeContext, Status
from probes.settings import ProbeSettings
from probes.thresholds import Threshold
from tests.conftest import REPO
from tests.helpers.probe_contract import (
    DRIVERS,
    assert_kind_contract,
    drivers_in,
    modules_loaded_by,
    reserved_names,
)

_SSH = {"address": "10.0.0.5", "user": "monitor", "key_file": "/etc/sentinel/id_ed25519"}

EXAMPLES: dict[str, dict[str, Any]] = {
    "host": {},
    "ssh_host": {"ssh": _SSH},
    "http": {"url": "https://his.example.cn/health"},
    "tcp": {"host": "10.0.0.9", "port": 2575},
    "plugin": {"command": ["/usr/lib/nagios/plugins/check_ntp_time", "-H", "ntp1"]},
    "service": {"processes": [{"name": "java"}]},
    "ssh_command": {"ssh": _SSH, "command": ["/usr/local/bin/his-status"]},
    "backup_files": {"sets": [{"name": "his", "directory": "/backup/his", "schedule": "daily 04:00"}]},
    "log": {"files": ["/var/log/his/app.log"], "patterns": ["ERROR"]},
    "postgres": {"host": "db1", "user": "monitor"},
    "mysql": {"host": "db1", "user": "monitor"},
    "oracle": {"host": "db1", "user": "monitor", "service_name": "HISDB"},
    "mssql": {"host": "db1", "user": "monitor"},
}
"""A minimal valid `settings` part of one check per kind (what a user writes besides name, kind…)."""

KINDS = registry.kinds()


def test_every_kind_has_an_example_and_nothing_else_does() -> None:
    assert set(EXAMPLES) == set(KINDS)
    assert len(set(KINDS)) == len(KINDS) == len(registry.KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_kinds_package_ships_with_an_installed_agent(kind: str) -> None:
    """A package missing from pyproject's explicit list works in the checkout and is absent from
    the hospital's installed agent (its kind listed, its modules gone)."""
    package = registry.KINDS[kind]
    assert (REPO / Path(*package.split(".")) / "__init__.py").is_file(), f"{package} has no __init__.py"
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert package in listed, f"add {package!r} to [tool.setuptools] packages in pyproject.toml"


@pytest.mark.parametrize("kind", KINDS)
def test_spec_is_complete_and_consistent(kind: str) -> None:
    spec = assert_kind_contract(kind)
    package = registry.KINDS[kind]
    assert importlib.import_module(package + ".probe").Probe is spec.probe
    assert importlib.import_module(package + ".settings").Settings is spec.settings


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_example_validates_and_builds_the_kinds_probe(kind: str) -> None:
    spec = registry.spec(kind)
    settings = spec.settings.model_validate(EXAMPLES[kind])
    probe = spec.build(settings)
    assert isinstance(probe, spec.probe)  # type: ignore[arg-type]
    assert probe.kind == kind
    # Settings of another kind are refused before the probe could misread them.
    other = next(k for k in KINDS if not issubclass(registry.spec(k).settings, spec.settings))
    with pytest.raises(TypeError, match=kind):
        spec.build(registry.spec(other).settings.model_validate(EXAMPLES[other]))


@pytest.mark.parametrize("kind", KINDS)
def test_loading_a_kind_imports_no_driver_and_its_settings_never_load_its_probe(kind: str) -> None:
    package = registry.KINDS[kind]
    loaded = modules_loaded_by(f"from probes import registry\nregistry.spec({kind!r})")
    assert f"{package}.probe" in loaded
    assert drivers_in(loaded) == set(), f"{kind} imports {sorted(drivers_in(loaded))} at module level"
    settings_only = modules_loaded_by(f"import {package}.settings")
    assert f"{package}.probe" not in settings_only


def test_the_driver_check_sees_a_driver_when_one_is_imported() -> None:
    # Guards the check above against passing for the wrong reason (e.g. a renamed package).
    assert drivers_in(modules_loaded_by("import psycopg")) >= {"psycopg"}
    assert {"oracledb", "paramiko", "pymssql", "psycopg", "pymysql"} == set(DRIVERS)


def test_kinds_feeding_a_section_without_importing_any_kind() -> None:
    loaded = modules_loaded_by("from probes import registry\nregistry.kinds_feeding(registry.Section.HOSTS)")
    kind_modules = {m for m in loaded if m.startswith("probes.") and m.endswith((".probe", ".settings"))}
    assert kind_modules <= {"probes.settings"}
    assert registry.kinds_feeding(registry.Section.HOSTS) == ("host", "ssh_host")
    assert set(registry.kinds_feeding(registry.Section.INTERFACES)) == {"http", "tcp"}
    assert set(registry.kinds_feeding(registry.Section.DATABASES)) == {"postgres", "mysql", "oracle", "mssql"}
    assert set(registry.kinds_feeding(registry.Section.BACKUPS)) == {
        "postgres", "mysql", "oracle", "mssql", "backup_files"
    }  # fmt: skip
    assert registry.kinds_feeding(registry.Section.LOGS) == ("log",)


def test_event_kinds_confirm_at_once_and_the_rest_use_the_common_default() -> None:
    assert registry.spec("log").default_confirmations == 1
    assert {k for k in KINDS if registry.spec(k).default_confirmations is not None} == {"log"}


def test_default_rules_are_shared_read_only() -> None:
    rules = registry.spec("host").default_thresholds
    assert rules["cpu.pct"] == Threshold(warn=85, crit=95)
    with pytest.raises(TypeError):
        rules["cpu.pct"] = Threshold()  # type: ignore[index]


def test_unknown_kind_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        registry.spec("snmp")


class _Clashing(ProbeSettings):
    timeout: float = Field(5.0)
    target: str = "x"


def test_a_settings_field_named_like_a_common_field_is_caught() -> None:
    assert "timeout" in reserved_names() and "name" in reserved_names() and "kind" in reserved_names()
    assert {*_Clashing.model_fields} & reserved_names() == {"timeout"}


class _EchoProbe:
    kind = "echo"

    def __init__(self, settings: _Echo) -> None:
        self.settings = settings

    def run(self, ctx: ProbeContext) -> CheckResult:
        return CheckResult(Status.OK, self.settings.text)


class _Echo(ProbeSettings):
    text: str = "ok"


def test_build_hands_the_validated_settings_to_the_probe() -> None:
    spec = registry.KindSpec("echo", _Echo, _EchoProbe)
    result = spec.build(_Echo(text="你好")).run(ProbeContext("echo", 1.0))
    assert result.summary == "你好"
    assert spec.sections == frozenset() and spec.default_confirmations is None
