"""Drawing FoundationX predictions (boxes, multi-label masks, class probabilities) on an image
with Detectron2's Visualizer."""

from typing import Any, Dict, Union

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer

__all__ = ["draw_fx_predictions"]


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"draw_fx_predictions: expected an RGB image (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def draw_fx_predictions(
    image_rgb_uint8: np.ndarray,
    outputs: Dict[str, Any],
    metadata: Union[Metadata, str],
    score_thresh: float = 0.5,
    seg_thresh: float = 0.5,
    max_cls_lines: int = 6,
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
        seg_thresh: probability above which a mask pixel is drawn; each channel gets its own
            colour and channels may overlap.
        max_cls_lines: at most this many class probabilities are written (highest first).

    Returns:
        (H, W, 3) uint8 RGB drawing.
    """
    if isinstance(metadata, str):
        metadata = MetadataCatalog.get(metadata)
    image = _as_rgb_uint8(image_rgb_uint8)
    height, width = image.shape[:2]
    vis = Visualizer(image, metadata=metadata, scale=1.0)
    if "sem_seg" in outputs:
        probs = torch.as_tensor(outputs["sem_seg"]).detach().float().cpu()
        if tuple(probs.shape[-2:]) != (height, width):
            probs = F.interpolate(probs[None], size=(height, width), mode="bilinear")[0]
        names = list(metadata.get("seg_classes", []) or [])
        colours = colormap(rgb=True, maximum=1)
        for c in range(probs.shape[0]):
            mask = (probs[c] >= seg_thresh).numpy()
            if mask.any():
                text = names[c] if c < len(names) else str(c)
                vis.draw_binary_mask(mask, color=colours[c % len(colours)], text=text, alpha=0.35)
    if "instances" in outputs:
        instances = outputs["instances"].to("cpu")
        if instances.has("scores"):
            instances = instances[instances.scores >= score_thresh]
        vis.draw_instance_predictions(instances)
    if "cls_probs" in outputs:
        probs = torch.as_tensor(outputs["cls_probs"]).detach().float().cpu()
        names = list(metadata.get("cls_classes", []) or [])
        order = torch.argsort(probs, descending=True)[:max_cls_lines].tolist()
        font = max(int(np.sqrt(height * width) // 40), 8)
        for line, c in enumerate(order):
            text = f"{names[c] if c < len(names) else c}: {probs[c]:.2f}"
            vis.draw_text(
                text,
                (2, 2 + line * font * 1.4),
                font_size=font,
                color="w" if probs[c] < 0.5 else "y",
                horizontal_alignment="left",
            )
    return vis.output.get_image()
