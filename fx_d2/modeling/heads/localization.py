"""The localization decoder contract (what ``LOC_DECODER_REGISTRY`` entries implement).

A localization decoder class ``D`` provides:

* ``D.build_encoder(cfg, input_shape) -> nn.Module``: the encoder shared by every dataset
  (FoundationX's ``loc_encoder``). ``input_shape`` maps the backbone levels named by
  ``MODEL.FX.LOC_DECODER.IN_FEATURES`` (per-level normalised, e.g. ``"res3"``) to their
  ``ShapeSpec``. It has ``output_shape() -> Dict[str, ShapeSpec]`` (what each decoder is
  built for) and its forward is ``encoder(levels, images) -> encoded`` with ``levels`` that
  dict of (N, C, h, w) maps and ``images`` the padded ``ImageList``; ``encoded`` is anything the
  decoders understand. Under a lock phase the encoder runs frozen (no autograd, eval mode) and
  every tensor of ``encoded`` is detached, so shared parameters a decoder needs (e.g. DINO's
  query embeddings) should travel inside ``encoded``: they are then frozen with it. A structured
  ``encoded`` (not a mapping / list of batch-first tensors) needs a ``select(idx)`` method for
  inference on part of a batch.
* ``D(cfg, input_shape=encoder.output_shape(), spec=DatasetSpec)``: one dataset's decoder
  (``@configurable``, sized by ``spec.thing_classes``), FoundationX's ``loc_decoders[key]``.
  Its forward is ``decoder(images, encoded, gt_instances=None) -> LocalizationOutput``: in training
  ``gt_instances`` (one ``Instances`` with ``gt_boxes`` / ``gt_classes`` per image, possibly
  empty) gives ``losses``; in eval mode ``instances`` holds ``pred_boxes`` / ``scores`` /
  ``pred_classes`` in the padded input's pixel frame.
* ``decoder.consistency_features(images, encoded) -> List[Tensor]``: what the EMA teacher's
  features are compared with (run on both models); in training the same list is returned as
  ``LocalizationOutput.consistency``.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from detectron2.structures import Instances

__all__ = ["LocalizationOutput"]


@dataclass
class LocalizationOutput:
    """What a localization decoder returns.

    Attributes:
        instances: eval mode: per image, detections in the padded input's frame; else None.
        losses: training: named scalar losses (already weighted); else empty.
        consistency: training: the student features for the consistency loss.
    """

    instances: Optional[List[Instances]] = None
    losses: Dict[str, torch.Tensor] = field(default_factory=dict)
    consistency: List[torch.Tensor] = field(default_factory=list)
