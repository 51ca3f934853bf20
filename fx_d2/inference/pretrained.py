"""``FXPredictor.from_pretrained``: weights by name, URL or file, the config they fit, a device.

The weights are resolved (downloaded, converted once) by :func:`fx_d2.model_zoo.resolve_weights`;
the config is the one the weights imply (the catalogue entry's; for Foundation X's own
checkpoints the reference architecture and its per-task input normalisation), unless
``config_file`` is given.
"""

import logging
from typing import Optional, Sequence

import torch
from detectron2.config import get_cfg

from ..config import add_fx_config
from ..data.catalog import TASKS
from ..model_zoo import ResolvedWeights, resolve_weights

__all__ = ["select_device", "pretrained_cfg", "pretrained_predictor", "require_trained_heads"]

logger = logging.getLogger(__name__)


def select_device(device: str = "auto") -> str:
    """``"auto"``: ``"cuda"`` when a CUDA device is usable, else ``"cpu"``. A CUDA device asked
    for on a machine without one falls back to the CPU with a warning (a config written for GPUs
    still runs)."""
    cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if str(device).startswith("cuda") and not cuda:
        logger.warning("MODEL.DEVICE %s: no CUDA device is available; running on the CPU", device)
        return "cpu"
    return str(device)


def pretrained_cfg(
    weights: ResolvedWeights,
    config_file: Optional[str] = None,
    opts: Sequence = (),
    device: Optional[str] = "auto",
):
    """The config for ``weights``: ``config_file`` (default: the one the weights imply),
    ``MODEL.WEIGHTS`` set to the loadable file, ``opts`` applied, ``MODEL.DEVICE`` chosen by
    :func:`select_device` (``device=None``: the config's own, on the CPU without a GPU).

    Raises:
        ValueError: no config given and none implied by the weights.
    """
    config_file = config_file or weights.config_file
    if not config_file:
        raise ValueError(
            f"weights {weights.name} ({weights.format}) do not say which config they fit: pass "
            "config_file= (tools/predict.py: --config-file), e.g. the config.yaml of the "
            "training run that wrote them"
        )
    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.MODEL.WEIGHTS = weights.path
    cfg.MODEL.DEVICE = select_device(cfg.MODEL.DEVICE if device is None else device)
    return cfg


def pretrained_predictor(
    predictor_cls,
    name_or_path: str,
    device: str = "auto",
    tasks: Optional[Sequence[str]] = None,
    config_file: Optional[str] = None,
    opts: Sequence = (),
    datasets: Optional[Sequence[str]] = None,
    include_untrained: bool = False,
    teacher: bool = False,
    trust_pickle: bool = False,
    progress: bool = True,
):
    """Build ``predictor_cls`` (an FXPredictor) for ``name_or_path`` (see
    :meth:`FXPredictor.from_pretrained`).

    Args:
        config_file: config to use instead of the one the weights imply.
        opts: config overrides (a ``merge_from_list`` list).
        datasets: keep only these datasets' heads (``MODEL.FX.DATASETS``).
        include_untrained: also run heads the weights did not train.
        teacher: an fx_d2 training checkpoint: its EMA teacher instead of the student.
        trust_pickle: see :func:`fx_d2.checkpoint.loading.load_checkpoint`.

    Raises:
        ValueError: no trained head is left to run, an unknown task, or no config.
    """
    unknown = [t for t in tasks or () if t not in TASKS]
    if unknown:
        raise ValueError(f"tasks {unknown}: choose from {TASKS}")
    weights = resolve_weights(name_or_path, trust_pickle=trust_pickle, progress=progress)
    cfg = pretrained_cfg(weights, config_file, opts, device)
    if datasets:
        cfg.MODEL.FX.DATASETS = list(datasets)
    cfg.MODEL.FX.TRUST_PICKLE = bool(trust_pickle or cfg.MODEL.FX.TRUST_PICKLE)
    predictor = predictor_cls(
        cfg, weights.path, teacher=teacher, include_untrained=include_untrained
    )
    predictor.weights = weights
    predictor.tasks = tuple(tasks) if tasks else None
    require_trained_heads(predictor, weights.name, None, tasks)
    return predictor


def require_trained_heads(
    predictor, name: str, datasets: Optional[Sequence[str]] = None, tasks=None
) -> None:
    """Raise ValueError when none of ``datasets``' heads (default all) for ``tasks`` would run:
    the weights trained none of them (e.g. a backbone-only file) and untrained heads are off."""
    keys = predictor.dataset_keys if datasets is None else list(datasets)
    if any(predictor.trained_tasks(k, tasks) for k in keys):
        return
    raise ValueError(
        f"weights {name} trained none of the heads asked for ({keys}, tasks {tasks or 'all'}): "
        f"{predictor.untrained}. They would predict noise. Fine-tune first (tools/train_net.py, "
        "configs/finetune/), use weights with trained heads (`python tools/weights.py list`), "
        "or include the untrained heads (include_untrained=True, --include-untrained) for a "
        "smoke test"
    )
