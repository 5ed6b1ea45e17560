"""Every generated report on disk: reports.output_dir/<kind>/<period>/ holds the HTML (charts
embedded as data: URIs), the PDF when made, the data as JSON, the plain-text body, the
chart PNGs and `index.json` — SHA-256 of each file and the evidence chain head the figures
were computed from. `list_archived` reads the index files back; DELIVERY's e-mail code takes
an `ArchivedReport` and attaches `images` by Content-ID to `mail_html()`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.schema import Config
from agent.reports import charts as charts_mod
from agent.reports.daily import MAX_CHANGE_ROWS, _atomic_write, utc_offset
from agent.store.db import Store
from agent.text.i18n import WEEKDAYS_ZH
from agent.text.render import render

log = logging.getLogger("sentinel.reports")

TEMPLATES = {
    "daily": "daily.html",
    "weekly": "periodic.html",
    "monthly": "periodic.html",
    "quarterly": "periodic.html",
    "yearly": "periodic.html",
    "inspection": "inspection.html",
    "acceptance": "acceptance.html",
}
INDEX = "index.json"
_IMG_DATA = re.compile(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"( alt="[^"]*")? data-cid="([^"]+)"')


@dataclass(frozen=True, slots=True)
class ArchivedReport:
    kind: str
    period: str
    title: str
    html_path: Path
    pdf_path: Path | None
    json_path: Path
    sha256: dict[str, str]
    """File name -> hex digest, for every file of the report."""
    chain_head: str | None
    images: list[tuple[str, Path]]
    """(Content-ID without angle brackets, PNG file) of each chart."""
    text_body: str
    generated_ms: int
    late: bool
    lang: str = "zh"
    site: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def mail_html(self) -> str:
        """The archived HTML with each chart referenced as cid: instead of embedded."""
        return _IMG_DATA.sub(
            lambda m: f'src="cid:{m[2]}"{m[1] or ""} data-cid="{m[2]}"',
            self.html_path.read_text(encoding="utf-8"),
        )

    def subject(self) -> str:
        return f"【{self.title}】{self.site} {self.period}"


def _safe(label: str) -> str:
    """A period label as a directory name on any file system ('..', ':' and spaces replaced).

    Names stay ASCII (they also name mail attachments); a label with other characters (a
    service period named 第一服务期) gets a short digest of itself, so two such labels never
    share a folder."""
    safe = re.sub(r"[^0-9A-Za-z._-]+", "_", label).replace("..", "_to_")
    if not label.isascii():
        import hashlib

        safe += "-" + hashlib.sha256(label.encode("utf-8")).hexdigest()[:8]
    return safe


def render_html(
    config: Config, data: Mapping[str, Any], lang: str, images: Mapping[str, bytes] | None
) -> str:
    """The report's HTML; `images` (cid -> PNG) embedded as data: URIs, or None for cid: links."""
    tz = config.site.tz
    ctx: dict[str, Any] = {
        "d": data,
        "lang": lang,
        "site_tz": tz,
        "tz_name": data["site"]["timezone"],
        "tz_offset": utc_offset(tz, data["period"]["start_ms"]),
        "chart_images": {cid: base64.b64encode(png).decode("ascii") for cid, png in (images or {}).items()},
        "max_changes": MAX_CHANGE_ROWS,
        "weekday": "",
    }
    if data["kind"] == "daily":
        from datetime import date

        ctx["weekday"] = WEEKDAYS_ZH[date.fromisoformat(data["day"]).weekday()]
    return render(TEMPLATES[data["kind"]], **ctx)


def render_text(config: Config, data: Mapping[str, Any], lang: str) -> str:
    return render("report.txt", d=data, lang=lang, site_tz=config.site.tz, tz_name=data["site"]["timezone"])


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def report_dir(config: Config, kind: str, period: str, lang: str) -> Path:
    return Path(config.reports.output_dir) / kind / (_safe(period) + ("" if lang == "zh" else f".{lang}"))


