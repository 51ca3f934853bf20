"""Geometric transforms of the FX mapper (Detectron2 ``Transform`` objects).

The first transform always maps the annotation grid (dict ``height`` x ``width``) to the output
size. Its ``apply_image`` resizes whatever array it gets to the output size, so a smaller cached
copy, or a JSRT image stored at twice its annotation grid, goes through the same geometry as the
original pixels. Coordinates use Detectron2's convention (pixel edges: x in [0, W]).
"""

import re
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import transforms as T

__all__ = ["GridResizeTransform", "output_size", "build_geometry", "sided_classes"]

_SIDED = re.compile(r"(^|[^a-z])(left|right)([^a-z]|$)|^[lr]\d+$", re.IGNORECASE)


class GridResizeTransform(T.Transform):
    """Resize from the annotation grid ``(h, w)`` to ``(new_h, new_w)``.

    Images of any size are resized to ``(new_h, new_w)`` with cv2 (INTER_AREA when shrinking,
    bilinear when enlarging); segmentations with pixel-centre nearest neighbour.
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.shape[:2] == (self.new_h, self.new_w):
            return img
        shrink = img.shape[0] * img.shape[1] > self.new_h * self.new_w
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(img, (self.new_w, self.new_h), interpolation=interp)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        if segmentation.shape[:2] == (self.new_h, self.new_w):
            return segmentation
        return cv2.resize(
            segmentation, (self.new_w, self.new_h), interpolation=cv2.INTER_NEAREST_EXACT
        )

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords, dtype=np.float64).copy()
        coords[:, 0] *= self.new_w / self.w
        coords[:, 1] *= self.new_h / self.h
        return coords

    def inverse(self) -> T.Transform:
        return GridResizeTransform(self.new_h, self.new_w, self.h, self.w)


def output_size(
    height: int, width: int, mode: str, size: int, max_size: int = 0
) -> Tuple[int, int]:
    """Output (h, w): ``square`` -> (size, size); ``shortest_edge`` -> shorter side = size, longer
    side capped at ``max_size`` (0 = no cap), aspect kept."""
    if mode == "square":
        return size, size
    if mode != "shortest_edge":
        raise ValueError(f"unknown INPUT.FX.RESIZE_MODE {mode!r}; use 'square' or 'shortest_edge'")
    scale = size / min(height, width)
    if max_size and max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def build_geometry(
    height: int,
    width: int,
    out_hw: Tuple[int, int],
    rng: np.random.Generator,
    flip_prob: float = 0.0,
    rotation: float = 0.0,
) -> Tuple[T.TransformList, bool]:
    """Resize, then a random horizontal flip and a random rotation in [-rotation, rotation] deg.

    Returns:
        (transforms, flipped).
    """
    oh, ow = out_hw
    tfms: List[T.Transform] = [GridResizeTransform(height, width, oh, ow)]
    flipped = bool(flip_prob > 0 and rng.random() < flip_prob)
    if flipped:
        tfms.append(T.HFlipTransform(ow))
    if rotation > 0:
        angle = float(rng.uniform(-rotation, rotation))
        if angle != 0.0:
            tfms.append(T.RotationTransform(oh, ow, angle, expand=False))
    return T.TransformList(tfms), flipped


def sided_classes(metadata: Dict[str, Any]) -> List[str]:
    """Class names naming the patient's left or right (``left_lung``, ``Right Lung``, ``L3``)."""
    names: Sequence[str] = list(metadata.get("thing_classes", ())) + list(
        metadata.get("seg_classes", ())
    )
    return [n for n in names if _SIDED.search(str(n))]
