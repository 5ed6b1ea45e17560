"""docs/make_screenshots.py: headless Chromium pictures of the monthly and acceptance reports
and a pdftoppm page of the acceptance PDF, non-blank and of the asked size."""

from __future__ import annotations

import importlib.util
import shutil
import struct
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import need

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "make_screenshots.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def png_info(png: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the pixel data): a blank page has very few."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    pos, idat = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        if png[pos + 4 : pos + 8] == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.mark.slow
def test_demo_pictures(tmp_path: Path) -> None:
    mod = _script()
    need(mod.chromium_binary() is not None, "chromium (apt-get install chromium fonts-noto-cjk)")
    need(shutil.which("pdftoppm") is not None, "pdftoppm (apt-get install poppler-utils)")
    monthly, acceptance, page = mod.demo(tmp_path)
    for png in (monthly, acceptance):
        w, h, distinct = png_info(png.read_bytes())
        assert (w, h) == (1200, 2400)
        assert distinct > 50, f"{png.name} looks blank"
    w, h, distinct = png_info(page.read_bytes())
    # A4 at 80 dpi: 210 x 297 mm -> 661 x 935 px (pdftoppm rounds up).
    assert abs(w - 661) <= 1 and abs(h - 935) <= 1
    assert distinct > 50, "the PDF page looks blank"


def test_committed_pictures_are_real() -> None:
    docs = SCRIPT.parent
    for name, size in (("monthly-report.png", (1200, 2400)), ("acceptance-report.png", (1200, 2400))):
        w, h, distinct = png_info((docs / name).read_bytes())
        assert (w, h) == size and distinct > 50, name
    w, h, distinct = png_info((docs / "acceptance-pdf-1.png").read_bytes())
    assert h > w > 600 and distinct > 50
