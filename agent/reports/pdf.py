"""HTML -> PDF with WeasyPrint. The layout's @page rules give A4 pages, the site and period as
running header and page numbers; the CJK font is the one named in the CSS ("Noto Sans CJK
SC", Debian's fonts-noto-cjk), found through fontconfig.

WeasyPrint is imported here only: the daemon and `sentinel check` never load it.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("sentinel.reports")


class PdfUnavailable(RuntimeError):
    """WeasyPrint (or the Pango library under it) is not installed."""


def html_to_pdf(html: str, path: Path) -> Path:
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Python package is there, libpango is not
        raise PdfUnavailable(
            f"PDF needs WeasyPrint: pip install weasyprint; apt-get install fonts-noto-cjk ({exc})"
        ) from None
    # weasyprint logs every unsupported CSS property it skips (mail-client hacks are many).
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No base_url: a report has no external resources to fetch, images are data: URIs.
    weasyprint.HTML(string=html).write_pdf(str(path))
    return path
