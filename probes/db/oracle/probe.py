"""Oracle probe (python-oracledb): login, instance and database state, space, sessions,
blocking, RMAN backups, archive logs, FRA, alert log, Data Guard, accounts, ASM.

Thin mode (pure Python, Oracle 12.1+) by default. It runs on a private asyncio loop so that
login and every statement are cut at their time limit even when the server accepts the
connection and never answers (thin mode's own `tcp_connect_timeout` only covers the TCP
connect). `thick: {lib_dir: ...}` loads the Instant Client for 11g; thick mode is
process-wide in python-oracledb, and there the limits are Oracle Net's: CONNECT_TIMEOUT in
the descriptor for login and `call_timeout` per statement.

The items live in probes/db/oracle/items.py, the settings in probes/db/oracle/settings.py;
the grants are in docs/db-grants.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from probes.base import CheckResult, ProbeContext
from probes.db.engine import DbConnection, Engine, ErrorCodes, error_text, run_db_probe
from probes.db.items import Item, as_utc
from probes.db.oracle.items import ITEMS, SQL_ASM_GATE, SQL_SERVER_NOW
from probes.db.oracle.settings import Settings
from probes.thresholds import Threshold

__all__ = ["DEFAULT_THRESHOLDS", "HISTORY_METRICS", "ITEMS", "Probe", "classify"]

DEFAULT_THRESHOLDS: dict[str, Threshold] = {"login_ms": Threshold(warn=3000)}
"""Items judge their own thresholds; only the login time is left to the generic rules."""

HISTORY_METRICS = ("tablespace.*.size_bytes", "asm.*.size_bytes")

# ORA-00942 is also what a missing grant looks like; every view used exists on 11.2+, so a
# grant is the likely cause. ORA-00904 (unknown column) is a view from another version.
_PERMISSION = frozenset({"ORA-00942", "ORA-01031", "ORA-00980"})
_MISSING = frozenset({"ORA-00904", "ORA-02030"})
_TIMEOUT = frozenset({"DPY-4024", "ORA-03156", "DPY-4011", "ORA-01013"})
_CODE = re.compile(r"\b((?:ORA|DPY|DPI)-\d{4,5})\b")


def error_code(exc: BaseException) -> str | None:
    err = exc.args[0] if exc.args else None
    code = getattr(err, "full_code", None)
    if isinstance(code, str):
        return code
    m = _CODE.search(str(exc))
    return m.group(1) if m else None


classify = ErrorCodes(error_code, _PERMISSION, _MISSING, _TIMEOUT)


def _rows(cursor: Any, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    names = [d[0].lower() for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in rows]


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:5])


class _Session(ABC):
    """What thin and thick sessions share: both ask the server for its version and clock."""

    _conn: Any

    @abstractmethod
    def query(self, sql: str, timeout_s: float) -> list[dict[str, Any]]: ...

    def server_version(self) -> tuple[int, ...]:
        return parse_version(self._conn.version)

    def server_now(self) -> datetime | None:
        rows = self.query(SQL_SERVER_NOW, 2.0)
        value = rows[0].get("now_utc") if rows else None
        return as_utc(value) if isinstance(value, datetime) else None


class ThinConnection(_Session):
    """A thin-mode session on its own event loop: every call is bounded by asyncio.wait_for."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: Any) -> None:
        self._loop = loop
        self._conn = conn

    @classmethod
    def open(cls, params: dict[str, Any], login_s: float) -> ThinConnection:
        import oracledb

        async def login() -> Any:
            return await asyncio.wait_for(oracledb.connect_async(**params), login_s)

        loop = asyncio.new_event_loop()
        try:
            conn = loop.run_until_complete(login())
        except BaseException:
            loop.close()
            raise
        return cls(loop, conn)

    async def _fetch(self, sql: str) -> list[dict[str, Any]]:
        cursor = self._conn.cursor()
        try:
            await cursor.execute(sql)
            return _rows(cursor, await cursor.fetchall())
        finally:
            cursor.close()

    def query(self, sql: str, timeout_s: float) -> list[dict[str, Any]]:
        # The server breaks the call itself a little earlier, which keeps the session usable.
        self._conn.call_timeout = max(int(timeout_s * 900), 1)

        async def bounded() -> list[dict[str, Any]]:
            return await asyncio.wait_for(self._fetch(sql), timeout_s)

        return self._loop.run_until_complete(bounded())

    async def _close(self) -> None:
        await asyncio.wait_for(self._conn.close(), 1.0)

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):  # a timed-out session may refuse a clean logoff
                self._loop.run_until_complete(self._close())
        finally:
            self._loop.close()


