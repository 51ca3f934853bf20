"""Config keys of fx_d2. ``add_fx_config`` only adds keys, with defaults that build a model.

Keys fx_d2 renamed are listed in :data:`RENAMED_KEYS`; a config file or an opts list that still
uses one fails when it is merged, with an error naming the new key.
"""

import importlib
from typing import Any, Dict, Iterable, List

from detectron2.config import CfgNode as CN

from .config_decoders import add_decoder_config

__all__ = ["add_fx_config", "import_config_modules", "per_task", "FXCfgNode", "RENAMED_KEYS"]

# old key -> new key
RENAMED_KEYS: Dict[str, str] = {
    "MODEL.FX.CLS_HEAD": "MODEL.FX.CLS_HEAD.NAME",
    "MODEL.FX.LOC_IN_FEATURES": "MODEL.FX.LOC_DECODER.IN_FEATURES",
    "MODEL.FX.LOC_FPN_CHANNELS": "MODEL.FX.RCNN.FPN_CHANNELS",
    "MODEL.FX.LOC_FPN_NORM": "MODEL.FX.RCNN.FPN_NORM",
    "MODEL.FX.SEG_DECODER_CHANNELS": "MODEL.FX.UPERNET.CHANNELS",
    "MODEL.FX.SEG_PPM_CHANNELS": "MODEL.FX.UPERNET.PPM_CHANNELS",
    "MODEL.FX.SEG_PPM_BINS": "MODEL.FX.UPERNET.PPM_BINS",
    "MODEL.FX.SEG_PPM_DROPOUT": "MODEL.FX.UPERNET.PPM_DROPOUT",
    "MODEL.FX.SEG_NORM": "MODEL.FX.UPERNET.NORM",
    "SOLVER.LOCK_RELEASE.LOCK_LENGTH_CLS": "SOLVER.LOCK_RELEASE.CLS.LOCK_LENGTH",
    "SOLVER.LOCK_RELEASE.LOCK_LENGTH_LOC": "SOLVER.LOCK_RELEASE.LOC.LOCK_LENGTH",
    "SOLVER.LOCK_RELEASE.LOCK_LENGTH_SEG": "SOLVER.LOCK_RELEASE.SEG.LOCK_LENGTH",
    "SOLVER.LOCK_RELEASE.RELEASE_LENGTH_CLS": "SOLVER.LOCK_RELEASE.CLS.RELEASE_LENGTH",
    "SOLVER.LOCK_RELEASE.RELEASE_LENGTH_LOC": "SOLVER.LOCK_RELEASE.LOC.RELEASE_LENGTH",
    "SOLVER.LOCK_RELEASE.RELEASE_LENGTH_SEG": "SOLVER.LOCK_RELEASE.SEG.RELEASE_LENGTH",
    "SOLVER.LOCK_RELEASE.FINAL_LOCK_LENGTH_CLS": "SOLVER.LOCK_RELEASE.CLS.FINAL_LOCK_LENGTH",
    "SOLVER.LOCK_RELEASE.FINAL_LOCK_LENGTH_LOC": "SOLVER.LOCK_RELEASE.LOC.FINAL_LOCK_LENGTH",
    "SOLVER.LOCK_RELEASE.FINAL_LOCK_LENGTH_SEG": "SOLVER.LOCK_RELEASE.SEG.FINAL_LOCK_LENGTH",
    "SOLVER.FX.CLIP_GRAD_CLS": "SOLVER.FX.CLS.CLIP_GRAD",
    "SOLVER.FX.CLIP_GRAD_LOC": "SOLVER.FX.LOC.CLIP_GRAD",
    "SOLVER.FX.CLIP_GRAD_SEG": "SOLVER.FX.SEG.CLIP_GRAD",
}


def _leaf_keys(node: Any, prefix: str = "") -> List[str]:
    if not isinstance(node, dict):
        return [prefix]
    keys: List[str] = []
    for name, value in node.items():
        keys.extend(_leaf_keys(value, f"{prefix}.{name}" if prefix else str(name)))
    return keys


def _refuse_renamed(keys: Iterable[str], source: str) -> None:
    for key in keys:
        if key in RENAMED_KEYS:
            raise KeyError(
                f"config key {key} ({source}) was renamed to {RENAMED_KEYS[key]}; "
                f"write {RENAMED_KEYS[key]} instead"
            )


