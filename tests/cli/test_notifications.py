"""`sentinel notifications` on a real store, through the command line in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from agent.store.db import Store
from tests.cli.test_faults import cli, seed_fault


def test_notification_queue_listing(tmp_path: Path) -> None:
    seed_fault(tmp_path)
    store = Store(tmp_path / "var/s.db")
    with store.tx() as db:
        db.execute(
            "INSERT INTO outbox(created_ts, dedup_key, channel, event, message, next_attempt_ts, status, "
            "attempts, last_error) VALUES(1, 'k1', 'mail', 'opened', '{\"subject\": \"s1\"}', 1, "
            "'failed', 3, '535 authentication failed')"
        )
        db.execute(
            "INSERT INTO outbox(created_ts, dedup_key, channel, event, message, next_attempt_ts, status) "
            "VALUES(2, 'k2', 'mail', 'recovered', '{\"subject\": \"s2\"}', 2, 'delivered')"
        )
    store.close()
    failed = cli(tmp_path, "notifications", "list", "--failed")
    assert "535 authentication failed" in failed.stdout and "recovered" not in failed.stdout
    assert "1 notification(s) queued again" in cli(tmp_path, "notifications", "retry").stdout
    rows = json.loads(cli(tmp_path, "notifications", "list", "--json").stdout)
    assert {r["dedup_key"]: r["status"] for r in rows} == {"k1": "pending", "k2": "delivered"}
