#!/usr/bin/env python3
"""Pictures of rendered reports: headless Chromium screenshots of HTML, pdftoppm pages of PDF.

    python docs/make_screenshots.py var/reports/daily/2026-11-20/daily-2026-11-20.html
    python docs/make_screenshots.py report.html --out docs/daily-report.png --height 4000
    python docs/make_screenshots.py --demo        # the README's pictures, from a demo store:
        docs/monthly-report.png, docs/acceptance-report.png, docs/acceptance-pdf-1.png

The flags keep Chromium off the network (no updates, no sync, no QUIC) so the picture shows
exactly what a mail client with remote content blocked would show. Chromium, run as root in
a container, needs --no-sandbox.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
DEFAULT_OUT = DOCS / "daily-report.png"


def chromium_binary(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(binary: str, html: Path, png: Path, profile: Path, width: int, height: int) -> list[str]:
    return [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={width},{height}",
        html.resolve().as_uri(),
    ]


def screenshot(
    html: Path, png: Path, width: int = 1200, height: int = 2000, binary: str | None = None
) -> Path:
    exe = chromium_binary(binary)
    if exe is None:
        raise SystemExit(
            "chromium not found: apt-get install --no-install-recommends chromium fonts-noto-cjk"
        )
    png.parent.mkdir(parents=True, exist_ok=True)
    # A throwaway profile: nothing from a previous run (cache, fonts, prompts) leaks in.
    with tempfile.TemporaryDirectory(prefix="sentinel-chromium-") as profile:
        cmd = chromium_command(exe, html, png, Path(profile), width, height)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if not png.is_file():
        raise SystemExit(f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return png


def pdf_page(pdf: Path, png: Path, page: int = 1, dpi: int = 80) -> Path:
    """One PDF page as PNG with poppler's pdftoppm (what a printed copy will look like)."""
    exe = shutil.which("pdftoppm")
    if exe is None:
        raise SystemExit("pdftoppm not found: apt-get install poppler-utils")
    png.parent.mkdir(parents=True, exist_ok=True)
    prefix = png.with_suffix("")
    cmd = [
        exe,
        "-png",
        "-r",
        str(dpi),
        "-f",
        str(page),
        "-l",
        str(page),
        "-singlefile",
        str(pdf),
        str(prefix),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0 or not png.is_file():
        raise SystemExit(f"pdftoppm failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def report_pictures(
    monthly_html: Path,
    acceptance_html: Path,
    acceptance_pdf: Path,
    out: Path,
    width: int = 1200,
    height: int = 2400,
) -> list[Path]:
    """The three pictures the README shows: monthly and acceptance in a browser, PDF page 1."""
    return [
        screenshot(monthly_html, out / "monthly-report.png", width, height),
        screenshot(acceptance_html, out / "acceptance-report.png", width, height),
        pdf_page(acceptance_pdf, out / "acceptance-pdf-1.png"),
    ]


def demo(out: Path) -> list[Path]:
    """Seed the test suite's demo year into a temporary store and picture its reports."""
    root = DOCS.parent
    sys.path.insert(0, str(root))
    from agent.clock.periods import parse_period
    from agent.reports.acceptance import build_acceptance
    from agent.reports.archive import publish
    from agent.reports.periodic import build_periodic
    from agent.store.db import Store
    from tests.helpers import report_seed

    with tempfile.TemporaryDirectory(prefix="sentinel-demo-") as tmp:
        seeded = report_seed.seed(Path(tmp))
        store = Store(seeded.db, readonly=True)
        tz = seeded.config.site.tz
        monthly = publish(
            seeded.config,
            build_periodic(seeded.config, store, "monthly", parse_period("2026-11", tz), report_seed.NOW),
        )
        acceptance = publish(
            seeded.config,
            build_acceptance(seeded.config, store, parse_period("2026", tz), report_seed.NOW),
            pdf=True,
        )
        store.close()
        assert acceptance.pdf_path is not None
        return report_pictures(monthly.html_path, acceptance.html_path, acceptance.pdf_path, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", type=Path, nargs="?", help="the report's HTML file")
    ap.add_argument("--demo", action="store_true", help="make the README's report pictures in docs/")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=2000)
    ap.add_argument("--chromium", help="path of the Chromium binary (default: found on PATH)")
    args = ap.parse_args(argv)
    if args.demo:
        for p in demo(DOCS):
            print(p)
        return 0
    if args.html is None or not args.html.is_file():
        print(f"no such file: {args.html}", file=sys.stderr)
        return 2
    print(screenshot(args.html, args.out, args.width, args.height, args.chromium))
    return 0


if __name__ == "__main__":
    sys.exit(main())
