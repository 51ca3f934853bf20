"""Drawing primitives of the chest phantoms: a normalised-coordinate canvas, the anatomy (lung,
heart, rib geometry) and conversions to stored pixel types."""

from typing import Callable, Optional, Sequence, Tuple

import cv2
import numpy as np

Box = Tuple[float, float, float, float]


def mask_box(mask: np.ndarray) -> Optional[Box]:
    """Tight XYXY_ABS box of a bool mask: pixel (r, c) covers [c, c+1) x [r, r+1); None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0,1] float image -> uint8 0..255 (rounded, clipped)."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint16(img: np.ndarray, bits: int = 12) -> np.ndarray:
    """[0,1] float image -> uint16 0..2**bits-1 (rounded, clipped)."""
    return np.round(np.clip(img, 0.0, 1.0) * float(2**bits - 1)).astype(np.uint16)


class Canvas:
    """Normalised coordinate grids (broadcast (1,W) and (H,1)) and the phantom's random draws."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng, self.h, self.w = rng, height, width
        self.u = ((np.arange(width, dtype=np.float32) + 0.5) / width)[None, :]
        self.v = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]

    def ellipse(self, cu: float, cv: float, au: float, av: float) -> np.ndarray:
        return ((self.u - cu) / au) ** 2 + ((self.v - cv) / av) ** 2 <= 1.0

    def disc(self, cu: float, cv: float, r: float) -> np.ndarray:
        """Disc of radius ``r`` in units of the image width (round in pixels), at least 1 pixel."""
        rp = max(r * self.w, 1.0)
        x = self.u * self.w - cu * self.w
        y = self.v * self.h - cv * self.h
        return x * x + y * y <= rp * rp

    def smooth_noise(self, sigma_px: float) -> np.ndarray:
        noise = self.rng.standard_normal((self.h, self.w)).astype(np.float32)
        out = cv2.GaussianBlur(noise, (0, 0), max(sigma_px, 0.5))
        return out / (out.std() + 1e-6)

    def band(
        self, u0: float, u1: float, center: Callable[[np.ndarray], np.ndarray], half: float
    ) -> np.ndarray:
        """Curved band: pixels with u between u0 and u1 and |v - center(t)| <= half, t in [0,1]."""
        t = (self.u - u0) / (u1 - u0)
        inside = (t >= 0) & (t <= 1)
        return inside & (np.abs(self.v - center(np.clip(t, 0, 1))) <= half)


class Anatomy:
    """Random anatomy parameters; lungs are ellipses cut by a diaphragm dome and the mediastinum."""

    def __init__(self, c: Canvas, findings: Sequence[str]):
        r = c.rng
        self.cx = 0.5 + r.normal(0, 0.01)
        self.top = r.uniform(0.13, 0.18)
        self.bottom = {"right": r.uniform(0.72, 0.76), "left": r.uniform(0.75, 0.79)}
        self.med = r.uniform(0.055, 0.07)  # mediastinum half width
        self.ax = r.uniform(0.16, 0.185)
        self.dome = r.uniform(0.05, 0.07)
        hu, hv = r.uniform(0.12, 0.14), r.uniform(0.1, 0.115)
        if "cardiomegaly" in findings:
            hu, hv = hu * r.uniform(1.35, 1.5), hv * r.uniform(1.15, 1.25)
        self.heart = (self.cx + 0.45 * hu, r.uniform(0.6, 0.64), hu, hv)
        if "emphysema" in findings:
            self.ax *= 1.08
            self.top -= 0.02
            self.bottom = {k: b + 0.04 for k, b in self.bottom.items()}
            self.dome *= 0.3
        self.collapsed_side = None
        if "atelectasis" in findings:
            self.collapsed_side = "right" if r.random() < 0.5 else "left"
            self.bottom[self.collapsed_side] -= r.uniform(0.05, 0.07)

    def lung_center_u(self, side: str) -> float:
        sign = -1.0 if side == "right" else 1.0
        return self.cx + sign * (self.med + 0.9 * self.ax)

    def lung_shape(self, c: Canvas, side: str, u=None, v=None) -> np.ndarray:
        u = c.u if u is None else u
        v = c.v if v is None else v
        cu, bot = self.lung_center_u(side), self.bottom[side]
        av = (bot - self.top) * 0.62
        ell = ((u - cu) / self.ax) ** 2 + ((v - (self.top + av)) / av) ** 2 <= 1.0
        dome = bot - self.dome * (1.0 - np.clip(((u - cu) / self.ax) ** 2, 0, 1))
        sign = -1.0 if side == "right" else 1.0
        return ell & (v <= dome) & (sign * (u - self.cx) >= self.med)


def sample_inside(c: Canvas, region: np.ndarray, margin_px: float) -> Tuple[float, float]:
    """A random (u, v) inside ``region`` at least ``margin_px`` from its border when possible."""
    dist = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)
    ok = dist >= margin_px
    if not ok.any():
        ok = dist >= dist.max() * 0.8
    ys, xs = np.nonzero(ok)
    i = int(c.rng.integers(len(ys)))
    return (xs[i] + 0.5) / c.w, (ys[i] + 0.5) / c.h


def rib_centerline(a: Anatomy, side: str, k: int, spacing: float):
    y0 = a.top + (k + 0.35) * spacing
    return lambda t: y0 + spacing * (-0.25 * t + 1.5 * t * t)