class FXCfgNode(CN):
    """Detectron2's CfgNode that refuses renamed fx_d2 keys (:data:`RENAMED_KEYS`) when a file,
    another config or an opts list is merged. ``add_fx_config`` turns a ``get_cfg()`` into one."""

    def merge_from_other_cfg(self, cfg_other: Any) -> None:
        _refuse_renamed(_leaf_keys(cfg_other), "in the merged config file")
        super().merge_from_other_cfg(cfg_other)

    def merge_from_list(self, cfg_list: list) -> None:
        _refuse_renamed([str(k) for k in list(cfg_list)[0::2]], "in the opts list")
        super().merge_from_list(cfg_list)

    @classmethod
    def _decode_cfg_value(cls, value: Any) -> Any:
        # yacs decodes merged sub-trees with the root's class and then compares node types
        # exactly; the children of an FXCfgNode are plain CfgNodes.
        return CN._decode_cfg_value(value)


def per_task(node: CN) -> Dict[str, CN]:
    """``{"cls": node.CLS, "loc": node.LOC, "seg": node.SEG}`` of a per-task config node, e.g.
    ``per_task(cfg.SOLVER.FX)["loc"].CLIP_GRAD``."""
    return {"cls": node.CLS, "loc": node.LOC, "seg": node.SEG}


def import_config_modules(cfg: CN) -> None:
    """Import every module of ``MODEL.FX.IMPORTS`` (each registers its parts on import).

    Raises:
        ImportError: naming the key and the module that failed.
    """
    for name in cfg.MODEL.FX.IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ImportError(f"MODEL.FX.IMPORTS: cannot import {name!r} ({e})") from e


def add_fx_config(cfg: CN) -> CN:
    """Add every fx_d2 key to a Detectron2 config (in place) and return it.

    Groups: ``MODEL.SWIN`` (backbone), ``MODEL.FX`` (FoundationX branches, decoders, teacher,
    consistency), ``DATASETS.FX`` / ``INPUT.FX`` (sources, mapper, cache),
    ``SOLVER.LOCK_RELEASE`` and ``SOLVER.FX`` (trainer), ``TEST.FX`` (evaluation). A plain
    Detectron2 ``CfgNode`` becomes an :class:`FXCfgNode` (same keys and behaviour).
    """
    if type(cfg) is CN:
        object.__setattr__(cfg, "__class__", FXCfgNode)  # yacs refuses attribute types
    _add_swin_config(cfg)
    _add_model_config(cfg)
    add_decoder_config(cfg)
    _add_data_config(cfg)
    _add_solver_config(cfg)
    _add_test_config(cfg)
    return cfg


def _add_swin_config(cfg: CN) -> None:
    # ---- Swin backbone (fx_d2/modeling/backbone) ----
    cfg.MODEL.SWIN = CN()
    # BEGIN SWIN KEYS
    # Channels of stage 1 (stage i has EMBED_DIM * 2**i); defaults are Swin-T (configs/swin/).
    cfg.MODEL.SWIN.EMBED_DIM = 96
    # Transformer blocks per stage (4 stages).
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 6, 2]
    # Attention heads per stage.
    cfg.MODEL.SWIN.NUM_HEADS = [3, 6, 12, 24]
    # Attention window (7 or 12 in the released models); inputs need not be multiples of it.
    cfg.MODEL.SWIN.WINDOW_SIZE = 7
    # MLP hidden size / channels.
    cfg.MODEL.SWIN.MLP_RATIO = 4.0
    # Learnable bias in the qkv projection.
    cfg.MODEL.SWIN.QKV_BIAS = True
    # Stochastic depth of the last block (linear from 0 over all blocks; Foundation X uses 0.2).
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.2
    # Returned feature maps, subset of res2..res5 (strides 4/8/16/32, per-level LayerNorm).
    # Freezing uses MODEL.BACKBONE.FREEZE_AT: 0 none, 1 patch embed, k>=2 also stages 1..k-1.
    cfg.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # Gradient checkpointing per block while training (less memory, ~30% more compute).
    cfg.MODEL.SWIN.USE_CHECKPOINT = False
    # Patch embedding size / stride.
    cfg.MODEL.SWIN.PATCH_SIZE = 4
    # END SWIN KEYS


