"""The HTML pages of ``tools/predict.py --html``: ``index.html`` (a thumbnail and the status of
every input) and ``<stem>.html`` per scored image (the image with one switchable overlay layer per
dataset and task, class probabilities, boxes, warnings, and links to the JSON / DICOM files).

The pages need no network: images are embedded as PNG data URIs (at most :data:`DISPLAY_SIZE`
pixels a side), styles and the small script are inline. The script records on ``<body>`` how many
images the browser decoded (``data-images-ok`` / ``data-images-bad``) and how many script errors
happened (``data-js-errors``), so a headless browser test can check the page.
"""

import base64
import html
import io
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .records import write_text
from .results import DatasetPrediction

__all__ = ["DISPLAY_SIZE", "THUMB_SIZE", "thumbnail_uri", "write_image_page", "write_index_page"]

DISPLAY_SIZE = 1024
MIN_DISPLAY_SIZE = 512  # small images are shown enlarged
THUMB_SIZE = 192
_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 190),
]
_STYLE = """body{font-family:sans-serif;margin:1em;background:#fafafa;color:#222}
.stack{position:relative;display:inline-block}.stack img{display:block}
.stack img.layer{position:absolute;left:0;top:0}
table{border-collapse:collapse;margin:.3em 0}td,th{padding:2px 8px;border-bottom:1px solid #ddd}
.bar{display:inline-block;height:.7em;background:#0082c8}.warn{color:#a15c00}
.grid{display:flex;flex-wrap:wrap;gap:12px}.card{width:200px;font-size:.85em;word-break:break-all}
.main{display:flex;gap:24px;align-items:flex-start}.side{min-width:320px}
.toggles label{display:block}
.refused,.failed{color:#b00}.ok{color:#070}"""  # fmt: skip
# first in <head>: counts uncaught errors before anything else runs
_ERRORS = """<script>window.fxErrors=0;window.addEventListener('error',function(){
window.fxErrors++;document.body&&document.body.setAttribute('data-js-errors',window.fxErrors);});
</script>"""
_SCRIPT = """<script>
window.addEventListener('load',function(){var ok=0,bad=0;
for(var i=0;i<document.images.length;i++){var im=document.images[i];
if(im.complete&&im.naturalWidth>0){ok++;}else{bad++;}}
var b=document.body;b.setAttribute('data-images-ok',ok);b.setAttribute('data-images-bad',bad);
b.setAttribute('data-js-errors',window.fxErrors);});
document.querySelectorAll('input[data-layer]').forEach(function(box){
box.addEventListener('change',function(){document.getElementById(box.dataset.layer)
.style.display=box.checked?'block':'none';});});
</script>"""


def _png_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _display_size(shape: Tuple[int, int], limit: int, least: int = 0) -> Tuple[int, int]:
    height, width = shape
    scale = min(1.0, limit / max(height, width))
    scale = max(scale, min(least, limit) / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _gray(image: np.ndarray, size: Tuple[int, int]) -> Image.Image:
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(pixels).resize(size, Image.BILINEAR)


def thumbnail_uri(image: np.ndarray) -> str:
    """A PNG data URI of a [0, 1] gray image at most :data:`THUMB_SIZE` pixels a side."""
    return _png_uri(_gray(image, _display_size(image.shape, THUMB_SIZE)))


def _seg_layer(pred: DatasetPrediction, size) -> Image.Image:
    layer = np.zeros((size[1], size[0], 4), np.uint8)
    for c, mask in enumerate(pred.binary_masks().values()):
        small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size)) > 127
        layer[small] = (*_PALETTE[c % len(_PALETTE)], 110)
    return Image.fromarray(layer, "RGBA")


def _box_layer(pred: DatasetPrediction, size, scale: float, score_thresh: float) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for box in pred.boxes:
        if box.score < score_thresh:
            continue
        colour = (*_PALETTE[box.category_id % len(_PALETTE)], 255)
        x0, y0, x1, y1 = (v * scale for v in box.bbox)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=2)
        draw.text((x0 + 2, y0 + 1), f"{box.category} {box.score:.2f}", fill=colour)
    return layer


def _tables(key: str, pred: DatasetPrediction, score_thresh: float) -> str:
    parts = [f"<h3>{html.escape(key)}</h3>"]
    if pred.cls:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{p:.3f}</td><td><span class='bar' "
            f"style='width:{100 * p:.0f}px'></span></td></tr>"
            for name, p in sorted(pred.cls.items(), key=lambda item: -item[1])
        )
        parts.append(f"<table><tr><th>class</th><th>probability</th><th></th></tr>{rows}</table>")
    if "loc" in pred.tasks:
        shown = [b for b in pred.boxes if b.score >= score_thresh]
        rows = "".join(
            f"<tr><td>{html.escape(b.category)}</td><td>{b.score:.3f}</td>"
            f"<td>{', '.join(f'{v:.1f}' for v in b.bbox)}</td></tr>"
            for b in shown
        )
        parts.append(
            f"<p>{len(shown)} box(es) with score &ge; {score_thresh} (of {len(pred.boxes)})</p>"
            + (f"<table><tr><th>box</th><th>score</th><th>x0, y0, x1, y1</th></tr>{rows}</table>"
               if rows else "")
        )  # fmt: skip
    for task, why in pred.skipped.items():
        parts.append(f"<p class='warn'>{task}: not run ({html.escape(why)})</p>")
    return "".join(parts)


