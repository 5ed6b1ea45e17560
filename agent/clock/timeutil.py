"""Time helpers: everything stored is UTC epoch milliseconds; people see the site's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


def to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: attach a time zone before storing")
    return int(round(dt.timestamp() * 1000))


def from_ms(ms: int, tz: ZoneInfo | None = None) -> datetime:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.astimezone(tz) if tz is not None else dt


def day_bounds(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) of a local calendar day, in UTC ms."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end = start + timedelta(days=1)
    # Re-localise the end so a DST change inside the day still gives local midnight.
    end = datetime(end.year, end.month, end.day, tzinfo=tz)
    return to_ms(start), to_ms(end)


def fmt_local(ms: int | None, tz: ZoneInfo, with_date: bool = True) -> str:
    if ms is None:
        return "—"
    dt = from_ms(ms, tz)
    return dt.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def fmt_duration(seconds: float) -> str:
    """Chinese duration: 1天2小时3分4秒 (zero parts omitted, at least seconds)."""
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = []
    if d:
        parts.append(f"{d}天")
    if h:
        parts.append(f"{h}小时")
    if m:
        parts.append(f"{m}分")
    if s or not parts:
        parts.append(f"{s}秒")
    return "".join(parts)
