"""The Jinja2 environment every report kind renders with: one loader, one set of filters.

Templates live in the top-level templates/ directory of the source tree; an installed wheel
ships the same files as the package `agent.templates`. Filters that need the site's time zone
read it from the `site_tz` template variable, so templates never pass it around by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

import agent
from agent.clock.timeutil import fmt_duration, fmt_local
from agent.text.i18n import LEVEL_ZH, translate
from probes.base import Status

_UTC = ZoneInfo("UTC")

# Colour is never the only signal: every badge also carries a word and a symbol, and the
# backgrounds differ in lightness so a grey-scale print still tells them apart.
STATUS_STYLE: Mapping[str, tuple[str, str, str]] = {
    # name: (symbol, inline style, css class)
    "OK": ("✔", "background:#e6f4ea;color:#14532d;border:1px solid #14532d;", "st-ok"),
    "WARN": ("▲", "background:#fde68a;color:#713f12;border:1px solid #713f12;", "st-warn"),
    "CRIT": ("✖", "background:#991b1b;color:#ffffff;border:1px solid #450a0a;", "st-crit"),
    "UNKNOWN": ("?", "background:#ffffff;color:#374151;border:1px dashed #374151;", "st-unknown"),
}


def templates_dir() -> Path | None:
    """The source tree's templates/ directory, or None when running from an installed wheel."""
    candidate = Path(agent.__file__).resolve().parent.parent / "templates"
    return candidate if (candidate / "base.html").is_file() else None


def _loader() -> jinja2.BaseLoader:
    src = templates_dir()
    if src is not None:
        return jinja2.FileSystemLoader(str(src))
    pkg = resources.files("agent.templates")
    if isinstance(pkg, Path):
        return jinja2.FileSystemLoader(str(pkg))

    # A zipped install has no real directory: read each template through importlib.resources.
    def load(name: str) -> str | None:
        res = pkg.joinpath(name)
        return res.read_text(encoding="utf-8") if res.is_file() else None

    return jinja2.FunctionLoader(load)


def _tz(ctx: jinja2.runtime.Context) -> ZoneInfo:
    tz = ctx.get("site_tz")
    return tz if isinstance(tz, ZoneInfo) else _UTC


@jinja2.pass_context
def f_localtime(ctx: jinja2.runtime.Context, ms: int | None, with_date: bool = True) -> str:
    return fmt_local(ms, _tz(ctx), with_date=with_date)


@jinja2.pass_context
def f_localhm(ctx: jinja2.runtime.Context, ms: int | None, ref_ms: int | None = None) -> str:
    """HH:MM:SS, with the date added when it is not the reference day (e.g. an end after midnight)."""
    if ms is None:
        return "—"
    tz = _tz(ctx)
    if ref_ms is not None and fmt_local(ms, tz)[:10] != fmt_local(ref_ms, tz)[:10]:
        return fmt_local(ms, tz)
    return fmt_local(ms, tz, with_date=False)


def _lang(ctx: jinja2.runtime.Context) -> str:
    lang = ctx.get("lang")
    return lang if isinstance(lang, str) else "zh"


