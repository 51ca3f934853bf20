"""Task-aware dataset mapper: FX dataset dicts -> model inputs (docs/datasets.md, "The mapper").

Per image: read (or take from the decoded-image cache; with ``scaled_decode``, JPEG 2000 and JPEG
are decoded at the smallest size that still covers the output, :func:`read_image_min_side`), resize
to the configured size, optional
training augmentation (horizontal flip, small rotation, brightness/contrast) applied consistently to
the image, boxes, instance masks and semantic masks, then:

* ``image``: float32 (3, H, W), gray replicated, 0..255;
* ``cls_target`` / ``cls_weight`` (C,): the raw ``cls_labels`` after the uncertainty policy;
* ``instances`` (loc): ``gt_boxes``, ``gt_classes`` (+ ``gt_masks`` if ``INPUT.FX.INSTANCE_MASKS``);
* ``sem_seg`` (seg): float32 (Cs, H, W) in {0, 1}, one channel per metadata ``seg_classes``.

Unreadable images: strict mode raises; otherwise the mapper logs the file, counts it
(:func:`skipped_images`) and returns None; wrap the dataset in
:class:`fx_d2.data.common.RetryMapDataset` (Detectron2's ``MapDataset`` retry is broken on
Python >= 3.11), which then tries another index.
"""

import logging
import math
import multiprocessing as mp
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances

from .cache import ImageCache, check_decode_margin
from .catalog import TASKS, dataset_metadata
from .io import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from .masks import polygons_to_mask, sem_seg_from_annotations
from .rle import coco_rle_to_mask
from .transforms import build_geometry, output_size, sided_classes

logger = logging.getLogger(__name__)

__all__ = [
    "FXDatasetMapper",
    "skipped_images",
    "apply_uncertainty_policy",
    "read_image_min_side",
    "POLICIES",
]

POLICIES = ("ones", "zeros", "ignore", "lsr-ones", "lsr-zeros")

# Shared with forked DataLoader workers, so the trainer (main process) sees their skips too.
_SKIPPED = mp.Value("q", 0)


def skipped_images() -> int:
    """Number of images the mappers skipped as unreadable (all processes forked from this one)."""
    return int(_SKIPPED.value)


def _count_skip() -> int:
    with _SKIPPED.get_lock():
        _SKIPPED.value += 1
        return int(_SKIPPED.value)


def read_image_min_side(height: int, width: int, out_hw: Sequence[int]) -> int:
    """The ``min_side`` to decode a ``height`` x ``width`` image with for an ``out_hw`` output: the
    shorter side at which neither axis of the decoded copy is smaller than the output's."""
    scale = max(out_hw[0] / height, out_hw[1] / width)
    return max(1, math.ceil(min(height, width) * scale - 1e-9))


