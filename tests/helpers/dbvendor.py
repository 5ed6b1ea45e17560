"""Helpers for the Oracle / SQL Server tests: item contexts and a replay of recorded rows.

No Oracle or SQL Server can run here; their evaluations are tested on result rows recorded
in the shape the real views return, and the engine is driven over `Replay`, a connection that
answers each statement with its recorded rows (and fails like the driver for the rest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from probes.db.items import Item, ItemContext, ItemOutcome, Rows
from probes.db.settings import BackupExpectation

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 12, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def ictx(
    item: Item,
    *,
    now: datetime = NOW,
    server_now: datetime | None = None,
    tz: tzinfo = SHANGHAI,
    version: tuple[int, ...] = (19, 18),
    options: Mapping[str, Any] | None = None,
    memory: Mapping[str, Any] | None = None,
    history: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    thresholds: Mapping[str, Any] | None = None,
) -> ItemContext:
    return ItemContext(
        now=now,
        tz=tz,
        version=version,
        thresholds={**item.thresholds, **(thresholds or {})},
        options=dict(options or {}),
        history=history or {},
        memory=memory or {},
        server_now=server_now,
    )


def evaluate(item: Item, data: Mapping[str, Rows], **kw: Any) -> ItemOutcome:
    return item.evaluate(data, ictx(item, **kw))


def expect(database: str, kind: str, schedule: str, grace: str) -> BackupExpectation:
    """A configured backup expectation, validated as the probe gets it."""
    return BackupExpectation.model_validate(
        {"database": database, "type": kind, "schedule": schedule, "grace": grace}
    )


def texts(outcome: ItemOutcome) -> list[str]:
    return [f"{f.status.name} {f.text}" for f in outcome.findings]


class Replay:
    """A DbConnection answering recorded rows by statement text; an unknown statement fails."""

    def __init__(self, answers: Mapping[str, Rows], version: tuple[int, ...], error: type[Exception]) -> None:
        self.answers = {k.strip(): v for k, v in answers.items()}
        self.version = version
        self.error = error
        self.sent: list[str] = []

    def query(self, sql: str, timeout_s: float) -> list[dict[str, Any]]:
        self.sent.append(sql.strip())
        if sql.strip() not in self.answers:
            raise self.error("no recorded answer")
        return [dict(r) for r in self.answers[sql.strip()]]

    def server_version(self) -> tuple[int, ...]:
        return self.version

    def server_now(self) -> datetime | None:
        return NOW

    def close(self) -> None:
        return None
