"""`sentinel verify` and `sentinel evidence export` end to end: the archive, unpacked anywhere,
verifies with the standard library alone (python3 -I, the agent not importable) and recomputes
the same availability as the agent; one edited row in it makes it fail."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.config.schema import load
from agent.store.db import Store
from tests.cli.test_availability import cfg  # noqa: F401  (fixture: the hand-computed day)


def ev(argv: Sequence[str]) -> int:
    """`sentinel -c CFG verify|evidence ...`, in this process."""
    return main(list(argv))


BARE = [sys.executable, "-I", "-S"]


@pytest.fixture
def sealed(cfg: Path) -> Path:  # noqa: F811  (the imported fixture, requested by name)
    """The availability CLI test's store (its numbers are worked out by hand there). The rows
    its CLI commands wrote (the exclusion and its approvals) were sealed by those commands
    themselves: no agent ran after them."""
    return cfg


def export(sealed: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ev.zip"
    rc = ev(["-c", str(sealed), "evidence", "export", "--period", "2026-11-10", "--out", str(out)])
    assert rc == 0
    root = tmp_path / "unpacked"
    with zipfile.ZipFile(out) as z:
        z.extractall(root)
    return root


def standalone(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I: isolated (no PYTHONPATH, no user site); -S: not even the venv's site-packages, where
    # the agent is installed: the interpreter a committee member has, standard library only.
    return subprocess.run(
        [*BARE, str(root / "verify.py"), str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=root.parent,
    )


def test_verify_cli_intact_then_broken(sealed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ev(["-c", str(sealed), "verify", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["rows_checked"] > 0 and len(out["head"]) == 64
    db = load(str(sealed)).storage.path
    store = Store(db)
    rid = store.db.execute("SELECT min(id) FROM results WHERE status=2").fetchone()[0]
    store.db.execute("UPDATE results SET status=0 WHERE id=?", (rid,))
    store.close()
    assert ev(["-c", str(sealed), "verify"]) == 1
    text = capsys.readouterr().out
    assert f"results row {rid}: edited" in text and "BROKEN" in text


def test_verify_progress_lines_without_a_terminal(sealed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ev(["-c", str(sealed), "verify", "--period", "2026-11"]) == 0
    err = capsys.readouterr().err
    assert "verify results: 100%" in err


def test_archive_verifies_with_the_standard_library_alone(sealed: Path, tmp_path: Path) -> None:
    root = export(sealed, tmp_path)
    probe = subprocess.run(
        [*BARE, "-c", "import agent"], capture_output=True, text=True, cwd=root, timeout=30, check=False
    )
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr  # no agent in reach
    r = standalone(root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VERIFIED" in r.stdout
    # The stdlib recomputation agrees with the agent's engine, to the millisecond.
    assert "HIS: 95.5556 %" in r.stdout and "same as agent" in r.stdout
    assert "LIS: — (nothing measured" in r.stdout  # no availability-critical checks: no figure
    systems = json.loads((root / "availability" / "systems.json").read_text("utf-8"))
    his = next(s for s in systems if s["name"] == "HIS")
    assert his["agent_figures"]["available_ms"] == 77_400_000
    manifest = json.loads((root / "manifest.json").read_text("utf-8"))
    assert {t["table"]: t["rows"] for t in manifest["tables"]}["exclusions_log"] == 1
    assert "中文说明" in (root / "README.md").read_text("utf-8")


def edit_line(path: Path, index: int, column: int, value: object) -> int:
    lines = path.read_text("utf-8").splitlines()
    row = json.loads(lines[index])
    row[column] = value
    lines[index] = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return int(row[0])


def test_archive_with_one_edited_row_fails_and_names_it(sealed: Path, tmp_path: Path) -> None:
    root = export(sealed, tmp_path)
    rid = edit_line(root / "data" / "results.jsonl", 3, 5, "OK（已改）")  # a summary
    r = standalone(root)
    assert r.returncode == 1
    assert f"results row {rid}: edited" in r.stdout and "NOT VERIFIED" in r.stdout


def test_archive_with_a_shortened_outage_fails(sealed: Path, tmp_path: Path) -> None:
    """Moving an interval's close event earlier breaks the chain before it can change a figure."""
    root = export(sealed, tmp_path)
    path = root / "data" / "interval_log.jsonl"
    rows = [json.loads(x) for x in path.read_text("utf-8").splitlines()]
    idx = next(i for i, r in enumerate(rows) if r[2] == "close")
    rid = edit_line(path, idx, 4, rows[idx][4] - 60_000)
    r = standalone(root)
    assert r.returncode == 1 and f"interval_log row {rid}: edited" in r.stdout


def test_archive_with_a_deleted_row_fails(sealed: Path, tmp_path: Path) -> None:
    root = export(sealed, tmp_path)
    path = root / "data" / "results.jsonl"
    lines = path.read_text("utf-8").splitlines()
    gone = json.loads(lines[5])[0]
    path.write_text("\n".join(lines[:5] + lines[6:]) + "\n", "utf-8")
    r = standalone(root, "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["problems"][0]["row_id"] == gone and out["problems"][0]["kind"] == "deleted"
