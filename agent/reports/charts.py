"""Charts as PNG images (matplotlib, Agg backend, a CJK font from fonts-noto-cjk).

Every mail client shows an inline PNG referenced by Content-ID; none runs scripts and many
drop SVG. Series differ by hatching, line style and marker as well as by grey level, so a
grey-scale print keeps them apart. The same PNG bytes go into the archived HTML and the PDF
as data: URIs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from agent.text.i18n import LEVEL_ZH, translate

log = logging.getLogger("sentinel.reports")

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "SimHei",
)
_GREYS = ("#111111", "#555555", "#999999", "#d4d4d4")
_HATCH = ("////", "xx", "..", "")
_LINES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ("-", "v"), ("--", "x"))
MAX_TREND_LINES = 6


@dataclass(frozen=True, slots=True)
class Chart:
    cid: str
    """Content-ID without angle brackets; templates reference it as cid:<cid>."""
    filename: str
    title: str
    """Chinese title (the i18n key)."""
    png: bytes


@lru_cache(maxsize=1)
def _font() -> str | None:
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in names:
            return name
    log.warning("no CJK font found for charts (install fonts-noto-cjk): Chinese labels will not show")
    return None


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # No "Software" text chunk: the same data gives the same bytes (and the same SHA-256).
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    return buf.getvalue()


def _rc() -> dict[Any, Any]:
    # Keys typed Any: matplotlib's stubs want a Literal of every rc key, which a dict built
    # here cannot be without listing its keys twice.
    font = _font()
    rc: dict[Any, Any] = {"axes.unicode_minus": False, "font.size": 9}
    if font:
        rc["font.family"] = [font, "DejaVu Sans"]
    return rc


def availability_chart(systems: Sequence[Mapping[str, Any]], lang: str) -> Chart | None:
    rows = [
        (s["subject"], s["availability_pct"], s["target_pct"])
        for s in systems
        if s["availability_pct"] is not None
    ]
    if not rows:
        return None
    import matplotlib

    with matplotlib.rc_context(_rc()):
        fig = _figure(7.2, 0.45 * len(rows) + 1.0)
        ax = fig.add_subplot(1, 1, 1)
        low = min(*(p for _, p, _ in rows), *(t for _, _, t in rows))
        left = max(0.0, min(low - (100 - low) * 0.3, low - 0.05))
        names = [n for n, _, _ in rows][::-1]
        values = [p for _, p, _ in rows][::-1]
        targets = [t for _, _, t in rows][::-1]
        below = [p < t for p, t in zip(values, targets, strict=True)]
        ax.barh(
            names,
            [v - left for v in values],
            left=left,
            height=0.6,
            color=["#ffffff" if b else "#6b7280" for b in below],
            edgecolor="#111111",
            hatch=None,
            linewidth=0.8,
        )
        for i, (b, v) in enumerate(zip(below, values, strict=True)):
            if b:
                ax.barh(
                    [names[i]],
                    [v - left],
                    left=left,
                    height=0.6,
                    color="#ffffff",
                    edgecolor="#111111",
                    hatch="////",
                    linewidth=0.8,
                )
            ax.text(v, i, f" {v:.3f}%", va="center", fontsize=8)
        for i, t in enumerate(targets):
            ax.plot([t, t], [i - 0.4, i + 0.4], color="#111111", linewidth=2)
        ax.set_xlim(left, 100 + (100 - left) * 0.12)
        ax.set_xlabel(translate("可用率", lang) + " (%)  | = " + translate("目标", lang))
        ax.grid(axis="x", color="#d4d4d4", linewidth=0.5)
        ax.set_axisbelow(True)
        return Chart("chart-availability@his-sentinel", "availability.png", "各业务系统可用率", _png(fig))


def faults_chart(over_time: Mapping[str, Any], lang: str) -> Chart | None:
    buckets = over_time["buckets"]
    if not buckets:
        return None
    import matplotlib

    with matplotlib.rc_context(_rc()):
        fig = _figure(7.2, 2.6)
        ax = fig.add_subplot(1, 1, 1)
        x = list(range(len(buckets)))
        bottom = [0] * len(buckets)
        for i, lv in enumerate((1, 2, 3, 4)):
            counts = over_time["levels"][str(lv)]
            ax.bar(
                x,
                counts,
                bottom=bottom,
                color=_GREYS[i] if i < 3 else "#ffffff",
                edgecolor="#111111",
                hatch=_HATCH[i],
                linewidth=0.6,
                label=translate(LEVEL_ZH[lv], lang),
            )
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        labels = [b[5:] if over_time["unit"] == "day" else b for b in buckets]
        step = max(1, len(labels) // 16)
        ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, max(*bottom, 1) * 1.15)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(ncol=4, fontsize=7, loc="upper left", frameon=False)
        ax.grid(axis="y", color="#d4d4d4", linewidth=0.5)
        ax.set_axisbelow(True)
        title = "每日新增故障（按级别）" if over_time["unit"] == "day" else "每月新增故障（按级别）"
        return Chart("chart-faults@his-sentinel", "faults.png", title, _png(fig))


def trend_chart(capacity: Sequence[Mapping[str, Any]], lang: str) -> Chart | None:
    rows = sorted((c for c in capacity if len(c["series"]) >= 2), key=lambda c: -(c["last_pct"] or 0))
    rows = rows[:MAX_TREND_LINES]
    if not rows:
        return None
    import matplotlib

    with matplotlib.rc_context(_rc()):
        fig = _figure(7.2, 2.8)
        ax = fig.add_subplot(1, 1, 1)
        days = sorted({d for c in rows for d, _ in c["series"]})
        index = {d: i for i, d in enumerate(days)}
        for i, c in enumerate(rows):
            style, marker = _LINES[i % len(_LINES)]
            xs = [index[d] for d, _ in c["series"]]
            ys = [v for _, v in c["series"]]
            ax.plot(
                xs,
                ys,
                linestyle=style,
                marker=marker,
                markersize=3,
                color=_GREYS[i % 3],
                linewidth=1.2,
                label=f"{c['check']} {c['name']}",
            )
        step = max(1, len(days) // 16)
        ax.set_xticks(
            list(range(len(days)))[::step], [d[5:] for d in days][::step], rotation=45, ha="right", fontsize=7
        )
        ax.set_ylim(0, 100)
        ax.axhline(85, color="#111111", linewidth=0.6, linestyle=(0, (1, 2)))
        ax.set_ylabel(translate("已用", lang) + " (%)")
        ax.legend(fontsize=7, loc="lower left", frameon=True, ncol=2)
        ax.grid(axis="y", color="#d4d4d4", linewidth=0.5)
        ax.set_axisbelow(True)
        return Chart("chart-trend@his-sentinel", "trend.png", "资源使用率趋势", _png(fig))


def for_report(data: Mapping[str, Any], lang: str) -> list[Chart]:
    """The charts a report's data asks for (monthly and larger have a "charts" section)."""
    if "charts" not in data.get("sections", ()):
        return []
    made = [
        availability_chart(data["availability"], lang),
        faults_chart(data["faults_over_time"], lang),
        trend_chart(data["capacity"], lang),
    ]
    return [c for c in made if c is not None]
