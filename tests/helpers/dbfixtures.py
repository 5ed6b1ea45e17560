"""Helpers for the PostgreSQL / MariaDB probe tests: admin sessions, throwaway names, docs SQL."""

from __future__ import annotations

import re
import socket
import uuid
from typing import Any

from probes.base import CheckResult
from tests.conftest import REPO

GRANTS_DOC = REPO / "docs" / "db-grants.md"
DOC_USER = "sentinel_monitor"
DOC_PASSWORD = "change-me"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def doc_sql(section: str) -> list[str]:
    """The statements of the first ```sql block under `## <section>` in docs/db-grants.md."""
    text = GRANTS_DOC.read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"docs/db-grants.md has no '## {section}' section"
    block = re.search(r"```sql\n(.*?)```", m.group(1), re.S)
    assert block, f"'## {section}' has no ```sql block"
    body = "\n".join(line for line in block.group(1).splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def permission_findings(result: CheckResult) -> list[dict[str, Any]]:
    """Findings that say the monitoring account lacks a privilege or cannot see something."""
    return [
        f
        for f in result.details.get("findings", [])
        if "权限" in f["text"] or "GRANT" in f["text"] or "只能看到" in f["text"] or "无法检查" in f["text"]
    ]


def finding_items(result: CheckResult) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in result.details.get("findings", []):
        out.setdefault(f["item"], []).append(f)
    return out
