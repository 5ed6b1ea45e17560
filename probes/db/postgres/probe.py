"""PostgreSQL probe (psycopg 3): login, state, space, sessions, locks, replication, WAL archiving.

One connection per run, opened read-only (`default_transaction_read_only`) with a
statement timeout in the startup packet, closed afterwards. The items live in
probes/db/postgres/items.py, the settings in probes/db/postgres/settings.py; the grants the
monitoring account needs are in docs/db-grants.md.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from probes.base import CheckResult, ProbeContext
from probes.db.engine import DbConnection, DeadlineGuard, Engine, ErrorCodes, error_text, run_db_probe
from probes.db.items import Item
from probes.db.postgres.items import ITEMS
from probes.db.postgres.settings import Settings
from probes.thresholds import Threshold

__all__ = ["DEFAULT_THRESHOLDS", "HISTORY_METRICS", "ITEMS", "Probe", "classify"]

DEFAULT_THRESHOLDS: dict[str, Threshold] = {"login_ms": Threshold(warn=3000)}
"""Item thresholds are judged by the items themselves; only the login time is left generic."""

HISTORY_METRICS = ("database.*.size_bytes", "tablespace.*.size_bytes")

_PERMISSION = frozenset({"42501"})
_MISSING = frozenset({"42P01", "42883", "3F000", "42703", "42704", "0A000"})
_TIMEOUT = frozenset({"57014", "55P03"})


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


classify = ErrorCodes(_sqlstate, _PERMISSION, _MISSING, _TIMEOUT)


class PgConnection:
    """A read-only session; statement_timeout follows each query's time budget."""

    def __init__(self, conn: Any, timeout_ms: int, deadline: float) -> None:
        import time

        self._conn = conn
        self._timeout_ms = timeout_ms
        self._guard = DeadlineGuard(conn.fileno(), deadline - time.monotonic())

    def query(self, sql: str, timeout_s: float) -> list[dict[str, Any]]:
        import psycopg

        ms = max(int(timeout_s * 1000), 1)
        try:
            if ms != self._timeout_ms:
                self._conn.execute(f"SET statement_timeout = {ms}")
                self._timeout_ms = ms
            cur = self._conn.execute(sql)
            if cur.description is None:
                return []
            names = [c.name.lower() for c in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except psycopg.Error as exc:
            self._guard.raise_if_fired()
            if getattr(exc, "sqlstate", None) == "57014":
                raise TimeoutError(f"statement timeout ({ms} ms)") from None
            raise

    def server_version(self) -> tuple[int, ...]:
        n = int(self._conn.info.server_version)
        # 150020 -> (15, 20); before 10 the scheme was 90624 -> (9, 6, 24)
        return (n // 10000, n % 10000) if n >= 100000 else (n // 10000, n // 100 % 100, n % 100)

    def server_now(self) -> datetime | None:
        rows = self.query("SELECT now() AS now", max(self._timeout_ms / 1000, 1.0))
        value = rows[0]["now"] if rows else None
        return value.astimezone(UTC) if isinstance(value, datetime) else None

    def close(self) -> None:
        self._guard.cancel()
        with contextlib.suppress(Exception):  # a cut or broken socket may refuse a clean close
            self._conn.close()


def connect(settings: Settings, password: str | None, login_s: float, deadline: float) -> DbConnection:
    import psycopg

    timeout_ms = max(int(settings.query_timeout * 1000), 1)
    conn = psycopg.connect(
        host=settings.host,
        port=settings.port or 5432,
        user=settings.user,
        password=password,
        dbname=settings.database,
        sslmode=settings.sslmode,
        sslrootcert=settings.sslrootcert or None,  # None: psycopg leaves the parameter out
        # libpq counts whole seconds and treats anything below 2 as 2.
        connect_timeout=max(int(login_s), 2),
        application_name="his-sentinel",
        options=f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}",
        autocommit=True,
    )
    return PgConnection(conn, timeout_ms, deadline)


_PREFIX = re.compile(r'^(connection failed: )?(connection to server at "[^"]*"(, port \d+)? failed: )?')


def describe_login_error(exc: BaseException) -> str:
    import psycopg

    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        return "登录超时：服务器在登录超时内没有应答"
    text = _PREFIX.sub("", error_text(exc)).removeprefix("FATAL:").strip()
    if "password authentication failed" in text:
        return f"密码认证失败（{text}）"
    if "does not exist" in text and "database" in text:
        return f"数据库不存在（{text}）"
    if "Connection refused" in text:
        return "连接被拒绝（端口未监听）"
    return text


def items_for(conn: DbConnection) -> Sequence[Item]:
    return ITEMS


ENGINE = Engine("PostgreSQL", 5432, connect, items_for, classify, describe_login_error)


class Probe:
    kind: ClassVar[str] = "postgres"

    __slots__ = ("settings",)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, ctx: ProbeContext) -> CheckResult:
        return run_db_probe(ENGINE, self.settings, ctx)
