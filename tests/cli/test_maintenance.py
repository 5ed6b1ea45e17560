"""`sentinel maintenance` on a real store, through the command line in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from agent.store.db import Store
from tests.cli.test_faults import cli, seed_fault


def test_maintenance_windows_are_kept_with_their_history(tmp_path: Path) -> None:
    seed_fault(tmp_path)
    add = cli(tmp_path, "maintenance", "add", "HIS升级", "--system", "HIS", "--start", "2026-12-01 22:00",
              "--end", "2026-12-02 02:00", "--reason", "HIS 版本升级", "--approved-by", "信息科王主任",
              "--ticket", "CHG-002", "--by", "实施工程师")
    assert add.returncode == 0, add.stderr
    dup = cli(tmp_path, "maintenance", "add", "HIS升级", "--system", "HIS", "--start", "2026-12-03 22:00",
              "--end", "2026-12-04 02:00", "--reason", "x", "--approved-by", "y")
    assert dup.returncode == 1 and "exists already" in dup.stderr
    bad = cli(tmp_path, "maintenance", "add", "坏窗口", "--system", "EMR", "--start", "2026-12-03 22:00",
              "--end", "2026-12-03 21:00", "--reason", "x", "--approved-by", "y")
    assert bad.returncode == 2 and "end" in bad.stderr
    assert cli(tmp_path, "maintenance", "remove", "每周例行维护").returncode == 1  # from the config file
    assert cli(tmp_path, "maintenance", "remove", "HIS升级", "--by", "信息科王主任").returncode == 0
    listed = json.loads(cli(tmp_path, "maintenance", "list", "--all", "--json").stdout)
    assert [(w["name"], w["source"], w["removed_by"]) for w in listed] == [("HIS升级", "cli", "信息科王主任")]
    log = cli(tmp_path, "maintenance", "list", "--all").stdout
    assert "实施工程师  add  HIS升级" in log and "信息科王主任  remove  HIS升级" in log
    store = Store(tmp_path / "var/s.db")
    try:
        store.db.execute("UPDATE maintenance_log SET actor='someone else'")
        raise AssertionError("the maintenance log must be append-only")
    except Exception as exc:  # noqa: BLE001 - sqlite3.IntegrityError from the trigger
        assert "append-only" in str(exc)