def _add_model_config(cfg: CN) -> None:
    # ---- FoundationX meta-architecture (fx_d2/modeling) ----
    cfg.MODEL.FX = CN()
    # Python modules imported before the model is built (e.g. ["my_lab.fx_parts"]): a user's own
    # heads / decoders / dataset sources registered with fx_d2's registries, selected by name.
    cfg.MODEL.FX.IMPORTS = []
    # Dataset keys to build heads for (e.g. ["chexpert", "siim_acr"]); heads are sized from the
    # MetadataCatalog entry fx_<key>_train (else any fx_<key>_<split>). Adding one = adding a key.
    cfg.MODEL.FX.DATASETS = []
    # Optional per-dataset task override, entries "key:cls,loc" (default: the metadata's tasks).
    cfg.MODEL.FX.TASKS = []
    # Heads run at inference for inputs without a "dataset_name" (Detectron2's DefaultPredictor):
    # dataset keys; [] = the model's only dataset (an error naming this key when it has several).
    cfg.MODEL.FX.PREDICT_DATASETS = []
    # Datasets whose metadata says cls_exclusive (RSNA's 3 classes) train with softmax
    # cross-entropy and predict softmax probabilities; False = BCE/sigmoid as the reference.
    cfg.MODEL.FX.CLS_EXCLUSIVE_SOFTMAX = False
    # Softmax probabilities (and so AUC) for cls_exclusive datasets at inference even when they
    # train with BCE: the reference's RSNA evaluation. Implied by CLS_EXCLUSIVE_SOFTMAX.
    cfg.MODEL.FX.CLS_EXCLUSIVE_EVAL_SOFTMAX = False
    # Classification feature from the final-norm last-stage tokens: "mean" (reference) or "max"
    # (a small finding is not averaged away; the demo uses it).
    cfg.MODEL.FX.CLS_POOLING = "mean"
    # Backbone levels pooled (each on its own) and concatenated into the classification feature;
    # the reference uses ["res5"]. More levels widen the heads (official cls heads do not load).
    cfg.MODEL.FX.CLS_IN_FEATURES = ["res5"]
    # Classification head per dataset, a CLS_HEAD_REGISTRY name: "linear" (reference) or
    # "standardized" (the same Linear on the pooled feature standardised per dimension by
    # BatchNorm statistics without affine parameters).
    cfg.MODEL.FX.CLS_HEAD = CN()
    cfg.MODEL.FX.CLS_HEAD.NAME = "linear"
    # Localization: the shared encoder + per-dataset decoder pair, a LOC_DECODER_REGISTRY name:
    # "rcnn" (FPN + Faster R-CNN per dataset; options in MODEL.FX.RCNN and Detectron2's
    # MODEL.RPN / ROI_HEADS / ROI_BOX_HEAD / ANCHOR_GENERATOR) or "dino" (Foundation X's DINO,
    # options in MODEL.FX.DINO).
    cfg.MODEL.FX.LOC_DECODER = CN()
    cfg.MODEL.FX.LOC_DECODER.NAME = "rcnn"
    # Backbone levels (per-level LayerNorm applied) fed to the localization encoder.
    cfg.MODEL.FX.LOC_DECODER.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Shared segmentation decoder, a SEG_DECODER_REGISTRY name: "upernet" (MODEL.FX.UPERNET).
    cfg.MODEL.FX.SEG_DECODER = CN()
    cfg.MODEL.FX.SEG_DECODER.NAME = "upernet"
    # Soft Dice: "batch" = one Dice over the flattened batch and channels (reference),
    # "channel" = Dice per channel, averaged over channels.
    cfg.MODEL.FX.SEG_DICE_MODE = "batch"
    # Weight of an extra per-pixel BCE segmentation loss (loss_seg_bce); 0 = off (reference).
    cfg.MODEL.FX.SEG_BCE_WEIGHT = 0.0
    # c in (1-c)*task + c*consistency when an EMA teacher is attached (reference 0.5).
    cfg.MODEL.FX.CONSISTENCY_WEIGHT = 0.5
    # Under lock the student features of the consistency loss carry no gradient; False skips the
    # teacher forward there and logs loss_consistency = 0, True computes it anyway.
    cfg.MODEL.FX.CONSISTENCY_WHEN_LOCKED = False
    # Fully unpickle checkpoint files that torch.load(weights_only=True) refuses (.pkl model-zoo
    # files, objects beyond tensors): this runs code the file names, so only for trusted files.
    cfg.MODEL.FX.TRUST_PICKLE = False
    # torch.compile the backbone's stages for training steps (train mode; locked phases, the
    # teacher and inference stay eager). Pays off for fixed-size inputs (RESIZE_MODE "square").
    cfg.MODEL.FX.COMPILE = False
    # torch.compile backend: "inductor" (generates GPU/CPU kernels), "aot_eager" (tracing only).
    cfg.MODEL.FX.COMPILE_BACKEND = "inductor"
    # Tasks whose consistency features are compared without L2 normalisation over channels
    # (the reference: ["cls", "loc"]; its seg features are normalised); [] = all normalised.
    cfg.MODEL.FX.CONSISTENCY_RAW_TASKS = []


