"""SQL Server probe (pymssql / FreeTDS): login, database state, space, sessions, blocking,
backups per recovery model and Always On position, CHECKDB, suspect pages, log space, Agent
jobs and service, Always On / log shipping / mirroring, login expiry.

One autocommit connection per run (no transaction is held open), `login_timeout` for the
login and the FreeTDS query timeout per statement. The TDS version is pinned (7.4 by
default): left to auto-negotiation, FreeTDS retries every protocol version against a
server that never answers and the login takes several times its timeout. FreeTDS dropped
TLS 1.0, which unpatched SQL Server 2008 R2 still needs (see docs/db-grants.md).

The items live in probes/db/mssql/items.py, the settings in probes/db/mssql/settings.py;
the grants are in docs/db-grants.md.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from probes.base import CheckResult, ProbeContext
from probes.db.engine import DbConnection, Engine, ErrorCodes, error_text, run_db_probe
from probes.db.items import Item, as_utc
from probes.db.mssql.items import SQL_SERVER_NOW, SQL_VERSION, items_for_version
from probes.db.mssql.settings import Settings
from probes.thresholds import Threshold

__all__ = ["DEFAULT_THRESHOLDS", "HISTORY_METRICS", "Probe", "classify"]

DEFAULT_THRESHOLDS: dict[str, Threshold] = {"login_ms": Threshold(warn=3000)}
"""Items judge their own thresholds; only the login time is left to the generic rules."""

HISTORY_METRICS = ("database.*.size_bytes", "volume.*.size_bytes")


# 229/230: permission denied on object/column; 297/300: VIEW SERVER STATE missing;
# 208: invalid object name; 207: invalid column; 4121/195: unknown function.
_PERMISSION = frozenset({229, 230, 297, 300, 916})
_MISSING = frozenset({208, 207, 4121, 195, 2812})
_TIMEOUT = frozenset({20003, 20047})
_NUMBER = re.compile(r"^\((\d+),")


def error_number(exc: BaseException) -> int | None:
    number = getattr(exc, "number", None)
    if isinstance(number, int):
        return number
    if exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    m = _NUMBER.match(str(exc))
    return int(m.group(1)) if m else None


classify = ErrorCodes(error_number, _PERMISSION, _MISSING, _TIMEOUT, timeout_words="timed out")


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:4])


class MssqlConnection:
    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._version: tuple[int, ...] | None = None

    def query(self, sql: str, timeout_s: float) -> list[dict[str, Any]]:
        # FreeTDS counts whole seconds; rounding down keeps the statement inside the budget.
        inner = getattr(self._conn, "_conn", None)
        if inner is not None:
            inner.query_timeout = max(int(timeout_s), 1)
        with self._conn.cursor(as_dict=True) as cursor:
            cursor.execute(sql)
            return [{str(k).lower(): v for k, v in row.items()} for row in cursor.fetchall()]

    def server_version(self) -> tuple[int, ...]:
        if self._version is None:
            rows = self.query(SQL_VERSION, 3.0)
            self._version = parse_version(str(rows[0]["product_version"])) if rows else ()
        return self._version

    def server_now(self) -> datetime | None:
        rows = self.query(SQL_SERVER_NOW, 2.0)
        value = rows[0].get("now_utc") if rows else None
        return as_utc(value) if isinstance(value, datetime) else None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a broken session may refuse a clean close
            self._conn.close()


def connect(settings: Settings, password: str | None, login_s: float, deadline: float) -> DbConnection:
    import pymssql

    conn = pymssql.connect(
        server=settings.host,
        port=str(settings.port or 1433),
        user=settings.user,
        password=password or "",
        database=settings.database,
        login_timeout=max(int(login_s), 1),
        timeout=max(int(settings.query_timeout), 1),
        appname="his-sentinel",
        autocommit=True,
        tds_version=settings.tds_version,
    )
    return MssqlConnection(conn)


_LOGIN_TEXT = {
    18456: "登录失败：用户名或密码错误，或登录名被禁用",
    4060: "无法打开登录时指定的数据库",
    18452: "登录失败：不受信任的域登录",
    18486: "登录名已被锁定",
    18487: "密码已过期",
    18488: "必须修改密码后才能登录",
}


def describe_login_error(exc: BaseException) -> str:
    text = str(exc)
    for number, zh in _LOGIN_TEXT.items():
        if f"{number}" in text:
            return f"{zh}（{number}）"
    if "timed out" in text.lower() or "20003" in text:
        return "登录超时：服务器在登录超时内没有应答"
    if "Connection refused" in text or "Unable to connect" in text and "20009" in text:
        return "连接被拒绝或无法连接（端口未监听）"
    first = text.replace("\\n", "\n").split("\n")
    return error_text(Exception(next((line for line in first if line.strip()), type(exc).__name__)))


def items_for(conn: DbConnection) -> Sequence[Item]:
    return items_for_version(conn.server_version())


ENGINE = Engine("SQL Server", 1433, connect, items_for, classify, describe_login_error)


class Probe:
    kind: ClassVar[str] = "mssql"

    __slots__ = ("settings",)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, ctx: ProbeContext) -> CheckResult:
        return run_db_probe(ENGINE, self.settings, ctx)
