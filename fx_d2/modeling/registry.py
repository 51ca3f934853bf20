"""Registries of FoundationX's pluggable parts, chosen by name in the config.

* ``CLS_HEAD_REGISTRY`` (``MODEL.FX.CLS_HEAD.NAME``): one dataset's classification head, an
  ``nn.Module`` built as ``cls(cfg, in_features=C, num_classes=n)`` (``@configurable``); forward
  ``(N, C) -> (N, n)`` logits.
* ``LOC_DECODER_REGISTRY`` (``MODEL.FX.LOC_DECODER.NAME``): one dataset's localization decoder, an
  ``nn.Module`` built as ``cls(cfg, input_shape=..., spec=...)``, whose classmethod
  ``build_encoder(cfg, input_shape)`` builds the encoder shared by all datasets. See
  :class:`fx_d2.modeling.branches.localization.LocalizationBranch` for the forward contract.
* ``SEG_DECODER_REGISTRY`` (``MODEL.FX.SEG_DECODER.NAME``): the segmentation decoder shared by all
  datasets, built as ``cls(cfg, input_shape=[C1..C4])``; forward: 4 raw stage maps ->
  ``(fused (N, out_channels, H/4, W/4), [consistency features])``.

A part defined in the user's own module is registered when that module is imported and is then
selected by config alone (see docs/model.md).
"""

from ..utils.registry import Registry

__all__ = ["CLS_HEAD_REGISTRY", "LOC_DECODER_REGISTRY", "SEG_DECODER_REGISTRY"]

CLS_HEAD_REGISTRY = Registry("FX_CLS_HEAD")
CLS_HEAD_REGISTRY.__doc__ = "Per-dataset classification heads (MODEL.FX.CLS_HEAD.NAME)."

LOC_DECODER_REGISTRY = Registry("FX_LOC_DECODER")
LOC_DECODER_REGISTRY.__doc__ = "Per-dataset localization decoders (MODEL.FX.LOC_DECODER.NAME)."

SEG_DECODER_REGISTRY = Registry("FX_SEG_DECODER")
SEG_DECODER_REGISTRY.__doc__ = "Shared segmentation decoders (MODEL.FX.SEG_DECODER.NAME)."