def _add_data_config(cfg: CN) -> None:
    # ---- dataset sources, mapper and cache (fx_d2/data) ----
    cfg.DATASETS.FX = CN()
    cfg.INPUT.FX = CN()
    # BEGIN DATA KEYS
    # Bad input raises (missing/corrupt image, image size != dict size) instead of being skipped
    # and counted (fx_d2.data.mapper.skipped_images()).
    cfg.DATASETS.FX.STRICT = False
    # "square": exact resize to SIZE x SIZE (the reference, 224); "shortest_edge": shorter side
    # = SIZE, longer side capped at MAX_SIZE (0 = no cap), aspect kept.
    cfg.INPUT.FX.RESIZE_MODE = "square"
    cfg.INPUT.FX.SIZE = 224
    cfg.INPUT.FX.MAX_SIZE = 0
    # Input normalisation (applied by the model): "imagenet" = MODEL.PIXEL_MEAN / PIXEL_STD for
    # every task; "reference" = Foundation X's per task (cls mean .5056 / std .252 on [0, 1], loc
    # ImageNet on [0, 1], seg its own formula; docs/method.md §7.1), needed to reproduce the
    # official weights' outputs; inference then runs the backbone once per task.
    cfg.INPUT.FX.PIXEL_NORM = "imagenet"
    # Training augmentation (0 = off). FLIP: horizontal-flip probability; skipped for datasets
    # with left/right classes unless their metadata has "flip_pairs". ROTATION: max |degrees|.
    # BRIGHTNESS_CONTRAST: x * (1 + U(-b, b)) + U(-b, b) on the [0, 1] image.
    cfg.INPUT.FX.FLIP = 0.0
    cfg.INPUT.FX.ROTATION = 0.0
    cfg.INPUT.FX.BRIGHTNESS_CONTRAST = 0.0
    # Uncertain (-1) classification labels: ones | zeros | ignore | lsr-ones | lsr-zeros.
    # lsr-ones draws U(LSR_RANGE) per sample (the reference for CheXpert).
    cfg.INPUT.FX.UNCERTAIN_POLICY = "lsr-ones"
    # Per-dataset policies "key:policy"; the reference uses "ones" for MIMIC-CXR.
    cfg.INPUT.FX.UNCERTAIN_POLICY_OVERRIDES = ["mimic_cxr:ones"]
    cfg.INPUT.FX.LSR_RANGE = (0.55, 0.85)
    # Loss weight of "not mentioned" (NaN) labels, whose target is 0 (the reference: weight 1).
    cfg.INPUT.FX.UNMENTIONED_WEIGHT = 1.0
    # Add gt_masks (BitMasks) to localization instances (the FX box heads do not need them).
    cfg.INPUT.FX.INSTANCE_MASKS = False
    # Decoded-image cache (tools/cache_images.py); "" = off. Entries store the shorter side at
    # CACHE_SIZE px as "png16" or "npy"; misses are decoded and written by the mapper.
    cfg.INPUT.FX.CACHE_DIR = ""
    cfg.INPUT.FX.CACHE_SIZE = 512
    cfg.INPUT.FX.CACHE_FORMAT = "png16"
    # Images whose header declares more pixels are refused (decompression bombs).
    cfg.INPUT.FX.MAX_PIXELS = 100_000_000
    # Decode JPEG 2000 / JPEG at the coarsest level still covering the output (or CACHE_SIZE).
    cfg.INPUT.FX.SCALED_DECODE = True
    # Decode that many levels finer (each 2x) and let the area resize do the rest: 0 is fastest;
    # 1 keeps sharp edges within 5 % of a full decode at the output (J2K ~4x, JPEG ~1.4x faster).
    cfg.INPUT.FX.SCALED_DECODE_MARGIN = 0
    # END DATA KEYS