def _page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"{_ERRORS}<style>{_STYLE}</style></head><body>{body}{_SCRIPT}</body></html>"
    )


def _links(links: Mapping[str, Optional[str]], folder: str) -> str:
    items = [
        f"<a href='{html.escape(os.path.relpath(path, folder))}'>{html.escape(label)}</a>"
        for label, path in links.items()
        if path
    ]
    return " | ".join(items)


def write_image_page(
    path: str,
    image: np.ndarray,
    predictions: Mapping[str, DatasetPrediction],
    record: Mapping[str, Any],
    links: Mapping[str, Optional[str]],
    score_thresh: float = 0.5,
) -> str:
    """Write the page of one scored image.

    Args:
        image: the (H, W) [0, 1] image the predictions were made on.
        record: its JSON record (:func:`fx_d2.inference.records.image_record`): file, warnings,
            weights, untrained heads.
        links: label -> file (JSON, DICOM SEG / SR, overlays), linked relative to the page.
        score_thresh: lowest box score drawn.
    """
    size = _display_size(image.shape, DISPLAY_SIZE, MIN_DISPLAY_SIZE)
    scale = size[0] / image.shape[1]
    layers, toggles, tables = [], [], []
    first = None  # the first dataset with a layer: shown at once, the others one tick away
    for key, pred in predictions.items():
        for task in ("seg", "loc"):
            if task not in pred.tasks:
                continue
            first = first or key
            shown = key == first
            drawn = (
                _seg_layer(pred, size)
                if task == "seg"
                else _box_layer(pred, size, scale, score_thresh)
            )
            layer_id = f"layer-{len(layers)}"
            hidden = "" if shown else " style='display:none'"
            layers.append(f"<img class='layer' id='{layer_id}'{hidden} alt='{html.escape(key)} "
                          f"{task}' src='{_png_uri(drawn)}'>")  # fmt: skip
            toggles.append(
                f"<label><input type='checkbox'{' checked' if shown else ''} "
                f"data-layer='{layer_id}'> {html.escape(key)} "
                f"{'masks' if task == 'seg' else 'boxes'}</label>"
            )
        tables.append(_tables(key, pred, score_thresh))
    source = record["input"]
    warnings = "".join(f"<p class='warn'>{html.escape(w)}</p>" for w in source["warnings"])
    untrained = "".join(
        f"<p class='warn'>{html.escape(k)} {t}: untrained head, not run ({html.escape(why)})</p>"
        for k, tasks in record.get("untrained", {}).items()
        for t, why in tasks.items()
    )
    weights = record.get("weights", {})
    name = weights.get("name") or "none (random initialisation)"
    body = (
        "<p><a href='index.html'>&larr; all images</a></p>"
        f"<h1>{html.escape(os.path.basename(source['file']))}</h1>"
        f"<p>{source['width']} &times; {source['height']} px, {html.escape(source['format'])}; "
        f"weights {html.escape(str(name))}</p>{warnings}{untrained}"
        f"<p>{_links(links, os.path.dirname(path))}</p>"
        f"<div class='main'><div class='stack'><img alt='image' "
        f"src='{_png_uri(_gray(image, size))}'>{''.join(layers)}</div>"
        f"<div class='side'><div class='toggles'>{''.join(toggles) or 'no mask or box head ran'}"
        f"</div>{''.join(tables)}</div></div>"
    )
    write_text(path, _page(os.path.basename(source["file"]), body))
    return path


def write_index_page(
    path: str, images: Sequence[Dict[str, Any]], thumbnails: Mapping[str, str], title: str
) -> str:
    """Write ``index.html``: one card per input of ``index.json``'s ``images`` (thumbnail and
    link for scored ones, the reason for refused / failed ones)."""
    cards: List[str] = []
    for item in images:
        name, status = html.escape(item["name"]), item["status"]
        thumb = thumbnails.get(item["name"])
        picture = f"<img alt='{name}' src='{thumb}'>" if thumb else ""
        if status == "ok" and item.get("html"):
            href = html.escape(os.path.relpath(item["html"], os.path.dirname(path)))
            picture = f"<a href='{href}'>{picture or name}</a>"
        reason = f"<br>{html.escape(item.get('reason') or '')}" if item.get("reason") else ""
        cards.append(f"<div class='card'>{picture}<br>{name} <span class='{status}'>{status}"
                     f"</span>{reason}</div>")  # fmt: skip
    body = f"<h1>{html.escape(title)}</h1><div class='grid'>{''.join(cards)}</div>"
    write_text(path, _page(title, body))
    return path