def apply_uncertainty_policy(
    labels: Sequence[float],
    policy: str,
    rng: np.random.Generator,
    lsr_range=(0.55, 0.85),
    unmentioned_weight: float = 1.0,
):
    """Raw labels (1 pos, 0 neg, -1 uncertain, NaN not mentioned) -> (target, weight) float32.

    Policies for -1: ``ones`` 1; ``zeros`` 0; ``ignore`` weight 0; ``lsr-ones`` U(lsr_range)
    (the reference, CheXpert); ``lsr-zeros`` U(0, 0.3). NaN -> target 0 with ``unmentioned_weight``.
    Other values (soft labels) pass through.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown uncertainty policy {policy!r}; use one of {POLICIES}")
    target = np.asarray(labels, dtype=np.float32).copy()
    weight = np.ones_like(target)
    nan = np.isnan(target)
    target[nan] = 0.0
    weight[nan] = unmentioned_weight
    unc = target == -1
    if unc.any():
        if policy == "ones":
            target[unc] = 1.0
        elif policy in ("zeros", "ignore"):
            target[unc] = 0.0
            weight[unc] = 0.0 if policy == "ignore" else 1.0
        elif policy == "lsr-ones":
            target[unc] = rng.uniform(lsr_range[0], lsr_range[1], int(unc.sum()))
        else:
            target[unc] = rng.uniform(0.0, 0.3, int(unc.sum()))
    return target, weight


def _parse_overrides(items: Sequence[str]) -> Dict[str, str]:
    out = {}
    for item in items:
        key, sep, policy = str(item).partition(":")
        if not sep or policy not in POLICIES:
            raise ValueError(
                f"bad INPUT.FX.UNCERTAIN_POLICY_OVERRIDES entry {item!r}; 'key:policy'"
            )
        out[key.strip()] = policy
    return out


class FXDatasetMapper:
    """Map one FX dataset dict to the model's input dict (see the module docstring)."""

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        task: Optional[str] = None,
        resize_mode: str = "square",
        size: int = 224,
        max_size: int = 0,
        flip_prob: float = 0.0,
        rotation: float = 0.0,
        brightness_contrast: float = 0.0,
        uncertain_policy: str = "lsr-ones",
        policy_overrides: Optional[Dict[str, str]] = None,
        lsr_range=(0.55, 0.85),
        unmentioned_weight: float = 1.0,
        instance_masks: bool = False,
        strict: bool = False,
        cache: Optional[ImageCache] = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        scaled_decode: bool = True,
        scaled_decode_margin: int = 0,
        metadata: Optional[Dict[str, Dict[str, Any]]] = None,
        seed: Optional[int] = None,
    ):
        """
        Args:
            is_train: enables augmentation.
            task: "cls" | "loc" | "seg" for every dict; None: the dict's ``task`` field, else all
                tasks of its dataset (evaluation).
            resize_mode, size, max_size: see :func:`fx_d2.data.transforms.output_size`.
            flip_prob, rotation, brightness_contrast: training augmentation (0 = off). Flip is
                skipped for datasets with left/right classes unless their metadata has
                ``flip_pairs`` (pairs of class names swapped on a flip).
            uncertain_policy, policy_overrides, lsr_range, unmentioned_weight: see
                :func:`apply_uncertainty_policy`; overrides map dataset key -> policy.
            instance_masks: add ``gt_masks`` (BitMasks) to loc instances.
            strict: raise on unreadable images instead of skipping them.
            cache: decoded-image cache, or None.
            max_pixels: forwarded to :func:`read_image` (decompression-bomb limit).
            scaled_decode: decode JPEG 2000 / JPEG at the smallest size that still covers the
                output (:func:`read_image_min_side`; read_image's ``min_side``), not in full.
            scaled_decode_margin: decode ``2**margin`` times larger than that and leave the rest to
                the area resize (sharper fidelity, slower; :func:`.cache.check_decode_margin`).
            metadata: dataset key -> metadata dict; default: the registered sources / catalog.
            seed: RNG seed (None: drawn from NumPy's global RNG, which Detectron2 seeds per worker).
        """
        if uncertain_policy not in POLICIES:
            raise ValueError(f"unknown uncertainty policy {uncertain_policy!r}; use {POLICIES}")
        if task is not None and task not in TASKS:
            raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
        self.is_train, self.task = is_train, task
        self.resize_mode, self.size, self.max_size = resize_mode, int(size), int(max_size)
        output_size(100, 100, resize_mode, self.size)  # validates the mode early
        self.flip_prob = float(flip_prob) if is_train else 0.0
        self.rotation = float(rotation) if is_train else 0.0
        self.brightness_contrast = float(brightness_contrast) if is_train else 0.0
        self.uncertain_policy, self.policy_overrides = uncertain_policy, dict(
            policy_overrides or {}
        )
        self.lsr_range, self.unmentioned_weight = tuple(lsr_range), float(unmentioned_weight)
        self.instance_masks, self.strict = instance_masks, strict
        self.cache, self.max_pixels, self.scaled_decode = cache, max_pixels, bool(scaled_decode)
        self.scaled_decode_margin = check_decode_margin(scaled_decode_margin)
        self._metadata = dict(metadata or {})
        self._seed, self._rng, self._rng_pid = seed, None, None
        self._no_flip_logged: set = set()

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, task: Optional[str] = None) -> Dict[str, Any]:
        fx = cfg.INPUT.FX
        cache = None
        if fx.CACHE_DIR:
            decode = (fx.MAX_PIXELS, fx.SCALED_DECODE, fx.SCALED_DECODE_MARGIN)
            cache = ImageCache(fx.CACHE_DIR, fx.CACHE_SIZE, fx.CACHE_FORMAT, *decode)
            if fx.CACHE_SIZE < fx.SIZE:
                logger.warning(
                    "INPUT.FX.CACHE_SIZE %d < INPUT.FX.SIZE %d: images will be "
                    "upsampled from the cache",
                    fx.CACHE_SIZE,
                    fx.SIZE,
                )
        return dict(
            is_train=is_train, task=task, resize_mode=fx.RESIZE_MODE, size=fx.SIZE,
            max_size=fx.MAX_SIZE, flip_prob=fx.FLIP, rotation=fx.ROTATION,
            brightness_contrast=fx.BRIGHTNESS_CONTRAST, uncertain_policy=fx.UNCERTAIN_POLICY,
            policy_overrides=_parse_overrides(fx.UNCERTAIN_POLICY_OVERRIDES),
            lsr_range=tuple(fx.LSR_RANGE), unmentioned_weight=fx.UNMENTIONED_WEIGHT,
            instance_masks=fx.INSTANCE_MASKS, strict=cfg.DATASETS.FX.STRICT, cache=cache,
            max_pixels=fx.MAX_PIXELS, scaled_decode=fx.SCALED_DECODE,
            scaled_decode_margin=fx.SCALED_DECODE_MARGIN, seed=cfg.SEED if cfg.SEED >= 0 else None,
        )  # fmt: skip

    # ------------------------------------------------------------------------------ helpers

    @property
    def rng(self) -> np.random.Generator:
        # Re-seeded in every DataLoader worker: forked copies must not share one stream.
        pid = os.getpid()
        if self._rng is None or self._rng_pid != pid:
            info = torch.utils.data.get_worker_info()
            if self._seed is not None:
                from detectron2.utils import comm

                seed = [self._seed, comm.get_rank(), info.id + 1 if info else 0]
            else:
                seed = [int(np.random.randint(2**31 - 1))]
            self._rng, self._rng_pid = np.random.default_rng(seed), pid
        return self._rng

    def reseed(self, seed: int) -> None:
        """Restart this process's random stream (augmentation, LSR draws) from ``seed``."""
        self._rng, self._rng_pid = np.random.default_rng(seed), os.getpid()

    def metadata(self, key: str) -> Dict[str, Any]:
        """Metadata of dataset ``key`` (the ``metadata`` argument, else the catalog's)."""
        if key not in self._metadata:
            self._metadata[key] = dataset_metadata(key)
        return self._metadata[key]

    def _read(self, d: Dict[str, Any]) -> np.ndarray:
        path = d["file_name"]
        if self.cache is not None:
            return self.cache.get(path)
        min_side = None
        if self.scaled_decode:  # the dict's grid is the file's size (JSRT raw: not J2K / JPEG)
            height, width = int(d["height"]), int(d["width"])
            out_hw = output_size(height, width, self.resize_mode, self.size, self.max_size)
            min_side = read_image_min_side(height, width, out_hw) << self.scaled_decode_margin
        return read_image(path, min_side, max_pixels=self.max_pixels)

    def _flip_allowed(self, key: str, meta: Dict[str, Any]) -> bool:
        if meta.get("flip_pairs") or not sided_classes(meta):
            return True
        if key not in self._no_flip_logged:
            self._no_flip_logged.add(key)
            logger.info(
                "horizontal flip disabled for %s: left/right classes %s and no "
                "'flip_pairs' metadata",
                key,
                sided_classes(meta)[:4],
            )
        return False

    # ------------------------------------------------------------------------------ mapping

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        d = dataset_dict
        path = d["file_name"]
        try:
            img = self._read(d)
            self._check_grid(path, img, int(d["height"]), int(d["width"]))
        except (ImageReadError, OSError) as e:
            if self.strict:
                raise
            n = _count_skip()
            logger.warning("skipping unreadable image (%d so far): %s", n, e)
            try:
                from detectron2.utils.events import get_event_storage

                get_event_storage().put_scalar("data/skipped_images", n, smoothing_hint=False)
            except (AssertionError, ImportError):
                pass  # no EventStorage outside the training loop / in workers
            return None
        return self.map_image(d, img)

    def _check_grid(self, path: str, img: np.ndarray, height: int, width: int) -> None:
        """Pixels may be a scaled copy of the annotation grid (cache, JSRT), not another shape."""
        h, w = img.shape[:2]
        if (h, w) != (height, width) and abs(h / w - height / width) > 0.02 * height / width:
            raise ImageReadError(
                path, f"image is {h}x{w} but the dataset dict says {height}x{width} (other aspect)"
            )

    def map_image(self, d: Dict[str, Any], img: np.ndarray) -> Dict[str, Any]:
        """Map a dict whose image is already decoded (float (h, w) in [0, 1])."""
        key = d.get("dataset_name", "")
        meta = self.metadata(key)
        tasks = list(meta.get("tasks", ())) or ["cls"]
        task = self.task or d.get("task")
        build = {task} if task else set(tasks)
        height, width = int(d["height"]), int(d["width"])
        out_hw = output_size(height, width, self.resize_mode, self.size, self.max_size)
        flip = self.flip_prob if self._flip_allowed(key, meta) else 0.0
        tfms, flipped = build_geometry(height, width, out_hw, self.rng, flip, self.rotation)
        img = tfms.apply_image(img.astype(np.float32, copy=False))
        if self.brightness_contrast > 0:
            bc = self.brightness_contrast
            alpha, beta = 1.0 + self.rng.uniform(-bc, bc), self.rng.uniform(-bc, bc)
            img = np.clip(img * np.float32(alpha) + np.float32(beta), 0.0, 1.0)
        image = torch.from_numpy(np.ascontiguousarray(img) * np.float32(255.0))
        out: Dict[str, Any] = {
            "file_name": d["file_name"], "image_id": d.get("image_id"), "height": height,
            "width": width, "dataset_name": key, "task": task or tasks[0],
            "image": image.unsqueeze(0).expand(3, -1, -1).contiguous(),
        }  # fmt: skip
        labels = d.get("cls_labels") or []
        policy = self.policy_overrides.get(key, self.uncertain_policy)
        target, weight = apply_uncertainty_policy(
            labels, policy, self.rng, self.lsr_range, self.unmentioned_weight
        )
        out.update(
            cls_labels=list(labels),
            cls_target=torch.from_numpy(target),
            cls_weight=torch.from_numpy(weight),
        )
        swap = self._swap_ids(meta) if flipped else {}
        annos = d.get("annotations") or []
        if "loc" in build:
            out["instances"] = self._instances(annos, meta, tfms, out_hw, height, width, swap)
        if "seg" in build:
            out["sem_seg"] = self._sem_seg(annos, meta, tfms, out_hw, height, width, swap)
        return out

    def _swap_ids(self, meta: Dict[str, Any]) -> Dict[str, str]:
        swap: Dict[str, str] = {}
        for a, b in meta.get("flip_pairs") or ():
            swap[a], swap[b] = b, a
        return swap

    def _instances(self, annos, meta, tfms, out_hw, height, width, swap) -> Instances:
        thing = list(meta.get("thing_classes", ()))
        boxes, classes, masks = [], [], []
        for ann in annos:
            if ann.get("iscrowd", 0):
                continue
            box = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
            box = tfms.apply_box(np.array([box], np.float64))[0]
            box = np.clip(box, 0, [out_hw[1], out_hw[0]] * 2)
            cid = int(ann["category_id"])
            if swap and thing:
                cid = self._swapped_class(cid, thing, swap)
            m = None
            if self.instance_masks or self.rotation > 0:
                m = self._instance_mask(ann, tfms, out_hw, height, width)
                if m is not None and self.rotation > 0 and m.any():  # rotated corners are loose
                    ys, xs = np.nonzero(m)
                    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
            if box[2] - box[0] <= 1e-3 or box[3] - box[1] <= 1e-3:
                continue
            boxes.append(box)
            classes.append(cid)
            masks.append(m if m is not None else np.zeros(out_hw, bool))
        inst = Instances(out_hw)
        inst.gt_boxes = Boxes(torch.as_tensor(np.array(boxes, np.float32).reshape(-1, 4)))
        inst.gt_classes = torch.as_tensor(classes, dtype=torch.int64)
        if self.instance_masks:
            stack = np.stack(masks) if masks else np.zeros((0,) + tuple(out_hw), bool)
            inst.gt_masks = BitMasks(torch.from_numpy(stack))
        return inst

    def _instance_mask(self, ann, tfms, out_hw, height, width) -> Optional[np.ndarray]:
        seg = ann.get("segmentation")
        if not seg:
            return None
        if isinstance(seg, dict):
            return tfms.apply_segmentation(coco_rle_to_mask(seg).astype(np.uint8)) > 0
        polys = [tfms.apply_coords(np.asarray(p, np.float64).reshape(-1, 2)).reshape(-1)
                 for p in seg if len(p) >= 6]  # fmt: skip
        return polygons_to_mask(polys, out_hw[0], out_hw[1])

    @staticmethod
    def _swapped_class(cid: int, thing: List[str], swap: Dict[str, str]) -> int:
        name = thing[cid] if 0 <= cid < len(thing) else None
        return thing.index(swap[name]) if name in swap and swap[name] in thing else cid

    def _sem_seg(self, annos, meta, tfms, out_hw, height, width, swap) -> torch.Tensor:
        seg_classes = list(meta.get("seg_classes", ()))
        masks = sem_seg_from_annotations(
            annos, seg_classes, list(meta.get("thing_classes", ())), height, width
        )
        chans = [tfms.apply_segmentation(m.astype(np.uint8)) for m in masks]
        if swap:
            order = [seg_classes.index(swap.get(n, n)) if swap.get(n, n) in seg_classes else i
                     for i, n in enumerate(seg_classes)]  # fmt: skip
            chans = [chans[j] for j in order]
        if not chans:
            return torch.zeros((0,) + tuple(out_hw), dtype=torch.float32)
        return torch.from_numpy(np.stack(chans).astype(np.float32))
