"""Speed options of the model the trainer trains: channels-last memory on CUDA and
``torch.compile`` of the backbone (``MODEL.FX.COMPILE``).

Channels-last: the Swin stage maps are already NHWC views, so convolution weights in
channels-last memory let cuDNN run the patch embedding, FPN, UperNet and box-head convolutions
without layout conversions (tensor-core kernels under bf16 autocast). On the CPU the model is left
as it is. Together with bf16 autocast (``SOLVER.AMP.ENABLED``, train_step.py) and fused AdamW
(optimizer.py) these are the CUDA training options that ``benchmarks/gpu.py`` measures.
"""

import logging

import torch
from torch import nn

from fx_d2.modeling.teacher import unwrap_model

__all__ = ["prepare_training_model"]

logger = logging.getLogger(__name__)


def prepare_training_model(model: nn.Module, cfg) -> nn.Module:
    """Apply the speed options to ``model`` (unwrapped, before DDP) in place and return it.

    * on CUDA: ``model.to(memory_format=torch.channels_last)`` (4-D weights only; values, names
      and the state_dict are unchanged);
    * ``MODEL.FX.COMPILE``: ``backbone.set_compile(MODEL.FX.COMPILE_BACKEND)`` (training-mode
      forwards of the Swin stages go through ``torch.compile``).
    """
    model = unwrap_model(model)
    device = next(model.parameters()).device
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if cfg.MODEL.FX.COMPILE:
        backbone = getattr(model, "backbone", None)
        if not hasattr(backbone, "set_compile"):
            raise ValueError(
                f"MODEL.FX.COMPILE needs a backbone with set_compile (FXSwinTransformer); "
                f"{type(model).__name__} has {type(backbone).__name__}"
            )
        backbone.set_compile(cfg.MODEL.FX.COMPILE_BACKEND)
        logger.info(
            "MODEL.FX.COMPILE: backbone stages compiled with torch.compile(backend=%r) in train "
            "mode (the first steps of each input size compile)",
            cfg.MODEL.FX.COMPILE_BACKEND,
        )
    return model
