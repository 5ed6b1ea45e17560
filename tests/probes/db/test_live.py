"""The Oracle and SQL Server probes against a real server, when one is given.

    SENTINEL_TEST_ORACLE_DSN=user@host:port/service_name   (password in SENTINEL_TEST_ORACLE_PASSWORD)
    SENTINEL_TEST_MSSQL_DSN=user@host:port[/database]       (password in SENTINEL_TEST_MSSQL_PASSWORD)

The account should have exactly the grants of docs/db-grants.md: the test then asserts that
no item failed for lack of a grant, that each statement ran, and that the wrong password is
rejected without appearing anywhere in the result.

Without a DSN these tests are skipped with a plain pytest.skip, even under CI=true: no
Oracle or SQL Server can be installed on this machine or its CI, so an absent server is the
normal case here, not a broken environment (unlike PostgreSQL/MariaDB, which use need()).
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from probes.base import ProbeContext, Status
from probes.db.mssql import probe as mssql
from probes.db.mssql import settings as mssql_settings
from probes.db.oracle import probe as oracle
from probes.db.oracle import settings as oracle_settings

_DSN = re.compile(r"^(?P<user>[^@]+)@(?P<host>[^:/]+)(?::(?P<port>\d+))?(?:/(?P<target>.+))?$")


def _parse(env: str, password_env: str) -> dict[str, Any]:
    dsn = os.environ.get(env)
    if not dsn:
        pytest.skip(f"{env} is not set: no live server for this engine (format user@host:port/name)")
    m = _DSN.match(dsn)
    assert m, f"{env} must look like user@host:port/name"
    assert password_env in os.environ, f"set {password_env} to the monitoring account's password"
    out: dict[str, Any] = {"host": m["host"], "user": m["user"], "password": "${" + password_env + "}"}
    if m["port"]:
        out["port"] = int(m["port"])
    return {**out, "target": m["target"]}


def _assert_healthy_run(result: Any) -> None:
    assert result.status is not Status.UNKNOWN, result.summary
    findings = result.details["findings"]
    assert not [f for f in findings if "权限不足" in f["text"]], findings
    assert not [f for f in findings if f["status"] == "UNKNOWN"], findings
    assert result.metric("login_ms") is not None


def test_oracle_live() -> None:
    cfg = _parse("SENTINEL_TEST_ORACLE_DSN", "SENTINEL_TEST_ORACLE_PASSWORD")
    target = cfg.pop("target")
    assert target, "SENTINEL_TEST_ORACLE_DSN needs /service_name"
    settings = oracle_settings.Settings.model_validate({**cfg, "service_name": target})
    result = oracle.Probe(settings).run(ProbeContext("oracle-live", 30.0))
    _assert_healthy_run(result)
    assert "tablespace_space" in result.details["facts"]


def test_mssql_live() -> None:
    cfg = _parse("SENTINEL_TEST_MSSQL_DSN", "SENTINEL_TEST_MSSQL_PASSWORD")
    target = cfg.pop("target")
    settings = mssql_settings.Settings.model_validate({**cfg, **({"database": target} if target else {})})
    result = mssql.Probe(settings).run(ProbeContext("mssql-live", 30.0))
    _assert_healthy_run(result)
    assert "backups" in result.details["facts"] and "database_space" in result.details["facts"]


@pytest.mark.parametrize("engine", ["oracle", "mssql"])
def test_wrong_password_is_rejected_and_never_shown(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"oracle": "SENTINEL_TEST_ORACLE", "mssql": "SENTINEL_TEST_MSSQL"}[engine]
    cfg = _parse(f"{env}_DSN", f"{env}_PASSWORD")
    target = cfg.pop("target")
    monkeypatch.setenv("SENTINEL_TEST_WRONG_PW", "Not-The-Pw-8731")
    cfg["password"] = "${SENTINEL_TEST_WRONG_PW}"
    module: Any = oracle if engine == "oracle" else mssql
    model: Any = oracle_settings.Settings if engine == "oracle" else mssql_settings.Settings
    extra = {"service_name": target} if engine == "oracle" else ({"database": target} if target else {})
    settings = model.model_validate({**cfg, **extra})
    result = module.Probe(settings).run(ProbeContext("live", 20.0))
    assert result.status is Status.CRIT and "无法登录" in result.summary
    assert "Not-The-Pw-8731" not in repr(result)
