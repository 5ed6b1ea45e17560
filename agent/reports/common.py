"""What every report kind's data starts with: site, period, when and from which evidence."""

from __future__ import annotations

from typing import Any

import agent
from agent.config.schema import Config
from agent.store.db import Store

DATA_VERSION = 2
"""Bumped when the shape of the data changes, so archived reports can be told apart.
2: availability from agent.availability_store (ms figures, both unknown policies), faults,
databases and backups in the daily report; every kind shares this header."""

TITLES = {
    "daily": "日常巡检报告",
    "weekly": "每周巡检报告",
    "monthly": "月度巡检报告",
    "quarterly": "季度巡检报告（风险评估）",
    "yearly": "年度运维报告",
    "inspection": "节假日/重大活动保障巡检报告",
    "acceptance": "可用性验收报告",
}
KINDS = tuple(TITLES)


def chain_head(store: Store) -> dict[str, Any] | None:
    """The evidence chain head the figures were computed from; None before the chain exists."""
    try:
        from agent.store import evidence
    except ImportError:
        return None
    head = evidence.head(store.db)
    if head is None:
        return None
    return {
        "digest_hex": head.digest_hex,
        "sealed_at_ms": head.sealed_at_ms,
        "rows": head.rows,
        # The fingerprint of the key that sealed the chain (never the key itself).
        "key_id": evidence.stored_key_id(store.db),
    }


def header(
    config: Config,
    store: Store,
    kind: str,
    label: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    *,
    describe: str = "",
    late: bool = False,
) -> dict[str, Any]:
    period_end = max(start_ms, min(end_ms, now_ms))
    return {
        "kind": kind,
        "title": TITLES[kind],
        "data_version": DATA_VERSION,
        "agent_version": agent.__version__,
        "site": {"name": config.site.name, "timezone": config.site.timezone},
        "period": {"label": label, "start_ms": start_ms, "end_ms": end_ms, "describe": describe},
        "period_end_ms": period_end,
        "partial": period_end < end_ms,
        "generated_ms": now_ms,
        "late": late,
        "policy": config.availability.unknown_policy,
        "before_monitoring_policy": config.availability.before_monitoring,
        "liveness_grace_ms": config.agent.grace_ms,
        "chain_head": chain_head(store),
    }
