"""Synthetic chest radiograph phantoms with exact organ, rib and lesion masks.

The demo replicas of the 15 datasets are built from these phantoms. Geometry is defined in
normalised coordinates ``u = (x + 0.5) / W``, ``v = (y + 0.5) / H`` so a phantom looks the same at
any size. Orientation is a PA view: the patient's right lung is on the image LEFT. Every finding is
drawn only on the pixels of its own mask, so masks and boxes agree with the image.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from .phantom_canvas import (  # noqa: F401  to_uint8 / to_uint16 are part of this API
    Anatomy,
    Box,
    Canvas,
    mask_box,
    rib_centerline,
    sample_inside,
    to_uint8,
    to_uint16,
)

FINDINGS: Tuple[str, ...] = (
    "cardiomegaly", "effusion", "consolidation", "nodule", "mass", "pneumothorax",
    "atelectasis", "edema", "tb", "support_device", "calcification", "fibrosis", "emphysema",
    "pleural_thickening", "infiltration", "diffuse_nodule", "hernia", "fracture", "tb_obsolete",
)  # fmt: skip

ORGANS: Tuple[str, ...] = ("left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle")
RIBS: Tuple[str, ...] = tuple(f"R{i}" for i in range(1, 11)) + tuple(f"L{i}" for i in range(1, 11))


@dataclass
class Lesion:
    """One finding: ``mask`` bool (H,W); ``box`` XYXY_ABS tight around the mask (pixel edges)."""

    kind: str
    mask: np.ndarray
    box: Box


@dataclass
class Phantom:
    """A synthetic PA chest radiograph.

    Attributes:
        image: float32 (H,W) in [0,1], brighter = denser.
        organs: bool (H,W) masks ``left_lung, right_lung, heart, left_clavicle, right_clavicle``
            (patient's left = image right).
        ribs: bool (H,W) masks ``R1..R10, L1..L10`` (posterior ribs, top to bottom).
        lesions: the rendered findings, in the order requested.
    """

    image: np.ndarray
    organs: Dict[str, np.ndarray] = field(default_factory=dict)
    ribs: Dict[str, np.ndarray] = field(default_factory=dict)
    lesions: List[Lesion] = field(default_factory=list)


def make_phantom(
    rng: np.random.Generator, height: int = 256, width: int = 256, findings: Sequence[str] = ()
) -> Phantom:
    """Draw one random PA chest phantom with the given findings.

    Args:
        rng: source of randomness; the phantom is a deterministic function of its state.
        height, width: image size in pixels (>= 32).
        findings: kinds from :data:`FINDINGS`; a kind may repeat (e.g. two nodules).

    Returns:
        :class:`Phantom` whose ``lesions`` hold one or more entries per finding (edema, emphysema
        and diffuse_nodule give one per lung).
    """
    unknown = [f for f in findings if f not in FINDINGS]
    if unknown:
        raise ValueError(f"unknown phantom finding(s) {unknown}; known: {FINDINGS}")
    if height < 32 or width < 32:
        raise ValueError(f"phantom size {height}x{width} is too small (min 32x32)")
    c = Canvas(rng, height, width)
    a = Anatomy(c, findings)

    body = c.ellipse(a.cx, 0.58, 0.47, 0.62) & (c.v >= 0.02)
    img = np.full((height, width), 0.03, np.float32)
    img[body] = rng.uniform(0.4, 0.46)
    heart = c.ellipse(*a.heart)
    lungs = {s: a.lung_shape(c, s) & ~heart for s in ("right", "left")}
    lung_any = lungs["right"] | lungs["left"]
    emph = "emphysema" in findings
    vessel_gain = 0.35 if emph else 1.0
    hilum_v = 0.5 * (a.top + a.bottom["left"])
    hil_dist = np.sqrt((c.u - a.cx) ** 2 * 4 + (c.v - hilum_v) ** 2)
    vessels = (
        np.clip(c.smooth_noise(1.0), 0, None)
        * 0.07
        * vessel_gain
        * np.clip(1.1 - hil_dist * 1.6, 0.2, 1.0)
    )
    lung_base = rng.uniform(0.04, 0.06) if emph else rng.uniform(0.1, 0.14)
    img[lung_any] = (lung_base + vessels)[lung_any]
    mediastinum = body & (np.abs(c.u - a.cx) < a.med) & (c.v > 0.04) & (c.v < a.heart[1])
    img[mediastinum] = 0.6
    img[heart] = rng.uniform(0.6, 0.66)
    spine = body & (np.abs(c.u - a.cx) < 0.035)
    img += spine * (0.12 + 0.03 * np.cos(c.v * 2 * np.pi * 14)).astype(np.float32)

    lesions: List[Lesion] = []

    def add(kind: str, mask: np.ndarray, paint: Callable[[np.ndarray], None]) -> None:
        if mask.any():
            paint(mask)
            lesions.append(Lesion(kind, mask, mask_box(mask)))

    def pick_side() -> str:
        return "right" if rng.random() < 0.5 else "left"

    def set_to(value_fn):
        def paint(m):
            img[m] = np.broadcast_to(value_fn(), img.shape)[m]

        return paint

    fracture = None
    for kind in findings:
        side = pick_side()
        lung = lungs[side]
        cu = a.lung_center_u(side)
        lat = -1.0 if side == "right" else 1.0  # lateral direction in u
        lv = a.bottom[side] - a.top
        if kind == "cardiomegaly":
            lesions.append(Lesion(kind, heart.copy(), mask_box(heart)))
        elif kind in ("nodule", "mass", "calcification"):
            r = {"nodule": rng.uniform(0.03, 0.045), "mass": rng.uniform(0.06, 0.085),
                 "calcification": rng.uniform(0.01, 0.014)}[kind]  # fmt: skip
            pu, pv = sample_inside(c, lung, r * width + 1)
            m = c.disc(pu, pv, r)
            if kind == "mass":
                for _ in range(2):
                    ang = rng.uniform(0, 2 * np.pi)
                    m |= c.disc(pu + 0.5 * r * np.cos(ang), pv + 0.5 * r * np.sin(ang), 0.7 * r)
            val = {"nodule": 0.55, "mass": 0.62, "calcification": 1.0}[kind]
            add(kind, m & lung, set_to(lambda: val + 0.03 * c.smooth_noise(2)))
        elif kind == "consolidation":
            pu, pv = sample_inside(c, lung, 0.05 * width)
            m = np.zeros_like(lung)
            for _ in range(int(rng.integers(3, 6))):
                m |= c.ellipse(
                    pu + rng.normal(0, 0.03),
                    pv + rng.normal(0, 0.03),
                    rng.uniform(0.03, 0.06),
                    rng.uniform(0.03, 0.06),
                )
            add(kind, m & lung, set_to(lambda: 0.52 + 0.05 * c.smooth_noise(1.5)))
        elif kind == "pneumothorax":
            s = rng.uniform(0.72, 0.85)
            au, av = cu - lat * a.ax * 0.9, a.bottom[side]  # anchor: medial base
            collapsed = a.lung_shape(c, side, au + (c.u - au) / s, av + (c.v - av) / s) & lung
            m = lung & ~collapsed
            pleura = collapsed & (cv2.dilate(m.astype(np.uint8), np.ones((3, 3))) > 0)
            img[pleura] = 0.45
            add(kind, m, set_to(lambda: 0.02))
        elif kind == "effusion":
            level = a.bottom[side] - rng.uniform(0.2, 0.3) * lv
            t = np.clip(lat * (c.u - cu) / a.ax, 0, 1)
            fluid = c.v >= level - rng.uniform(0.04, 0.07) * t * t
            add(kind, lung & fluid, set_to(lambda: 0.55 + 0.02 * c.smooth_noise(3)))
        elif kind == "atelectasis":
            side = a.collapsed_side or side
            lung, cu, lat = lungs[side], a.lung_center_u(side), -1.0 if side == "right" else 1.0
            apex = (a.cx + lat * (a.med + 0.01), a.top + 0.5 * lv)
            b0 = (cu + lat * a.ax, a.top + 0.55 * lv)
            b1 = (cu + lat * a.ax * 0.6, a.bottom[side])
            pts = np.array([[p[0] * width, p[1] * height] for p in (apex, b0, b1)], np.int32)
            poly = np.zeros(lung.shape, np.uint8)
            cv2.fillPoly(poly, [pts], 1)
            add(kind, lung & (poly > 0), set_to(lambda: 0.5 + 0.03 * c.smooth_noise(2)))
        elif kind in ("edema", "emphysema", "diffuse_nodule"):
            for sd in ("right", "left"):
                lg = lungs[sd]
                if kind == "edema":
                    hu = a.cx + (-1 if sd == "right" else 1) * (a.med + 0.02)
                    m = lg & c.ellipse(hu, hilum_v, a.ax * 1.1, 0.2)
                    add(kind, m, set_to(lambda: img + 0.16 + 0.03 * c.smooth_noise(4)))
                elif kind == "emphysema":
                    lesions.append(Lesion(kind, lg.copy(), mask_box(lg)))
                else:
                    m = np.zeros_like(lg)
                    for _ in range(int(rng.integers(10, 18))):
                        pu, pv = sample_inside(c, lg, 2)
                        m |= c.disc(pu, pv, rng.uniform(0.011, 0.016))
                    add(kind, m & lg, set_to(lambda: img + 0.3))
        elif kind in ("tb", "tb_obsolete"):
            # active TB: soft upper-zone nodular opacities; obsolete (healed) TB: a tighter
            # cluster of small calcified granulomas, much denser
            obsolete = kind == "tb_obsolete"
            pu, pv = sample_inside(c, lung & (c.v < a.top + 0.35 * lv), 0.03 * width)
            m = np.zeros_like(lung)
            spread, radius = (
                ((0.018, 0.015), (0.011, 0.015)) if obsolete else ((0.03, 0.025), (0.016, 0.026))
            )
            for _ in range(int(rng.integers(5, 10))):
                m |= c.disc(
                    pu + rng.normal(0, spread[0]),
                    pv + rng.normal(0, spread[1]),
                    rng.uniform(*radius),
                )
            add(kind, m & lung, set_to(lambda: np.full_like(img, 0.9) if obsolete else img + 0.32))
        elif kind == "infiltration":
            pu, pv = sample_inside(c, lung, 0.05 * width)
            patch = c.smooth_noise(0.02 * width) > 0.0
            m = lung & patch & c.ellipse(pu, pv, 0.12, 0.15)
            add(kind, m, set_to(lambda: img + 0.15))
        elif kind == "fibrosis":
            zone = lung & (c.v > a.top + 0.6 * lv)
            lines = np.zeros(lung.shape, np.uint8)
            ys, xs = np.nonzero(zone)
            for _ in range(40 if len(ys) else 0):
                i = int(rng.integers(len(ys)))
                ang, ln = rng.uniform(0, np.pi), rng.uniform(0.02, 0.05) * width
                p0 = (int(xs[i]), int(ys[i]))
                p1 = (int(xs[i] + ln * np.cos(ang)), int(ys[i] + ln * np.sin(ang)))
                cv2.line(lines, p0, p1, 1, 1)
            add(kind, zone, set_to(lambda: img + 0.05 + 0.3 * lines))
        elif kind == "pleural_thickening":
            dist = cv2.distanceTransform(lung.astype(np.uint8), cv2.DIST_L2, 3)
            mid = a.top + rng.uniform(0.35, 0.6) * lv
            lateral = lat * (c.u - cu) > 0
            m = lung & lateral & (dist <= max(0.03 * width, 2)) & (np.abs(c.v - mid) < 0.12)
            add(kind, m, set_to(lambda: 0.62))
        elif kind == "hernia":
            r = rng.uniform(0.05, 0.07)
            hu, hv = a.heart[0] - 0.3 * a.heart[2], a.heart[1] + a.heart[3] * 0.9
            m = body & c.disc(hu, hv, r)
            air = m & (c.v < hv - 0.3 * r)
            add(kind, m, set_to(lambda: np.where(air, 0.15, 0.78)))
        elif kind == "support_device":
            thick = max(1, int(round(0.008 * width)))
            mid_v = rng.uniform(0.35, 0.45)
            pts = [(a.cx + rng.normal(0, 0.005), 0.0), (a.cx + rng.normal(0, 0.01), mid_v)]
            if rng.random() < 0.5:  # nasogastric course into the stomach
                pts += [(a.cx + 0.03, 0.65), (a.cx + rng.uniform(0.08, 0.14), 0.86)]
            line = np.zeros((height, width), np.uint8)
            xy = np.array([[p[0] * width, p[1] * height] for p in pts], np.int32)
            cv2.polylines(line, [xy], False, 1, thick)
            add(kind, line > 0, set_to(lambda: 0.97))
        elif kind == "fracture":
            fracture = (side, int(rng.integers(3, 8)), rng.uniform(0.5, 0.8))

    # Bones drawn over everything (additively, as in a projection image).
    spacing = (max(a.bottom.values()) - a.top) / 10.5
    half = 0.22 * spacing
    ribs: Dict[str, np.ndarray] = {}
    for side in ("right", "left"):
        lat = -1.0 if side == "right" else 1.0
        u0, u1 = a.cx + lat * 0.035, a.lung_center_u(side) + lat * 1.12 * a.ax
        for k in range(10):
            center = rib_centerline(a, side, k, spacing)
            if fracture and fracture[:2] == (side, k):
                tf, step = fracture[2], 0.8 * half
                center0 = center

                def center(t, c0=center0, tf=tf, step=step):
                    return c0(t) + step * (t > tf)

                gap = max(0.018, 1.5 / width)
                m = c.band(u0, u1, center, half)
                uf = u0 + tf * (u1 - u0)
                m &= ~(np.abs(c.u - uf) <= gap / 2)
                lm = c.disc(uf, center0(tf) + step / 2, 0.035)
                ribs[f"{side[0].upper()}{k + 1}"] = m & body
                lesions.append(Lesion("fracture", lm, mask_box(lm)))
            else:
                ribs[f"{side[0].upper()}{k + 1}"] = c.band(u0, u1, center, half) & body
    for m in ribs.values():
        img += 0.12 * m
    clav: Dict[str, np.ndarray] = {}
    for side in ("right", "left"):
        lat = -1.0 if side == "right" else 1.0
        v_med, v_lat = a.top + 0.04, a.top - 0.03
        clav[side] = body & c.band(
            a.cx + lat * 0.045 if lat > 0 else a.cx - 0.33,
            a.cx + 0.33 if lat > 0 else a.cx - 0.045,
            (
                lambda t, vm=v_med, vl=v_lat, lt=lat: vm
                + (vl - vm) * (t if lt > 0 else 1 - t)
                + 0.012 * np.sin(np.pi * t)
            ),
            0.018,
        )
        img += 0.14 * clav[side]
    # Tubes and calcifications sit on top of bones.
    for les in lesions:
        if les.kind == "support_device":
            img[les.mask] = 0.97
        elif les.kind == "calcification":
            img[les.mask] = 1.0
    img += rng.normal(0, 0.008, img.shape).astype(np.float32)
    np.clip(img, 0.0, 1.0, out=img)
    organs = {
        "left_lung": lungs["left"],
        "right_lung": lungs["right"],
        "heart": heart,
        "left_clavicle": clav["left"],
        "right_clavicle": clav["right"],
    }
    order = [f"R{i}" for i in range(1, 11)] + [f"L{i}" for i in range(1, 11)]
    return Phantom(img, organs, {k: ribs[k] for k in order}, lesions)
