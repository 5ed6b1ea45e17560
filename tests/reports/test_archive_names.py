"""Report folders and file stems named after periods: ASCII, and distinct per label."""

from __future__ import annotations

from agent.reports.archive import _safe


def test_ascii_labels_keep_their_readable_names() -> None:
    assert _safe("2026-11") == "2026-11"
    assert _safe("2026-11-01..2026-11-15") == "2026-11-01_to_2026-11-15"


def test_chinese_period_names_never_share_a_folder() -> None:
    a, b = _safe("第一服务期"), _safe("第二服务期")
    assert a != b
    assert a.isascii() and b.isascii()
    assert _safe("第一服务期") == a  # stable: the same period finds its folder again
