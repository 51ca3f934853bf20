"""Config keys of fx_d2's built-in decoders, one node each: ``MODEL.FX.RCNN`` (loc "rcnn"),
``MODEL.FX.DINO`` (loc "dino") and ``MODEL.FX.UPERNET`` (seg "upernet"). The decoder is chosen by
``MODEL.FX.LOC_DECODER.NAME`` / ``SEG_DECODER.NAME``; its node is read only when it is built."""

from detectron2.config import CfgNode as CN

__all__ = ["add_decoder_config"]


def add_decoder_config(cfg: CN) -> None:
    """Add the decoder nodes under ``cfg.MODEL.FX`` (which must exist)."""
    cfg.MODEL.FX.RCNN = CN()
    # Channels of the shared FPN levels p2..p6.
    cfg.MODEL.FX.RCNN.FPN_CHANNELS = 256
    # Norm of the FPN convolutions: "" (none, Detectron2's default), "GN", "BN", "SyncBN".
    cfg.MODEL.FX.RCNN.FPN_NORM = ""
    # "dino" (Foundation X's localization, docs/model.md): shared input projections, deformable
    # encoder, content queries and denoising label embedding; per dataset the memory projection,
    # two-stage proposal head, deformable decoder and output heads. Defaults: the reference's
    # sizes (use LOC_DECODER.IN_FEATURES res3..res5 as the reference does).
    cfg.MODEL.FX.DINO = CN()
    # Transformer width C, attention heads, FFN width.
    cfg.MODEL.FX.DINO.HIDDEN_DIM = 256
    cfg.MODEL.FX.DINO.NUM_HEADS = 8
    cfg.MODEL.FX.DINO.FFN_DIM = 2048
    # Levels fed to the transformer: the IN_FEATURES levels plus 3x3 stride-2 extra levels.
    cfg.MODEL.FX.DINO.NUM_FEATURE_LEVELS = 4
    # Encoder / decoder layers and sampling points per head and level.
    cfg.MODEL.FX.DINO.ENC_LAYERS = 6
    cfg.MODEL.FX.DINO.DEC_LAYERS = 6
    cfg.MODEL.FX.DINO.ENC_POINTS = 4
    cfg.MODEL.FX.DINO.DEC_POINTS = 4
    # Queries: top encoder proposals per image (capped by the number of tokens) and rows of the
    # shared content-query table.
    cfg.MODEL.FX.DINO.NUM_QUERIES = 900
    # (query, class) pairs kept per image at inference (no NMS).
    cfg.MODEL.FX.DINO.NUM_SELECT = 300
    # Temperature of the sine position encoding of the feature maps.
    cfg.MODEL.FX.DINO.POS_TEMPERATURE = 20.0
    # Class logits per decoder: 0 = one per thing class (class i -> logit i); > 0 = that many,
    # class i -> logit i + 1 (COCO category ids; Foundation X: 14) unless CLASS_LOGITS maps it.
    cfg.MODEL.FX.DINO.NUM_LOGITS = 0
    # Per-dataset class -> logit maps "key:l0,l1,..." (one logit per thing class).
    cfg.MODEL.FX.DINO.CLASS_LOGITS = []
    # Contrastive denoising: query budget (groups = DN_NUMBER // max boxes per image), label
    # flip probability x 2, box jitter scale (reference 1.0), rows of the label embedding.
    cfg.MODEL.FX.DINO.DN_NUMBER = 100
    cfg.MODEL.FX.DINO.DN_LABEL_NOISE = 0.5
    cfg.MODEL.FX.DINO.DN_BOX_NOISE = 1.0
    cfg.MODEL.FX.DINO.DN_LABEL_BOOK_SIZE = 16
    # Hungarian matching costs (class, L1, GIoU) and loss weights (focal, L1, GIoU).
    cfg.MODEL.FX.DINO.COST_CLASS = 2.0
    cfg.MODEL.FX.DINO.COST_L1 = 5.0
    cfg.MODEL.FX.DINO.COST_GIOU = 2.0
    cfg.MODEL.FX.DINO.LOSS_CLASS = 1.0
    cfg.MODEL.FX.DINO.LOSS_L1 = 5.0
    cfg.MODEL.FX.DINO.LOSS_GIOU = 2.0
    cfg.MODEL.FX.DINO.FOCAL_ALPHA = 0.25
    cfg.MODEL.FX.DINO.FOCAL_GAMMA = 2.0
    # Losses on the selected encoder proposals (upstream DINO: 1.0; Foundation X: 0.0, so its
    # proposal class / box heads get no gradient).
    cfg.MODEL.FX.DINO.PROPOSAL_LOSS_WEIGHT = 1.0
    # Weight of the sum of squares of the encoder layers added to every released loc step (on top
    # of weight decay); 0 = off. Like every task loss it is scaled by 1 - CONSISTENCY_WEIGHT when
    # a teacher is attached; Foundation X adds 1e-4 unscaled (= 2e-4 here at c = 0.5).
    cfg.MODEL.FX.DINO.ENCODER_L2_WEIGHT = 0.0
    cfg.MODEL.FX.UPERNET = CN()
    # UperNet output channels (fpn_ch; reference 128).
    cfg.MODEL.FX.UPERNET.CHANNELS = 128
    # Channels of each PPM branch; 0 = last-stage channels // len(bins) (reference 1024 -> 256).
    cfg.MODEL.FX.UPERNET.PPM_CHANNELS = 0
    # PPM adaptive-pool output sizes (reference 1, 2, 4, 6; PSPNet's classic is 1, 2, 3, 6).
    cfg.MODEL.FX.UPERNET.PPM_BINS = [1, 2, 4, 6]
    # Dropout2d after the PPM bottleneck (reference 0.1).
    cfg.MODEL.FX.UPERNET.PPM_DROPOUT = 0.1
    # Norm: "GN" (batch-size independent, default), "BN" (reference) or "SyncBN".
    cfg.MODEL.FX.UPERNET.NORM = "GN"