def _add_solver_config(cfg: CN) -> None:
    # ---- Lock-Release trainer (fx_d2/engine) ----
    cfg.SOLVER.LOCK_RELEASE = CN()
    cfg.SOLVER.FX = CN()
    # BEGIN SOLVER KEYS
    # Detectron2 keys the trainer reads as they are: IMS_PER_BATCH (global batch), BASE_LR (heads,
    # loc/seg decoders), WEIGHT_DECAY, MAX_ITER, CHECKPOINT_PERIOD, LR_SCHEDULER_NAME, WARMUP_*,
    # AMP.ENABLED; TEST.EVAL_PERIOD > 0 overrides the per-cycle evaluation period.
    # Stages of one cycle, "key:task" in order (e.g. ["chexpert:cls", "tbx11k:loc"]); empty = the
    # reference's 20-stage order restricted to MODEL.FX.DATASETS and their tasks.
    cfg.SOLVER.LOCK_RELEASE.STAGES = []
    # Unit of the phase lengths below: "epochs" (fraction of an epoch of the stage's data, an
    # epoch = ceil(images / IMS_PER_BATCH)) or "iters".
    cfg.SOLVER.LOCK_RELEASE.UNIT = "epochs"
    # Per task (CLS, LOC, SEG): LOCK_LENGTH, the lock phase (shared modules frozen, only the
    # dataset's head learns), and RELEASE_LENGTH, the release phase (everything on the task's
    # path learns); floats also in "iters" (write 200.0: yacs refuses an int for a float key);
    # 0 skips the phase. Reference: lock cls 0, loc 0.5, seg 0.5 epochs; release 1 epoch each.
    # FINAL_LOCK_LENGTH: the closing lock pass (below).
    cfg.SOLVER.LOCK_RELEASE.CLS = CN()
    cfg.SOLVER.LOCK_RELEASE.CLS.LOCK_LENGTH = 0.0
    cfg.SOLVER.LOCK_RELEASE.CLS.RELEASE_LENGTH = 1.0
    cfg.SOLVER.LOCK_RELEASE.CLS.FINAL_LOCK_LENGTH = 0.0
    cfg.SOLVER.LOCK_RELEASE.LOC = CN()
    cfg.SOLVER.LOCK_RELEASE.LOC.LOCK_LENGTH = 0.5
    cfg.SOLVER.LOCK_RELEASE.LOC.RELEASE_LENGTH = 1.0
    cfg.SOLVER.LOCK_RELEASE.LOC.FINAL_LOCK_LENGTH = 0.0
    cfg.SOLVER.LOCK_RELEASE.SEG = CN()
    cfg.SOLVER.LOCK_RELEASE.SEG.LOCK_LENGTH = 0.5
    cfg.SOLVER.LOCK_RELEASE.SEG.RELEASE_LENGTH = 1.0
    cfg.SOLVER.LOCK_RELEASE.SEG.FINAL_LOCK_LENGTH = 0.0
    # Number of cycles to train; > 0 sets SOLVER.MAX_ITER = CYCLES x cycle length (+ the closing
    # pass below), 0 = use MAX_ITER.
    cfg.SOLVER.LOCK_RELEASE.CYCLES = 0
    # Closing lock pass after the last cycle (not in the reference; needs CYCLES > 0): every stage
    # once more with a lock phase of its task's FINAL_LOCK_LENGTH only (UNIT as above; 0 = no
    # pass), so each head and decoder is fitted to the final shared modules before the last
    # evaluation. LR in the closing pass: each parameter group's base LR x this (a cosine
    # schedule is near 0 by then).
    cfg.SOLVER.LOCK_RELEASE.FINAL_LOCK_LR_FACTOR = 1.0
    # Evaluate every N cycles (student and teacher, every test set of the stages); 0 = at the end.
    cfg.SOLVER.LOCK_RELEASE.EVAL_EVERY_CYCLES = 1
    # Trainer class (fx_d2.engine.TRAINER_REGISTRY) built by tools/train_net.py.
    cfg.SOLVER.FX.TRAINER = "LockReleaseTrainer"
    # Optimizer: "AdamW" (reference) or "SGD" (momentum SOLVER.MOMENTUM).
    cfg.SOLVER.FX.OPTIMIZER = "AdamW"
    # AdamW betas.
    cfg.SOLVER.FX.BETAS = (0.9, 0.999)
    # LR of the Swin trunk = BASE_LR x this (reference 1e-5 vs 1e-4).
    cfg.SOLVER.FX.BACKBONE_LR_FACTOR = 0.1
    # LR of the classification heads = BASE_LR x this (reference 0.1: its cls heads sat in the
    # backbone group).
    cfg.SOLVER.FX.CLS_HEAD_LR_FACTOR = 1.0
    # LR of the per-dataset loc decoders and seg heads = BASE_LR x this (a fine-tune's new heads).
    cfg.SOLVER.FX.DATASET_HEAD_LR_FACTOR = 1.0
    # True: no weight decay for norms, biases and relative_position_bias_table (Swin/M2F practice);
    # False: WEIGHT_DECAY on every parameter (reference).
    cfg.SOLVER.FX.NO_DECAY_NORM_BIAS = False
    # Gradient-norm clipping per task, SOLVER.FX.{CLS,LOC,SEG}.CLIP_GRAD (max L2 norm over the
    # parameters with a gradient); 0 = off. Reference: 0.1 for localization only.
    cfg.SOLVER.FX.CLS = CN()
    cfg.SOLVER.FX.CLS.CLIP_GRAD = 0.0
    cfg.SOLVER.FX.LOC = CN()
    cfg.SOLVER.FX.LOC.CLIP_GRAD = 0.1
    cfg.SOLVER.FX.SEG = CN()
    cfg.SOLVER.FX.SEG.CLIP_GRAD = 0.0
    # EMA teacher of the whole model (consistency target and evaluated next to the student).
    cfg.SOLVER.FX.EMA_ENABLED = True
    # teacher = m * teacher + (1 - m) * student (reference 0.8).
    cfg.SOLVER.FX.EMA_MOMENTUM = 0.8
    # 0 = update at the end of every lock/release phase (reference); N > 0 = every N iterations.
    cfg.SOLVER.FX.EMA_PERIOD = 0
    # Autocast dtype on CUDA when SOLVER.AMP.ENABLED: "bfloat16" or "float16" (with GradScaler).
    # CPU training always runs in float32.
    cfg.SOLVER.FX.AMP_DTYPE = "bfloat16"
    # Periodic checkpoints kept (model_NNNNNNN.pth); older ones are deleted. 0 = keep all.
    cfg.SOLVER.FX.KEEP_LAST = 3
    # Split of each dataset key used for training (fx_<key>_<split>).
    cfg.SOLVER.FX.TRAIN_SPLIT = "train"
    # Few-shot fine-tuning: > 0 trains on a deterministic N-image subset of each training set
    # (chosen by SEED); 0 = all images.
    cfg.SOLVER.FX.FEW_SHOT_N = 0
    # Iterations between training-metric log lines / JSON / TensorBoard writes.
    cfg.SOLVER.FX.LOG_PERIOD = 20
    # Overlays (ground truth | student | teacher) of the first this many images of each test set,
    # from the evaluation's own predictions, at the final evaluation; the earlier evaluations
    # draw the first image of each (0 = none).
    cfg.SOLVER.FX.NUM_OVERLAYS = 3
    # END SOLVER KEYS