def duration_en(seconds: float) -> str:
    s = int(round(seconds))
    sign = "-" if s < 0 else ""
    d, s = divmod(abs(s), 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m")) if v]
    if s or not parts:
        parts.append(f"{s}s")
    return sign + " ".join(parts)


@jinja2.pass_context
def f_duration(ctx: jinja2.runtime.Context, seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return duration_en(seconds) if _lang(ctx) == "en" else fmt_duration(seconds)


@jinja2.pass_context
def f_duration_ms(ctx: jinja2.runtime.Context, ms: float | None) -> str:
    return f_duration(ctx, None if ms is None else ms / 1000.0)


def hms(ms: float | None) -> str:
    """Hours may exceed 24 ('720:00:00' is a planned month): how the committee adds them up."""
    if ms is None:
        return "—"
    s = int(ms) // 1000
    sign = "-" if s < 0 else ""
    s = abs(s)
    return f"{sign}{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def f_secs(ms: float | None) -> str:
    """Milliseconds as seconds with thousands separators, exact: the formula's numbers."""
    if ms is None:
        return "—"
    v = int(ms)
    return f"{v / 1000:,.0f} s" if v % 1000 == 0 else f"{v / 1000:,.3f} s"


def f_pct(value: float | None, digits: int = 1) -> str:
    """A percentage; '—' when there is no figure (never 0 %, which would be a claim)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}%"


def f_num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:,.{digits}f}"


def f_bytes(value: float | None) -> str:
    """Binary units as Chinese engineers read df output: 12.3 GiB."""
    if value is None:
        return "—"
    v = float(value)
    sign = "-" if v < 0 else ""
    v = abs(v)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{sign}{v:.0f} {unit}" if unit == "B" else f"{sign}{v:.1f} {unit}"
        v /= 1024
    return f"{sign}{v:.1f} PiB"  # pragma: no cover - loop always returns


@jinja2.pass_context
def f_status_zh(ctx: jinja2.runtime.Context, name: str | None) -> str:
    if name is None:
        return "—"
    return translate(Status[name].label_zh, _lang(ctx))


@jinja2.pass_context
def f_level(ctx: jinja2.runtime.Context, level: int | None) -> str:
    if level is None:
        return "—"
    return translate(LEVEL_ZH.get(int(level), str(level)), _lang(ctx))


@jinja2.pass_context
def f_tr(ctx: jinja2.runtime.Context, text: str | None) -> str:
    """Translate a label that comes from the data (fault type, risk rating)."""
    return "—" if text is None else translate(text, _lang(ctx))


@jinja2.pass_context
def g_translate(ctx: jinja2.runtime.Context, text: str) -> str:
    return translate(text, _lang(ctx))


@jinja2.pass_context
def g_chart_src(ctx: jinja2.runtime.Context, chart: Mapping[str, Any]) -> str:
    """`cid:` for the mail part, a data: URI for the archived HTML and the PDF."""
    images = ctx.get("chart_images") or {}
    data = images.get(chart["cid"])
    if data is None:
        return f"cid:{chart['cid']}"
    return f"data:image/png;base64,{data}"


def f_status_symbol(name: str | None) -> str:
    return STATUS_STYLE[name][0] if name is not None and name in STATUS_STYLE else ""


def f_status_style(name: str | None) -> str:
    return STATUS_STYLE[name][1] if name is not None and name in STATUS_STYLE else ""


_CN_DIGITS = "零一二三四五六七八九"


def cn_number(n: int) -> str:
    """1..99 in Chinese numerals, as section headings are numbered (一、二、… 十一、)."""
    tens, ones = divmod(n, 10)
    if tens == 0:
        return _CN_DIGITS[ones]
    return ("" if tens == 1 else _CN_DIGITS[tens]) + "十" + (_CN_DIGITS[ones] if ones else "")


@jinja2.pass_context
def f_secno(ctx: jinja2.runtime.Context, n: int) -> str:
    return f"{n}. " if _lang(ctx) == "en" else f"{cn_number(n)}、"


FILTERS: Mapping[str, Callable[..., Any]] = {
    "secno": f_secno,
    "localtime": f_localtime,
    "localhm": f_localhm,
    "duration": f_duration,
    "duration_ms": f_duration_ms,
    "hms": hms,
    "secs": f_secs,
    "level": f_level,
    "tr": f_tr,
    "pct": f_pct,
    "num": f_num,
    "bytes": f_bytes,
    "status_zh": f_status_zh,
    "status_symbol": f_status_symbol,
    "status_style": f_status_style,
}


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_loader(),
        # Summaries come from remote systems: never trust them as HTML. Plain-text and
        # Markdown templates (mail text parts, chat robots) are not HTML and stay unescaped.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.globals["sentinel_version"] = agent.__version__
    env.globals["_"] = g_translate
    env.globals["chart_src"] = g_chart_src
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
