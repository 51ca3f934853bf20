"""Self-contained HTML pages: inline CSS, images as data URIs, no network access.

Used by the run report (fx_d2/engine/html_report.py) and the transfer report
(tools/demo_finetune.py). A page built here opens from a file anywhere, offline. Its small inline
script counts the images the browser decoded into ``<body data-images-ok="N"
data-images-bad="M">``, which headless-browser tests read (fx_d2/testing/browser.py).
"""

import base64
import html
import math
import os
from typing import Any, Iterable, Optional, Sequence

__all__ = ["escape", "table", "image_tag", "section", "page", "write_page"]

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#222;
max-width:1400px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.mean td{font-weight:bold;background:#fafafa}
.muted{color:#777;font-size:12px}
figure{display:inline-block;margin:6px 12px 6px 0;vertical-align:top}
figcaption{font-size:12px;color:#555}
img{max-width:100%;border:1px solid #eee}
nav a{margin-right:12px;font-size:13px}
details{margin:6px 0}pre{font-size:11px;background:#f7f7f7;padding:8px;overflow:auto}
"""
SCRIPT = """
window.addEventListener('load',function(){var ok=0,bad=0;
for(const i of document.images){if(i.complete&&i.naturalWidth>0){ok++}else{bad++}}
document.body.dataset.imagesOk=ok;document.body.dataset.imagesBad=bad;});
"""


def escape(value: Any) -> str:
    """HTML-escaped ``str(value)``."""
    return html.escape(str(value))


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}"
    return escape(value)


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    left_columns: int = 1,
    digits: int = 1,
    row_classes: Optional[Sequence[str]] = None,
) -> str:
    """An HTML table; floats get ``digits`` decimals, None / NaN print as ``–``; the first
    ``left_columns`` columns are left-aligned."""
    rows = list(rows)
    classes = list(row_classes or [""] * len(rows))

    def align(i: int) -> str:
        return ' class="l"' if i < left_columns else ""

    out = ["<table><tr>"]
    out += [f"<th{align(i)}>{escape(h)}</th>" for i, h in enumerate(header)]
    out.append("</tr>")
    for row, css in zip(rows, classes):
        out.append(f'<tr class="{css}">' if css else "<tr>")
        out += [f"<td{align(i)}>{_cell(v, digits)}</td>" for i, v in enumerate(row)]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def image_tag(
    source: Any, alt: str = "", caption: str = "", jpeg_quality: Optional[int] = None
) -> str:
    """An ``<img>`` with the image inlined as a data URI, in a ``<figure>`` when captioned.

    Args:
        source: a PNG/JPEG file path, or an RGB uint8 array (encoded here).
        jpeg_quality: re-encode as JPEG with this quality (smaller pages for photos of panels).
    """
    if isinstance(source, str):
        with open(source, "rb") as f:
            data = f.read()
        mime = "image/jpeg" if source.lower().endswith((".jpg", ".jpeg")) else "image/png"
        if jpeg_quality is not None:
            import cv2
            import numpy as np

            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1]
            data, mime = data.tobytes(), "image/jpeg"
    else:
        import cv2

        bgr = cv2.cvtColor(source, cv2.COLOR_RGB2BGR)
        if jpeg_quality is not None:
            data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1]
            mime = "image/jpeg"
        else:
            data, mime = cv2.imencode(".png", bgr)[1], "image/png"
        data = data.tobytes()
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    img = f'<img src="{uri}" alt="{escape(alt)}">'
    if not caption:
        return img
    return f"<figure>{img}<figcaption>{escape(caption)}</figcaption></figure>"


def section(anchor: str, title: str, body: str) -> str:
    """``<section id=anchor><h2>title</h2>body</section>`` (``body`` is HTML)."""
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>{body}</section>'


def page(title: str, sections: Sequence[str], subtitle: str = "") -> str:
    """A complete HTML document with a navigation bar linking the sections' anchors."""
    import re

    anchors = re.findall(r'<section id="([^"]+)"><h2>([^<]*)</h2>', "".join(sections))
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in anchors)
    sub = f'<p class="muted">{escape(subtitle)}</p>' if subtitle else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head>"
        f"<body><h1>{escape(title)}</h1>{sub}<nav>{nav}</nav>{''.join(sections)}</body></html>"
    )


def write_page(path: str, document: str) -> str:
    """Write ``document`` to ``path`` atomically (a reader never sees half a page)."""
    from .atomic import atomic_open

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, "w") as f:
        f.write(document)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # readable like any other output (the temp file was 0600)
    return path
