"""Registered Detectron2 builders for the Swin backbone (plain and with an FPN)."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from .swin import FXSwinTransformer

__all__ = ["build_fx_swin_backbone", "build_fx_swin_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_fx_swin_backbone(cfg, input_shape: ShapeSpec) -> FXSwinTransformer:
    """FXSwinTransformer from ``cfg.MODEL.SWIN.*``.

    ``MODEL.BACKBONE.FREEZE_AT`` keeps its Detectron2 meaning: 0 nothing frozen, 1 the patch
    embedding, k >= 2 also stages 1..k-1 (res2.., each with its PatchMerging).
    """
    swin = cfg.MODEL.SWIN
    return FXSwinTransformer(
        patch_size=swin.PATCH_SIZE,
        in_chans=input_shape.channels,
        embed_dim=swin.EMBED_DIM,
        depths=tuple(swin.DEPTHS),
        num_heads=tuple(swin.NUM_HEADS),
        window_size=swin.WINDOW_SIZE,
        mlp_ratio=swin.MLP_RATIO,
        qkv_bias=swin.QKV_BIAS,
        drop_path_rate=swin.DROP_PATH_RATE,
        out_features=tuple(swin.OUT_FEATURES),
        frozen_stages=cfg.MODEL.BACKBONE.FREEZE_AT - 1,
        use_checkpoint=swin.USE_CHECKPOINT,
    )


@BACKBONE_REGISTRY.register()
def build_fx_swin_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """Detectron2 ``FPN`` (``MODEL.FPN.*``, LastLevelMaxPool -> p2..p6) over the Swin trunk.

    An empty ``MODEL.FPN.IN_FEATURES`` means all of ``MODEL.SWIN.OUT_FEATURES``.
    """
    bottom_up = build_fx_swin_backbone(cfg, input_shape)
    return FPN(
        bottom_up=bottom_up,
        in_features=list(cfg.MODEL.FPN.IN_FEATURES) or bottom_up._out_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
