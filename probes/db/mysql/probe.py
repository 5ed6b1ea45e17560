"""MySQL / MariaDB probe (PyMySQL): login, state, space, sessions, locks, replication, binlog.

One connection per run: connect and read timeouts bound the login (PyMySQL's connect
timeout alone does not cover a server that accepts and never sends its greeting), then the
session is made read-only with a server-side statement time limit (`max_statement_time`
on MariaDB, `max_execution_time` on MySQL) and closed afterwards.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from probes.base import CheckResult, ProbeContext
from probes.db.engine import DbConnection, DeadlineGuard, Engine, ErrorCodes, error_text, run_db_probe
from probes.db.items import Item
from probes.db.mysql.items import ITEMS, items_for
from probes.db.mysql.settings import Settings
from probes.thresholds import Threshold

__all__ = ["DEFAULT_THRESHOLDS", "HISTORY_METRICS", "ITEMS", "Probe", "classify"]

DEFAULT_THRESHOLDS: dict[str, Threshold] = {"login_ms": Threshold(warn=3000)}
"""Item thresholds are judged by the items themselves; only the login time is left generic."""

HISTORY_METRICS = ("database.*.size_bytes",)

_PERMISSION = frozenset({1044, 1045, 1142, 1143, 1227, 1370, 3530})
_MISSING = frozenset({1049, 1054, 1064, 1109, 1146, 1193, 1286})
_TIMEOUT = frozenset({1317, 1969, 2013, 3024})
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


classify = ErrorCodes(_code, _PERMISSION, _MISSING, _TIMEOUT)


class MyConnection:
    """A read-only session whose statement time limit follows each query's budget."""

    def __init__(self, conn: Any, deadline: float) -> None:
        self._conn = conn
        self._version_text = ""
        self._limit_s: float | None = None
        self._guard = DeadlineGuard(conn._sock.fileno(), deadline - time.monotonic())
        try:
            rows = self._run("SELECT VERSION() AS v")
            self._version_text = str(rows[0]["v"])
            self.mariadb = "mariadb" in self._version_text.lower()
            self._run("SET SESSION TRANSACTION READ ONLY")
        except BaseException:
            self._guard.cancel()
            raise

    def _run(self, sql: str) -> list[dict[str, Any]]:
        import pymysql

        try:
            with self._conn.cursor() as cur:
                cur.execute(sql)
                if cur.description is None:
                    return []
                names = [str(c[0]).lower() for c in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except pymysql.Error as exc:
            self._guard.raise_if_fired()
            if _code(exc) in _TIMEOUT:
                raise TimeoutError(error_text(exc)) from None
            raise

    def query(self, sql: str, timeout_s: float) -> list[dict[str, Any]]:
        limit = max(round(timeout_s, 3), 0.001)
        if limit != self._limit_s:
            if self.mariadb:
                self._run(f"SET SESSION max_statement_time = {limit:.3f}")
            else:
                self._run(f"SET SESSION max_execution_time = {max(int(limit * 1000), 1)}")
            self._limit_s = limit
        return self._run(sql)

    def server_version(self) -> tuple[int, ...]:
        m = _VERSION.match(self._version_text)
        return tuple(int(g) for g in m.groups()) if m else (0,)

    def server_now(self) -> datetime | None:
        rows = self._run("SELECT UTC_TIMESTAMP(6) AS now")
        value = rows[0]["now"] if rows else None
        return value.replace(tzinfo=UTC) if isinstance(value, datetime) else None

    def close(self) -> None:
        self._guard.cancel()
        with contextlib.suppress(Exception):  # a cut or broken socket may refuse a clean close
            self._conn.close()


def connect(settings: Settings, password: str | None, login_s: float, deadline: float) -> DbConnection:
    import pymysql

    tls: dict[str, Any] = {"ssl_disabled": True}
    if settings.ssl_mode != "disabled":
        import ssl

        context = ssl.create_default_context(cafile=settings.ssl_ca)
        context.check_hostname = settings.ssl_mode == "verify_identity"
        tls = {"ssl": context}
    conn = pymysql.connect(
        **tls,
        host=settings.host,
        port=settings.port or 3306,
        user=settings.user,
        password=password or "",
        connect_timeout=login_s,
        read_timeout=login_s,
        write_timeout=login_s,
        charset="utf8mb4",
        autocommit=True,
        program_name="his-sentinel",
    )
    try:
        # The handshake is over: from now on the server-side limit and the deadline guard
        # bound each statement, so reads may wait as long as a statement may run.
        conn._read_timeout = max(settings.query_timeout + 1.0, login_s)
        return MyConnection(conn, deadline)
    except BaseException:
        conn.close()
        raise


def describe_login_error(exc: BaseException) -> str:
    code = _code(exc)
    text = error_text(exc)
    if code == 2013 or isinstance(exc, TimeoutError):
        return "登录超时：服务器在登录超时内没有应答"
    if code == 1045:
        return f"用户名或密码错误（{text}）"
    if code == 1049:
        return f"数据库不存在（{text}）"
    if code == 2003 and "refused" in text.lower():
        return "连接被拒绝（端口未监听）"
    if code == 2003 and "timed out" in text.lower():
        return "连接超时：端口无应答"
    return text


def _items(conn: DbConnection) -> Sequence[Item]:
    assert isinstance(conn, MyConnection)
    return items_for(conn.mariadb, conn.server_version())


def _product(conn: DbConnection) -> str:
    return "MariaDB" if isinstance(conn, MyConnection) and conn.mariadb else "MySQL"


ENGINE = Engine("MySQL", 3306, connect, _items, classify, describe_login_error, _product)


class Probe:
    kind: ClassVar[str] = "mysql"

    __slots__ = ("settings",)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, ctx: ProbeContext) -> CheckResult:
        return run_db_probe(ENGINE, self.settings, ctx)
