"""Drawing FoundationX ground truth and predictions (boxes, multi-label masks, class labels or
probabilities) with Detectron2's Visualizer, and side-by-side panels with a colour legend.

Every drawing colours a class by its index in the dataset's class list (:func:`class_color`), so a
ground-truth panel and the prediction panels next to it use the same colours and one legend
(:func:`legend_entries`) explains all of them. ``scale`` enlarges the drawing (a 96 px demo image
drawn at scale 1 is covered by its own labels); text sizes follow the output size.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.structures import BoxMode
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer

__all__ = [
    "draw_fx_predictions",
    "draw_fx_ground_truth",
    "class_color",
    "legend_entries",
    "compose_panels",
    "positive_labels_text",
]

Color = Tuple[float, float, float]  # RGB in [0, 1]
_COLORS = colormap(rgb=True, maximum=1)


def class_color(index: int) -> Color:
    """Colour of class ``index`` (Detectron2's colormap, cycled)."""
    return tuple(float(v) for v in _COLORS[int(index) % len(_COLORS)])


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def _metadata(metadata: Union[Metadata, str]) -> Metadata:
    return MetadataCatalog.get(metadata) if isinstance(metadata, str) else metadata


def _font(vis: Visualizer) -> float:
    """Text size in image pixels giving ~11 px letters in the scaled output (at least 8 px)."""
    scale = vis.output.scale
    out_side = np.sqrt(vis.output.height * vis.output.width) * scale
    return max(8.0, out_side / 45.0) / scale


def _draw_masks(vis: Visualizer, masks: np.ndarray, class_ids: Sequence[int]) -> None:
    for mask, c in zip(masks, class_ids):
        if mask.any():
            vis.draw_binary_mask(mask, color=class_color(c), alpha=0.35)


def _draw_boxes(vis, boxes, class_ids, names, scores=None) -> None:
    font = _font(vis) * 0.8
    for i, (box, c) in enumerate(zip(boxes, class_ids)):
        color = class_color(c)
        x0, y0, x1, y1 = (float(v) for v in box)
        vis.draw_box((x0, y0, x1, y1), edge_color=color, alpha=0.9)
        text = names[c] if c < len(names) else str(c)
        if scores is not None:
            text = f"{text} {100 * float(scores[i]):.0f}%"
        vis.draw_text(
            text,
            (x0, max(0.0, y0 - font * 1.3)),
            font_size=font,
            color=color,
            horizontal_alignment="left",
        )


def _draw_lines(vis: Visualizer, lines: Sequence[Tuple[str, str]]) -> None:
    font = _font(vis)
    for row, (text, color) in enumerate(lines):
        vis.draw_text(
            text,
            (2, 2 + row * font * 1.5),
            font_size=font,
            color=color,
            horizontal_alignment="left",
        )


def draw_fx_predictions(
    image_rgb_uint8: np.ndarray,
    outputs: Dict[str, Any],
    metadata: Union[Metadata, str],
    score_thresh: float = 0.5,
    seg_thresh: float = 0.5,
    max_cls_lines: int = 6,
    scale: float = 1.0,
) -> np.ndarray:
    """Draw one image's FoundationX outputs.

    Args:
        image_rgb_uint8: (H, W, 3) RGB uint8 (a (H, W) gray image is replicated), in the
            original size the model's ``height``/``width`` referred to.
        outputs: one element of ``FoundationX`` inference output: any of ``instances``,
            ``sem_seg`` (Cs, H, W probabilities), ``cls_probs`` (C,).
        metadata: the dataset's Metadata (or its registered name): ``thing_classes``,
            ``seg_classes``, ``cls_classes`` label the drawing.
        score_thresh: minimum box score drawn.
        seg_thresh: probability above which a mask pixel is drawn; each channel has its class
            colour (:func:`class_color` of its ``thing_classes`` index) and channels may overlap.
        max_cls_lines: at most this many class probabilities are written (highest first).
        scale: output size relative to the image.

    Returns:
        (round(H * scale), round(W * scale), 3) uint8 RGB drawing.
    """
    metadata = _metadata(metadata)
    image = _as_rgb_uint8(image_rgb_uint8)
    height, width = image.shape[:2]
    vis = Visualizer(image, metadata=metadata, scale=scale)
    things = list(metadata.get("thing_classes", []) or [])
    if "sem_seg" in outputs:
        probs = torch.as_tensor(outputs["sem_seg"]).detach().float().cpu()
        if tuple(probs.shape[-2:]) != (height, width):
            probs = F.interpolate(probs[None], size=(height, width), mode="bilinear")[0]
        names = list(metadata.get("seg_classes", []) or [])
        ids = [things.index(n) if n in things else c for c, n in enumerate(names)]
        ids += list(range(len(ids), probs.shape[0]))
        _draw_masks(vis, (probs >= seg_thresh).numpy(), ids)
    if "instances" in outputs:
        instances = outputs["instances"].to("cpu")
        if instances.has("scores"):
            instances = instances[instances.scores >= score_thresh]
        if len(instances) and instances.has("pred_boxes"):
            scores = instances.scores.tolist() if instances.has("scores") else None
            _draw_boxes(
                vis,
                instances.pred_boxes.tensor.tolist(),
                instances.pred_classes.tolist(),
                things,
                scores,
            )
    if "cls_probs" in outputs:
        probs = torch.as_tensor(outputs["cls_probs"]).detach().float().cpu()
        names = list(metadata.get("cls_classes", []) or [])
        order = torch.argsort(probs, descending=True)[:max_cls_lines].tolist()
        lines = [
            (f"{names[c] if c < len(names) else c}: {probs[c]:.2f}", "w" if probs[c] < 0.5 else "y")
            for c in order
        ]
        _draw_lines(vis, lines)
    return vis.output.get_image()


def positive_labels_text(labels: Optional[Sequence[float]], classes: Sequence[str]) -> List[str]:
    """``name=1`` / ``name=-1`` (uncertain) for the non-zero, mentioned labels."""
    parts = []
    for name, value in zip(classes, labels or []):
        if value is None or (isinstance(value, float) and np.isnan(value)) or value == 0:
            continue
        parts.append(f"{name}={value:g}")
    return parts


def draw_fx_ground_truth(
    image_rgb_uint8: np.ndarray,
    record: Mapping[str, Any],
    metadata: Union[Metadata, str],
    tasks: Sequence[str] = ("cls", "loc", "seg"),
    scale: float = 1.0,
    max_cls_lines: int = 6,
) -> np.ndarray:
    """Draw the ground truth of one dataset dict (docs/datasets.md) on its image.

    Args:
        image_rgb_uint8: (H, W, 3) image in the dict's ``height`` x ``width``.
        record: the dataset dict: ``annotations`` (boxes; masks from ``segmentation``),
            ``cls_labels``.
        tasks: what to draw: ``cls`` labels (positive and uncertain ones), ``loc`` boxes,
            ``seg`` masks.
        scale: output size relative to the image.

    Returns:
        (round(H * scale), round(W * scale), 3) uint8 RGB drawing.
    """
    from fx_d2.data.masks import segmentation_to_mask

    metadata = _metadata(metadata)
    image = _as_rgb_uint8(image_rgb_uint8)
    height, width = image.shape[:2]
    vis = Visualizer(image, metadata=metadata, scale=scale)
    things = list(metadata.get("thing_classes", []) or [])
    annotations = list(record.get("annotations") or [])
    if "seg" in tasks:
        with_masks = [a for a in annotations if a.get("segmentation")]
        masks = [segmentation_to_mask(a["segmentation"], height, width) for a in with_masks]
        _draw_masks(vis, masks, [int(a["category_id"]) for a in with_masks])
    if "loc" in tasks and annotations:
        boxes = [
            BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations
        ]
        _draw_boxes(vis, boxes, [int(a["category_id"]) for a in annotations], things)
    classes = list(metadata.get("cls_classes", []) or [])
    if "cls" in tasks and classes:
        parts = positive_labels_text(record.get("cls_labels"), classes) or ["(no positive label)"]
        _draw_lines(vis, [(p, "y") for p in parts[:max_cls_lines]])
    return vis.output.get_image()


def legend_entries(
    metadata: Union[Metadata, str],
    tasks: Sequence[str] = ("loc", "seg"),
    only: Optional[Sequence[int]] = None,
) -> List[Tuple[str, Color]]:
    """``(class name, colour)`` of the box classes (``loc``) and mask classes (``seg``);
    ``only``: just these ``thing_classes`` indices (e.g. the classes an image has)."""
    metadata = _metadata(metadata)
    things = list(metadata.get("thing_classes", []) or [])
    names: List[str] = []
    if "loc" in tasks:
        names += things
    if "seg" in tasks:
        names += [n for n in metadata.get("seg_classes", []) or [] if n not in names]
    entries = [(n, things.index(n) if n in things else i) for i, n in enumerate(names)]
    if only is not None:
        entries = [(n, c) for n, c in entries if c in set(only)]
    return [(n, class_color(c)) for n, c in entries]


def compose_panels(
    panels: Sequence[Tuple[str, np.ndarray]],
    legend: Sequence[Tuple[str, Color]] = (),
    caption: str = "",
) -> np.ndarray:
    """Panels side by side, each under its title, with a colour legend (and caption) below.

    Args:
        panels: ``(title, RGB uint8 image)``; images of different heights are padded.
        legend: ``(name, RGB colour in [0, 1])`` swatches.
        caption: one line under the legend (e.g. the image id).

    Returns:
        the RGB uint8 composite.
    """
    if not panels:
        raise ValueError("compose_panels needs at least one panel")
    height = max(p.shape[0] for _, p in panels)
    width = sum(p.shape[1] for _, p in panels) + 4 * (len(panels) - 1)
    font, thick = 0.45, 1
    line = 18
    columns = []
    for i, (title, panel) in enumerate(panels):
        head = np.full((line + 4, panel.shape[1], 3), 255, np.uint8)
        cv2.putText(
            head,
            title,
            (4, line - 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            font + 0.1,
            (0, 0, 0),
            thick,
            cv2.LINE_AA,
        )
        body = np.full((height, panel.shape[1], 3), 255, np.uint8)
        body[: panel.shape[0]] = panel
        columns.append(np.concatenate([head, body], axis=0))
        if i < len(panels) - 1:
            columns.append(np.full((columns[-1].shape[0], 4, 3), 255, np.uint8))
    rows = [np.concatenate(columns, axis=1)]
    # legend: swatch + name, wrapped to the composite's width
    items, x, y = [], 4, 0
    for name, color in legend:
        text_w = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, font, thick)[0][0]
        if x + 16 + text_w > width and x > 4:
            x, y = 4, y + line
        items.append((name, color, x, y))
        x += 16 + text_w + 12
    extra = (y + line + 4 if legend else 0) + (line if caption else 0)
    if extra:
        strip = np.full((extra, width, 3), 255, np.uint8)
        for name, color, x0, y0 in items:
            rgb = tuple(int(255 * v) for v in color)
            cv2.rectangle(strip, (x0, y0 + 5), (x0 + 11, y0 + 16), rgb, -1)
            cv2.putText(
                strip,
                name,
                (x0 + 16, y0 + 15),
                cv2.FONT_HERSHEY_SIMPLEX,
                font,
                (0, 0, 0),
                thick,
                cv2.LINE_AA,
            )
        if caption:
            cv2.putText(
                strip,
                caption,
                (4, extra - 5),
                cv2.FONT_HERSHEY_SIMPLEX,
                font,
                (90, 90, 90),
                thick,
                cv2.LINE_AA,
            )
        rows.append(strip)
    return np.concatenate(rows, axis=0)
