"""The configuration in force: every agent start records the effective configuration
(canonical JSON, secrets only as their references, and its SHA-256) in `config_versions`, an
append-only, evidence-chained table. Availability for any instant reads the version that was in
force then, never today's file."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from agent.store.rows import fetch_all


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    id: int
    ts: int
    """When it came into force (the agent start that loaded it)."""
    run_id: int | None
    hash: str
    text: str

    def data(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.text)
        return loaded


def record(db: sqlite3.Connection, ts: int, run_id: int | None, text: str, digest: str) -> int:
    """Record the configuration an agent start put in force (inside the caller's transaction)."""
    cur = db.execute(
        "INSERT INTO config_versions(ts, run_id, hash, config) VALUES(?,?,?,?)", (ts, run_id, digest, text)
    )
    return int(cur.lastrowid or 0)


def all_versions(db: sqlite3.Connection) -> list[ConfigVersion]:
    """Every recorded start's configuration, oldest first."""
    try:
        rows = fetch_all(db, "SELECT id, ts, run_id, hash, config FROM config_versions ORDER BY ts, id")
    except sqlite3.OperationalError:  # a store older than schema 5, opened read-only
        return []
    return [ConfigVersion(r["id"], r["ts"], r["run_id"], r["hash"], r["config"]) for r in rows]