class ThickConnection(_Session):
    """Thick mode (Instant Client): Oracle Net enforces the limits, no event loop."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def query(self, sql: str, timeout_s: float) -> list[dict[str, Any]]:
        self._conn.call_timeout = max(int(timeout_s * 1000), 1)
        with self._conn.cursor() as cursor:
            cursor.execute(sql)
            return _rows(cursor, cursor.fetchall())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def _descriptor(s: Settings, login_s: float) -> str:
    target = f"(SERVICE_NAME={s.service_name})" if s.service_name else f"(SID={s.sid})"
    t = max(int(login_s + 0.999), 1)
    return (
        f"(DESCRIPTION=(CONNECT_TIMEOUT={t})(TRANSPORT_CONNECT_TIMEOUT={t})(RETRY_COUNT=0)"
        f"(ADDRESS=(PROTOCOL=TCP)(HOST={s.host})(PORT={s.port or 1521}))(CONNECT_DATA={target}))"
    )


def connect(settings: Settings, password: str | None, login_s: float, deadline: float) -> DbConnection:
    import oracledb

    if settings.thick is not None:
        if oracledb.is_thin_mode():
            oracledb.init_oracle_client(lib_dir=settings.thick.lib_dir)
        conn = oracledb.connect(user=settings.user, password=password, dsn=_descriptor(settings, login_s))
        return ThickConnection(conn)
    params: dict[str, Any] = {
        "user": settings.user,
        "password": password,
        "host": settings.host,
        "port": settings.port or 1521,
        "tcp_connect_timeout": login_s,
        "retry_count": 0,
        "program": "his-sentinel",
    }
    params["service_name" if settings.service_name else "sid"] = settings.service_name or settings.sid
    return ThinConnection.open(params, login_s)


_LOGIN_TEXT = {
    "ORA-01017": "用户名或密码错误",
    "ORA-28000": "账户已锁定",
    "ORA-28001": "密码已过期",
    "ORA-12514": "监听器不认识该服务名（service_name）",
    "ORA-12505": "监听器不认识该 SID",
    "ORA-12541": "目标端口没有监听器",
    "ORA-12528": "实例正在启动或关闭，拒绝新连接",
    "ORA-01033": "实例正在启动或关闭",
    "ORA-01034": "实例未启动",
    "DPY-3010": "数据库版本低于 12.1，thin 模式无法连接；请配置 thick.lib_dir（Instant Client）",
    "DPY-6005": "无法建立网络连接",
}


def describe_login_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "登录超时：服务器在登录超时内没有应答"
    code = error_code(exc)
    if code == "DPY-6005" and isinstance(exc.__cause__, ConnectionRefusedError):
        return "连接被拒绝（端口未监听）"
    known = _LOGIN_TEXT.get(code or "")
    return f"{known}（{code}）" if known else error_text(exc)


def items_for(conn: DbConnection) -> Sequence[Item]:
    """Every item, except ASM where no datafile is in a disk group: querying V$ASM_* on such
    an instance writes a trace file each time."""
    try:
        rows = conn.query(SQL_ASM_GATE, 2.0)
        asm = bool(rows and int(rows[0].get("asm_files") or 0))
    except Exception:  # noqa: BLE001 - no answer about ASM: leave the ASM item out rather than fail
        asm = False
    return ITEMS if asm else tuple(i for i in ITEMS if i.name != "asm")


ENGINE = Engine("Oracle", 1521, connect, items_for, classify, describe_login_error)


class Probe:
    kind: ClassVar[str] = "oracle"

    __slots__ = ("settings",)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, ctx: ProbeContext) -> CheckResult:
        return run_db_probe(ENGINE, self.settings, ctx)
