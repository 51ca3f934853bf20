"""EMA teacher of the whole model and the student-teacher consistency loss.

The teacher is a deep copy of the unwrapped student (parameters and buffers), always in eval mode,
with ``requires_grad`` off, outside DDP and outside the optimizer. ``update`` blends it towards the
student with ``torch._foreach`` ops on the floating-point tensors, matched by name once and cached;
integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied, never averaged.
"""

import copy
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EMATeacher", "consistency_loss", "unwrap_model"]

logger = logging.getLogger(__name__)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or ``model`` itself)."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def consistency_loss(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], normalize: bool = True
) -> torch.Tensor:
    """Mean over the feature list of ``MSE(l2n(student), l2n(teacher))``.

    Each tensor is (N, C, ...) and is L2-normalised over channels (dim 1) unless ``normalize`` is
    False (the reference's classification consistency); the MSE is the mean over all elements.
    The teacher side is detached.
    """
    if len(student) != len(teacher) or not student:
        raise ValueError(f"consistency_loss: {len(student)} student vs {len(teacher)} features")
    terms = []
    for s, t in zip(student, teacher):
        if s.shape != t.shape:
            raise ValueError(
                f"consistency_loss: student {tuple(s.shape)} vs teacher {tuple(t.shape)}"
            )
        t = t.detach()
        if normalize:
            s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
        terms.append(F.mse_loss(s, t))
    return torch.stack(terms).mean()


def _named_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    tensors: Dict[str, torch.Tensor] = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    return tensors


class EMATeacher:
    """Exponential-moving-average copy of a FoundationX student.

    Attributes:
        module: the teacher FoundationX (eval mode, no grad); run it for evaluation or consistency.

    ``update(student, m)`` sets ``t = m * t + (1 - m) * s`` for float parameters and buffers (so
    ``m = 0`` copies the student) and copies non-float buffers. ``state_dict``/``load_state_dict``
    make it a Detectron2/fvcore checkpointable.
    """

    def __init__(self, student: nn.Module):
        student = unwrap_model(student)
        # The student's own attached teacher is not part of it (FoundationX.__getstate__ drops it).
        self.module: nn.Module = copy.deepcopy(student)
        self.module.eval()
        self.module.requires_grad_(False)
        self._cache: Optional[Tuple[int, List[torch.Tensor], List[torch.Tensor], List[Any]]] = None

    def _pairs(self, student: nn.Module):
        if self._cache is not None and self._cache[0] == id(student):
            return self._cache[1:]
        mine, theirs = _named_tensors(self.module), _named_tensors(student)
        if mine.keys() != theirs.keys():
            missing = sorted(set(theirs) - set(mine))[:5]
            extra = sorted(set(mine) - set(theirs))[:5]
            raise ValueError(
                f"EMATeacher.update: teacher and student differ (student-only {missing}, "
                f"teacher-only {extra}); rebuild the teacher after changing the model"
            )
        floats_t, floats_s, others = [], [], []
        for name, t in mine.items():
            s = theirs[name]
            if t.shape != s.shape:
                raise ValueError(f"EMATeacher.update: {name} {tuple(t.shape)} vs {tuple(s.shape)}")
            if t.is_floating_point():
                floats_t.append(t)
                floats_s.append(s)
            else:
                others.append((t, s))
        self._cache = (id(student), floats_t, floats_s, others)
        return self._cache[1:]

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        """Blend the teacher towards ``student`` (DDP-wrapped or not); ``momentum`` in [0, 1]."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
        floats_t, floats_s, others = self._pairs(unwrap_model(student))
        if floats_t:
            source = [s.detach().to(t.dtype) for t, s in zip(floats_t, floats_s)]
            torch._foreach_mul_(floats_t, momentum)
            torch._foreach_add_(floats_t, source, alpha=1.0 - momentum)
        for t, s in others:
            t.copy_(s)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The teacher FoundationX's state_dict (same keys as the student's)."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True):
        """Load a teacher state_dict; the cached tensor lists stay valid (in-place copy)."""
        return self.module.load_state_dict(state_dict, strict=strict)

    def to(self, *args, **kwargs) -> "EMATeacher":
        """Move the teacher (e.g. to the student's device); invalidates the cache."""
        self.module.to(*args, **kwargs)
        self._cache = None
        return self
