#!/usr/bin/env python3
"""Render a report's HTML file to a PNG with headless Chromium (stdlib only).

    python docs/make_screenshots.py var/reports/daily-2026-11-20.html
    python docs/make_screenshots.py report.html --out docs/daily-report.png --height 4000

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", type=Path, help="the report's HTML file")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=2000)
    ap.add_argument("--chromium", help="path of the Chromium binary (default: found on PATH)")
    args = ap.parse_args(argv)
    if not args.html.is_file():
        print(f"no such file: {args.html}", file=sys.stderr)
        return 2
    print(screenshot(args.html, args.out, args.width, args.height, args.chromium))
    return 0


if __name__ == "__main__":
    sys.exit(main())
