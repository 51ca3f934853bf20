"""All-or-nothing loading of the DINO modules.

A DINO encoder or decoder loaded from a checkpoint whose tensors only partly fit (some missing,
some of another shape, e.g. 1 logit per class instead of Foundation X's 14) would run as a silent
mix of trained and random weights. A module marked here loads completely or not at all: on a
partial or mis-shaped state its keys are left out and every problem key is logged.
``fx_d2.checkpoint.model_weights.load_foundation_x_weights`` reports such modules under
``not_loaded``.
"""

import logging
from typing import Dict, List

from torch import nn

__all__ = ["load_all_or_nothing", "partial_state_problems"]

logger = logging.getLogger(__name__)


def partial_state_problems(module: nn.Module, state_dict: Dict, prefix: str) -> List[str]:
    """Problems of ``state_dict`` for ``module`` under ``prefix``: "missing <key>" and
    "shape <key>: <file> vs <model>" lines; empty when it has all keys with the right shapes or
    none of them."""
    own = module.state_dict()
    present = [k for k in own if prefix + k in state_dict]
    if not present:
        return []
    problems = [f"missing {prefix}{k}" for k in own if prefix + k not in state_dict]
    for k in present:
        shape = tuple(getattr(state_dict[prefix + k], "shape", ()))
        if shape != tuple(own[k].shape):
            problems.append(
                f"shape {prefix}{k}: {shape} in the checkpoint vs {tuple(own[k].shape)}"
            )
    return problems


def _pre_hook(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
    problems = partial_state_problems(module, state_dict, prefix)
    if not problems:
        return
    for key in module.state_dict():
        state_dict.pop(prefix + key, None)
    logger.warning(
        "%s not loaded: the checkpoint fits it only partly (%d problem(s)): %s",
        prefix.rstrip(".") or type(module).__name__,
        len(problems),
        "; ".join(problems),
    )


def load_all_or_nothing(module: nn.Module) -> nn.Module:
    """Mark ``module`` (and return it) so that it never loads from a partial state dict."""
    module._register_load_state_dict_pre_hook(_pre_hook, with_module=True)
    module.complete_load_only = True  # read by load_foundation_x_weights
    return module