def _add_test_config(cfg: CN) -> None:
    # ---- evaluation (fx_d2/evaluation) ----
    cfg.TEST.FX = CN()
    # BEGIN TEST KEYS
    # All metrics are reported in percent (0-100), like Detectron2 and the reference's CSV.
    # Segmentation: a pixel is foreground when its sigmoid probability is above this value.
    cfg.TEST.FX.SEG_THRESH = 0.5
    # Dice of an image whose prediction and ground truth are both empty: 1.0 (True, the reference)
    # or left out of that class's mean (False).
    cfg.TEST.FX.DICE_EMPTY_AS_ONE = True
    # IoU thresholds of the COCO box evaluation; the reference's modified cocoeval uses
    # 0.40:0.05:0.95 (mAP40 = AP at 0.40). AP50/AP75/AP50:95 need 0.5, 0.75 among them.
    cfg.TEST.FX.IOU_THRESHOLDS = [round(0.40 + 0.05 * i, 2) for i in range(12)]
    # Detections per image kept by the COCO evaluation (highest scores), as COCO's maxDets.
    cfg.TEST.FX.MAX_DETS = 100
    # Use Detectron2's compiled COCOeval when detectron2._C has it (else pycocotools).
    cfg.TEST.FX.FAST_COCOEVAL = True
    # Also evaluate the EMA teacher at each evaluation (results under "teacher" next to "student").
    cfg.TEST.FX.EVAL_TEACHER = True
    # After each evaluation in training, write the overlays, metric_curves.png and report.html
    # (False: results files only, e.g. for many short fine-tuning runs).
    cfg.TEST.FX.WRITE_REPORT = True
    # END TEST KEYS
