"""Preflight of a training run: every config value and every dataset is checked before iteration
0, so a bad run fails in seconds with the key (or dataset) named instead of hours in, when the
stage that needs it starts.

* :func:`validate_config` (first thing the trainer does): sizes, batch size vs world size, phase
  lengths, policies, stage names, dataset keys, probabilities, periods, and the other fx_d2 keys
  whose wrong value would only fail inside a worker or after "Starting training".
* :func:`check_datasets` (after the trainer is built): loads the training data of every stage and
  every test set, and fails when one is missing, unreadable or empty.

Both collect every problem and raise one :class:`PreflightError` listing them all.
"""

import logging
import math
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from detectron2.utils import comm

from fx_d2.config import per_task
from fx_d2.data.catalog import SPLITS, TASKS, dataset_spec, load_dataset_dicts
from fx_d2.data.mapper import POLICIES

__all__ = ["PreflightError", "validate_config", "check_datasets"]

logger = logging.getLogger(__name__)


class PreflightError(ValueError):
    """The config or the data of a run cannot work (the message lists every problem)."""


def _get(cfg, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _at_least(low: float) -> Callable[[Any], bool]:
    return lambda v: _number(v) and v >= low


def _within(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: _number(v) and low <= v <= high


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


# key -> (test, what a valid value is)
RULES: List[Tuple[str, Callable[[Any], bool], str]] = [
    ("INPUT.FX.SIZE", lambda v: _int(v) and v > 0, "a positive integer (pixels)"),
    ("INPUT.FX.MAX_SIZE", lambda v: _int(v) and v >= 0, "an integer >= 0 (0 = no cap)"),
    ("INPUT.FX.RESIZE_MODE", _one_of("square", "shortest_edge"), "square or shortest_edge"),
    ("INPUT.FX.FLIP", _within(0, 1), "a probability in [0, 1]"),
    ("INPUT.FX.ROTATION", _within(0, 180), "degrees in [0, 180]"),
    ("INPUT.FX.BRIGHTNESS_CONTRAST", _within(0, 1), "in [0, 1]"),
    ("INPUT.FX.UNCERTAIN_POLICY", _one_of(*POLICIES), f"one of {POLICIES}"),
    ("INPUT.FX.UNMENTIONED_WEIGHT", _at_least(0), "a weight >= 0"),
    ("INPUT.FX.MAX_PIXELS", lambda v: _int(v) and v > 0, "a positive integer"),
    ("INPUT.FX.CACHE_SIZE", lambda v: _int(v) and v > 0, "a positive integer (pixels)"),
    ("INPUT.FX.CACHE_FORMAT", _one_of("png16", "npy"), "png16 or npy"),
    ("SOLVER.IMS_PER_BATCH", lambda v: _int(v) and v > 0, "a positive integer"),
    ("SOLVER.BASE_LR", _at_least(0), "a learning rate >= 0"),
    ("SOLVER.MAX_ITER", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("SOLVER.CHECKPOINT_PERIOD", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("SOLVER.LOCK_RELEASE.UNIT", _one_of("epochs", "iters"), "epochs or iters"),
    ("SOLVER.LOCK_RELEASE.CYCLES", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("SOLVER.LOCK_RELEASE.FINAL_LOCK_LR_FACTOR", _at_least(0), "a factor >= 0"),
    ("SOLVER.LOCK_RELEASE.EVAL_EVERY_CYCLES", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("SOLVER.FX.OPTIMIZER", _one_of("AdamW", "SGD"), "AdamW or SGD"),
    ("SOLVER.FX.BACKBONE_LR_FACTOR", _at_least(0), "a factor >= 0"),
    ("SOLVER.FX.CLS_HEAD_LR_FACTOR", _at_least(0), "a factor >= 0"),
    ("SOLVER.FX.EMA_MOMENTUM", _within(0, 1), "a momentum in [0, 1]"),
    ("SOLVER.FX.EMA_PERIOD", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("SOLVER.FX.AMP_DTYPE", _one_of("bfloat16", "float16"), "bfloat16 or float16"),
    ("SOLVER.FX.KEEP_LAST", lambda v: _int(v) and v >= 0, "an integer >= 0 (0 = keep all)"),
    ("SOLVER.FX.TRAIN_SPLIT", _one_of(*SPLITS), f"one of {SPLITS}"),
    ("SOLVER.FX.FEW_SHOT_N", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("SOLVER.FX.LOG_PERIOD", lambda v: _int(v) and v > 0, "a positive integer"),
    ("SOLVER.FX.NUM_OVERLAYS", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("MODEL.FX.CONSISTENCY_WEIGHT", _within(0, 1), "c in [0, 1]"),
    ("DATALOADER.NUM_WORKERS", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("TEST.EVAL_PERIOD", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("TEST.FX.SEG_THRESH", _within(0, 1), "a probability in [0, 1]"),
    ("TEST.FX.MAX_DETS", lambda v: _int(v) and v > 0, "a positive integer"),
]


def _check_lists(cfg, errors: List[str]) -> None:
    lsr = list(cfg.INPUT.FX.LSR_RANGE)
    if not (len(lsr) == 2 and all(map(_number, lsr)) and 0 <= lsr[0] <= lsr[1] <= 1):
        errors.append(
            f"INPUT.FX.LSR_RANGE = {lsr!r}: must be (low, high) with 0 <= low <= high <= 1"
        )
    for item in cfg.INPUT.FX.UNCERTAIN_POLICY_OVERRIDES:
        key, sep, policy = str(item).partition(":")
        if not sep or not key.strip() or policy not in POLICIES:
            errors.append(
                f"INPUT.FX.UNCERTAIN_POLICY_OVERRIDES entry {item!r}: must be 'key:policy' with "
                f"policy in {POLICIES}"
            )
    thresholds = list(cfg.TEST.FX.IOU_THRESHOLDS)
    if not thresholds or not all(_number(t) and 0 < t < 1 for t in thresholds):
        errors.append(f"TEST.FX.IOU_THRESHOLDS = {thresholds!r}: must be IoUs in (0, 1)")


def _check_datasets_and_stages(cfg, errors: List[str]) -> None:
    """Dataset keys (registered, once each) and stage names (``key:task`` of those keys)."""
    keys = list(cfg.MODEL.FX.DATASETS)
    if not keys:
        errors.append("MODEL.FX.DATASETS = []: name at least one dataset key")
    if len(set(keys)) != len(keys):
        errors.append(f"MODEL.FX.DATASETS = {keys!r}: a key is listed twice")
    for key in dict.fromkeys(keys):
        try:
            dataset_spec(key)
        except KeyError as e:
            errors.append(f"MODEL.FX.DATASETS: {e.args[0] if e.args else e}")
    for item in cfg.SOLVER.LOCK_RELEASE.STAGES:
        key, sep, task = str(item).partition(":")
        if not sep or task.strip() not in TASKS or key.strip() not in keys:
            errors.append(
                f"SOLVER.LOCK_RELEASE.STAGES entry {item!r}: must be '<key>:<task>' with the key "
                f"in MODEL.FX.DATASETS {keys} and the task in {TASKS}"
            )


def _check_lengths(cfg, errors: List[str]) -> None:
    lock_release = cfg.SOLVER.LOCK_RELEASE
    for task, node in per_task(lock_release).items():
        prefix = f"SOLVER.LOCK_RELEASE.{task.upper()}"
        for name in ("LOCK_LENGTH", "RELEASE_LENGTH", "FINAL_LOCK_LENGTH"):
            value = node[name]
            if not (_number(value) and value >= 0):
                errors.append(f"{prefix}.{name} = {value!r}: must be a length >= 0")
            elif lock_release.UNIT == "iters" and float(value) != int(value):
                errors.append(f"{prefix}.{name} = {value!r}: must be a whole number in 'iters'")
    if lock_release.CYCLES == 0 and cfg.SOLVER.MAX_ITER <= 0:
        errors.append("SOLVER.LOCK_RELEASE.CYCLES = 0 and SOLVER.MAX_ITER <= 0: nothing to train")
    for task, node in per_task(cfg.SOLVER.FX).items():
        if not (_number(node.CLIP_GRAD) and node.CLIP_GRAD >= 0):
            key = f"SOLVER.FX.{task.upper()}.CLIP_GRAD"
            errors.append(f"{key} = {node.CLIP_GRAD!r}: must be a norm >= 0 (0 = off)")


def validate_config(cfg, world_size: int = 0) -> None:
    """Check every training-relevant config value (see the module docstring).

    Args:
        world_size: processes of the run (default: Detectron2's ``comm.get_world_size()``).

    Raises:
        PreflightError: listing every key with a bad value and what a valid one is.
    """
    errors: List[str] = []
    for key, ok, requirement in RULES:
        value = _get(cfg, key)
        if not ok(value):
            errors.append(f"{key} = {value!r}: must be {requirement}")
    world = world_size or comm.get_world_size()
    batch = cfg.SOLVER.IMS_PER_BATCH
    if _int(batch) and batch > 0 and batch % world:
        errors.append(
            f"SOLVER.IMS_PER_BATCH = {batch}: the global batch must be divisible by the {world} "
            "processes of the run"
        )
    _check_lists(cfg, errors)
    _check_datasets_and_stages(cfg, errors)
    _check_lengths(cfg, errors)
    if errors:
        raise PreflightError("invalid config:\n  " + "\n  ".join(errors))


def check_datasets(
    stages: Sequence[Tuple[str, str]],
    stage_data: Callable[[str, str], Sequence[Any]],
    test_sets: Mapping[str, Sequence[str]],
    strict: bool = False,
    test_data: Optional[Callable[[str], Sequence[Any]]] = None,
) -> None:
    """Load the training data of every stage (``stage_data(key, task)``, the trainer's cache) and
    every test set (``test_data(name)``, e.g. the evaluation runner's cache, so that the
    evaluations do not read it again; default ``load_dataset_dicts``), before iteration 0.

    Raises:
        PreflightError: listing every stage / test set that is missing, unreadable or empty.
    """
    errors: List[str] = []
    for key, task in dict.fromkeys(stages):
        try:
            count = len(stage_data(key, task))
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            errors.append(f"stage {key}:{task}: {type(e).__name__}: {e}")
            continue
        if count == 0:
            errors.append(f"stage {key}:{task}: no training image has {task} labels")
    for name in test_sets:
        try:
            if test_data is not None:
                count = len(test_data(name))
            else:
                count = len(load_dataset_dicts(name, strict=strict))
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            errors.append(f"test set {name}: {type(e).__name__}: {e}")
            continue
        if count == 0:
            errors.append(f"test set {name}: no images")
    if errors:
        raise PreflightError("the data of this run cannot be read:\n  " + "\n  ".join(errors))
    logger.info("Preflight: %d stages and %d test sets read", len(stages), len(test_sets))