def publish(
    config: Config,
    data: dict[str, Any],
    *,
    lang: str = "zh",
    pdf: bool = False,
    out: Path | None = None,
    recorder: Store | None = None,
) -> ArchivedReport:
    """Render `data` (from any build_*), write every file of the report and its index."""
    kind, period = data["kind"], data["period"]["label"]
    charts = charts_mod.for_report(data, lang)
    data["charts"] = [
        {"cid": c.cid, "filename": c.filename, "title": c.title, "width": _png_width(c.png)} for c in charts
    ]
    directory = Path(out) if out is not None else report_dir(config, kind, period, lang)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{kind}-{_safe(period)}"
    html = render_html(config, data, lang, {c.cid: c.png for c in charts})
    text = render_text(config, data, lang)
    html_path, json_path, txt_path = (directory / f"{stem}{ext}" for ext in (".html", ".json", ".txt"))
    _atomic_write(json_path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    _atomic_write(html_path, html)
    _atomic_write(txt_path, text)
    images = []
    for c in charts:
        p = directory / c.filename
        p.write_bytes(c.png)
        images.append((c.cid, p))
    pdf_path = None
    if pdf:
        from agent.reports.pdf import html_to_pdf

        pdf_path = html_to_pdf(html, directory / f"{stem}.pdf")
    files = [html_path, json_path, txt_path, *(p for _, p in images)] + ([pdf_path] if pdf_path else [])
    sha = {p.name: _sha(p) for p in files}
    head = (data.get("chain_head") or {}).get("digest_hex")
    index = {
        "kind": kind,
        "period": period,
        "title": data["title"],
        "site": data["site"]["name"],
        "lang": lang,
        "generated_ms": data["generated_ms"],
        "late": bool(data.get("late")),
        "html": html_path.name,
        "pdf": pdf_path.name if pdf_path else None,
        "json": json_path.name,
        "text": txt_path.name,
        "images": [[cid, p.name] for cid, p in images],
        "sha256": sha,
        "chain_head": head,
    }
    _atomic_write(directory / INDEX, json.dumps(index, ensure_ascii=False, indent=1) + "\n")
    if recorder is not None:
        try:
            recorder.record_report(kind, period, data["generated_ms"], str(html_path))
        except sqlite3.Error as exc:  # the files are written; the index in the store is a convenience
            log.warning("report %s %s written but not recorded in the store: %s", kind, period, exc)
    return _from_index(directory, index, text)


def _png_width(png: bytes) -> int:
    # Shown at most at the page width; the PNG's own width (IHDR) keeps small charts sharp.
    return min(int.from_bytes(png[16:20], "big"), 940)


def _from_index(directory: Path, ix: Mapping[str, Any], text: str | None = None) -> ArchivedReport:
    if text is None:
        txt = directory / ix["text"]
        text = txt.read_text(encoding="utf-8") if txt.is_file() else ""
    return ArchivedReport(
        kind=ix["kind"],
        period=ix["period"],
        title=ix["title"],
        html_path=directory / ix["html"],
        pdf_path=directory / ix["pdf"] if ix.get("pdf") else None,
        json_path=directory / ix["json"],
        sha256=dict(ix["sha256"]),
        chain_head=ix.get("chain_head"),
        images=[(cid, directory / name) for cid, name in ix.get("images", [])],
        text_body=text,
        generated_ms=int(ix["generated_ms"]),
        late=bool(ix.get("late")),
        lang=ix.get("lang", "zh"),
        site=ix.get("site", ""),
    )


def load(directory: Path) -> ArchivedReport:
    ix = json.loads((directory / INDEX).read_text(encoding="utf-8"))
    return _from_index(directory, ix)


def list_archived(config: Config) -> list[ArchivedReport]:
    """Every archived report under reports.output_dir, oldest first."""
    root = Path(config.reports.output_dir)
    out = []
    for ix in sorted(root.glob(f"*/*/{INDEX}")):
        try:
            out.append(load(ix.parent))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("skipping %s: %s", ix, exc)
    return sorted(out, key=lambda r: (r.generated_ms, r.kind, r.period))


def verify(report: ArchivedReport) -> dict[str, bool]:
    """Whether each file still has the SHA-256 recorded when it was written."""
    directory = report.html_path.parent
    return {
        name: (directory / name).is_file() and _sha(directory / name) == digest
        for name, digest in report.sha256.items()
    }
