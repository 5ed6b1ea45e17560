"""Logging: one line per event, levels, size-based rotation, optional JSON lines.

Times are the site's (config `site.timezone`) with their offset, as everywhere people read them:
`2026-12-02 14:03:00.123+08:00` in text lines, `2026-12-02T14:03:00.123+08:00` in JSON lines. The
machine's own zone (often UTC on a server) would put the log an hour or eight off the CLI and the
reports."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import datetime, tzinfo
from pathlib import Path

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _local(record: logging.LogRecord, tz: tzinfo | None) -> datetime:
    # tz None: the machine's zone, still with its offset written out.
    return (
        datetime.fromtimestamp(record.created, tz)
        if tz is not None
        else datetime.fromtimestamp(record.created).astimezone()
    )


class SiteFormatter(logging.Formatter):
    """Text lines stamped in the site's zone with its offset (ISO 8601, space-separated)."""

    def __init__(self, tz: tzinfo | None = None, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _local(record, self.tz).isoformat(sep=" ", timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `ts` in the site's zone with its offset."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        super().__init__()
        self.tz = tz

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": _local(record, self.tz).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(
    level: str = "INFO", file: Path | None = None, json_lines: bool = False, tz: tzinfo | None = None
) -> None:
    """Log to `file` (rotated at 10 MiB, 10 kept) or stderr; `tz` is the site's zone."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            file, maxBytes=10 * 1024 * 1024, backupCount=10, encoding="utf-8"
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(tz) if json_lines else SiteFormatter(tz))
    root.addHandler(handler)
    # APScheduler logs every job start at INFO: thousands of lines an hour for no news.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
