"""The "dino" localization decoder: Foundation X's per-dataset DINO (4-scale, two-stage,
contrastive denoising) over the shared :class:`DINOEncoder` (docs/method.md §1.4, §5).

Per dataset: ``memory_proj`` (applied to the shared encoder's tokens before everything else),
the two-stage proposal head (``proposal_proj`` + ``proposal_norm``, ``proposal_class`` scoring
the tokens for the top-Q selection, ``proposal_box``), the 6-layer ``decoder`` with its own
refinement MLP, and the output heads ``class_head`` / ``box_head`` (separate from the refinement
MLP, as in Foundation X). Options: ``MODEL.FX.DINO.*``.
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ...registry import LOC_DECODER_REGISTRY
from ..localization import LocalizationOutput
from .complete_load import load_all_or_nothing
from .criterion import HungarianMatcher, SetCriterion
from .decoder import DINOTransformerDecoder
from .denoising import DenoisingQueries, build_denoising_queries
from .encoder import DINOEncoded, DINOEncoder
from .layers import MLP, box_cxcywh_to_xyxy, inverse_sigmoid
from .proposals import token_anchors
from .targets import class_logit_map, prepare_targets

__all__ = ["DINOLocalizationDecoder"]

_PRIOR_BIAS = -4.59511985013459  # logit of 0.01: every query starts as "probably background"


def _class_linear(dim: int, num_logits: int) -> nn.Linear:
    layer = nn.Linear(dim, num_logits)
    nn.init.constant_(layer.bias, _PRIOR_BIAS)
    return layer


def _box_mlp(dim: int) -> MLP:
    mlp = MLP(dim, dim, 4, 3)
    nn.init.zeros_(mlp.layers[-1].weight)  # boxes start at their reference box
    nn.init.zeros_(mlp.layers[-1].bias)
    return mlp


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (N, k) of (N, S, D) -> (N, k, D)."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


@LOC_DECODER_REGISTRY.register("dino")
class DINOLocalizationDecoder(nn.Module):
    """One dataset's DINO decoder.

    Loss keys (already weighted): ``loss_box_{cls,l1,giou}`` (all decoder layers),
    ``loss_dn_{cls,l1,giou}`` (denoising queries), ``loss_proposal_*`` (when
    ``PROPOSAL_LOSS_WEIGHT`` > 0), ``loss_encoder_l2`` (when ``ENCODER_L2_WEIGHT`` > 0, release
    only). Consistency features: the decoder states of all layers (N, C, layers, Q) and the
    selected encoder tokens (N, C, Q).
    """

    @configurable
    def __init__(
        self,
        *,
        logit_of_class: List[int],
        num_logits: int,
        hidden_dim: int = 256,
        num_levels: int = 4,
        num_layers: int = 6,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dim: int = 2048,
        num_queries: int = 900,
        num_select: int = 300,
        dn_number: int = 100,
        dn_label_noise: float = 0.5,
        dn_box_noise: float = 1.0,
        match_costs: Tuple[float, float, float] = (2.0, 5.0, 2.0),
        loss_weights: Tuple[float, float, float] = (1.0, 5.0, 2.0),
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        proposal_loss_weight: float = 1.0,
        encoder_l2_weight: float = 0.0,
    ):
        """
        Args:
            logit_of_class: logit index of each of the dataset's ``thing_classes``.
            num_logits: K, outputs of the class heads (>= the classes).
            hidden_dim ... ffn_dim: transformer sizes (must match the encoder's).
            num_queries: Q, proposals selected per image (at most the number of tokens).
            num_select: (query, class) pairs returned per image at inference.
            dn_number, dn_label_noise, dn_box_noise: denoising (see ``denoising.py``).
            match_costs / loss_weights: (class, L1, GIoU).
            proposal_loss_weight: weight of the losses on the selected proposals (0 in
                Foundation X; their class head then only ranks tokens).
            encoder_l2_weight: weight of the shared encoder's sum of squares.
        """
        super().__init__()
        self.memory_proj = nn.Linear(hidden_dim, hidden_dim)
        self.proposal_proj = nn.Linear(hidden_dim, hidden_dim)
        self.proposal_norm = nn.LayerNorm(hidden_dim)
        self.decoder = DINOTransformerDecoder(
            hidden_dim, ffn_dim, num_levels, num_heads, num_points, num_layers
        )
        # Xavier for the transformer's matrices (the heads below keep their own init)
        for module in (self.memory_proj, self.proposal_proj, self.decoder):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for layer in self.decoder.layers:
            layer.cross_attn.reset_parameters()
        self.decoder.box_refine = _box_mlp(hidden_dim)
        self.proposal_class = _class_linear(hidden_dim, num_logits)
        self.proposal_box = _box_mlp(hidden_dim)
        self.class_head = _class_linear(hidden_dim, num_logits)
        self.box_head = _box_mlp(hidden_dim)
        self.register_buffer(
            "logit_of_class", torch.tensor(logit_of_class, dtype=torch.long), persistent=False
        )
        self.num_logits = num_logits
        self.num_queries = num_queries
        self.num_select = num_select
        self.dn = dict(dn_number=dn_number, label_noise=dn_label_noise, box_noise=dn_box_noise)
        matcher = HungarianMatcher(*match_costs, alpha=focal_alpha, gamma=focal_gamma)
        weights = dict(zip(("cls", "l1", "giou"), loss_weights))
        self.criterion = SetCriterion(matcher, weights, focal_alpha, focal_gamma)
        self.proposal_loss_weight = float(proposal_loss_weight)
        self.encoder_l2_weight = float(encoder_l2_weight)
        load_all_or_nothing(self)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Mapping[str, ShapeSpec], spec: Any):
        d = cfg.MODEL.FX.DINO
        num_logits, logits = class_logit_map(
            spec.key, spec.thing_classes, d.NUM_LOGITS, d.CLASS_LOGITS
        )
        if max(logits, default=0) >= d.DN_LABEL_BOOK_SIZE:
            raise ValueError(
                f"dataset {spec.key!r}: MODEL.FX.DINO.DN_LABEL_BOOK_SIZE = {d.DN_LABEL_BOOK_SIZE} "
                f"rows cannot embed its labels (logits up to {max(logits)})"
            )
        if len(input_shape) != d.NUM_FEATURE_LEVELS:
            raise ValueError(
                f"the DINO decoder of {spec.key!r} needs the DINO encoder's "
                f"{d.NUM_FEATURE_LEVELS} levels, got {list(input_shape)}"
            )
        return dict(
            logit_of_class=logits,
            num_logits=num_logits,
            hidden_dim=d.HIDDEN_DIM,
            num_levels=d.NUM_FEATURE_LEVELS,
            num_layers=d.DEC_LAYERS,
            num_heads=d.NUM_HEADS,
            num_points=d.DEC_POINTS,
            ffn_dim=d.FFN_DIM,
            num_queries=d.NUM_QUERIES,
            num_select=d.NUM_SELECT,
            dn_number=d.DN_NUMBER,
            dn_label_noise=d.DN_LABEL_NOISE,
            dn_box_noise=d.DN_BOX_NOISE,
            match_costs=(d.COST_CLASS, d.COST_L1, d.COST_GIOU),
            loss_weights=(d.LOSS_CLASS, d.LOSS_L1, d.LOSS_GIOU),
            focal_alpha=d.FOCAL_ALPHA,
            focal_gamma=d.FOCAL_GAMMA,
            proposal_loss_weight=d.PROPOSAL_LOSS_WEIGHT,
            encoder_l2_weight=d.ENCODER_L2_WEIGHT,
        )

    @classmethod
    def build_encoder(cls, cfg: CfgNode, input_shape: Mapping[str, ShapeSpec]) -> DINOEncoder:
        """The shared :class:`DINOEncoder` (``MODEL.FX.DINO.*``) over ``input_shape``."""
        d = cfg.MODEL.FX.DINO
        return DINOEncoder(
            input_shape,
            hidden_dim=d.HIDDEN_DIM,
            num_levels=d.NUM_FEATURE_LEVELS,
            num_layers=d.ENC_LAYERS,
            num_heads=d.NUM_HEADS,
            num_points=d.ENC_POINTS,
            ffn_dim=d.FFN_DIM,
            num_queries=d.NUM_QUERIES,
            label_book_size=d.DN_LABEL_BOOK_SIZE,
            pos_temperature=d.POS_TEMPERATURE,
            l2_weight=d.ENCODER_L2_WEIGHT,
        )

    # ------------------------------------------------------------------------------ running
    def run(
        self, encoded: DINOEncoded, denoising: Optional[DenoisingQueries] = None
    ) -> Dict[str, Any]:
        """Proposal selection and the decoder.

        Returns a dict with ``logits`` / ``boxes``: per layer (N, D + Q, K) and (N, D + Q, 4)
        cxcywh in [0, 1] of the valid image (denoising queries first); ``hs``: per layer
        (N, D + Q, C); ``selected``: (N, Q, C) selected tokens; ``proposal_logits`` /
        ``proposal_boxes``: (N, Q, K) / (N, Q, 4) of the selected proposals.
        """
        memory = self.memory_proj(encoded.memory)
        tokens, anchors = token_anchors(memory, encoded.padding_mask, encoded.spatial_shapes)
        tokens = self.proposal_norm(self.proposal_proj(tokens))
        scores = self.proposal_class(tokens)
        coords = self.proposal_box(tokens) + anchors  # logit space
        k = self.queries_for(memory.shape[1])
        top = scores.max(-1)[0].topk(k, dim=1)[1]
        selected_coords = _gather(coords, top)
        selected = _gather(tokens, top)
        n = memory.shape[0]
        tgt = encoded.tgt_embed[:k].unsqueeze(0).expand(n, -1, -1)
        reference = selected_coords.detach().float()
        attn_mask = None
        if denoising is not None:
            tgt = torch.cat([denoising.content.to(tgt.dtype), tgt], 1)
            reference = torch.cat([denoising.boxes, reference], 1)
            attn_mask = denoising.attn_mask
        hs, references = self.decoder(
            tgt,
            reference,
            memory,
            encoded.padding_mask,
            encoded.valid_ratios,
            encoded.spatial_shapes,
            attn_mask,
        )
        logits = [self.class_head(h) for h in hs]
        boxes = [
            (self.box_head(h) + inverse_sigmoid(r)).sigmoid() for h, r in zip(hs, references[:-1])
        ]
        return dict(
            logits=logits,
            boxes=boxes,
            hs=hs,
            selected=selected,
            proposal_logits=_gather(scores, top),
            proposal_boxes=selected_coords.sigmoid(),
        )

    def queries_for(self, num_tokens: int) -> int:
        """Queries used for an input with ``num_tokens`` encoder tokens (Q, or all tokens when
        there are fewer, e.g. small images)."""
        return min(self.num_queries, num_tokens)

    @staticmethod
    def _consistency(hs: List[torch.Tensor], selected: torch.Tensor) -> List[torch.Tensor]:
        states = torch.stack(hs, 0).permute(1, 3, 0, 2)  # (N, C, layers, Q)
        return [states, selected.transpose(1, 2)]

    def consistency_features(self, images: ImageList, encoded: DINOEncoded) -> List[torch.Tensor]:
        """The decoder states of every layer and the selected encoder tokens (no denoising)."""
        out = self.run(encoded)
        return self._consistency(out["hs"], out["selected"])

    def forward(
        self,
        images: ImageList,
        encoded: DINOEncoded,
        gt_instances: Optional[List[Instances]] = None,
    ) -> LocalizationOutput:
        """Training: losses and consistency features (``gt_instances`` required, images may have
        no box). Inference: the top ``num_select`` (query, class) pairs per image, no NMS, in
        the unpadded image's pixels."""
        if not self.training:
            return LocalizationOutput(instances=self.inference(images, encoded))
        if gt_instances is None:
            raise ValueError("the DINO decoder needs gt_instances in training")
        labels, boxes = prepare_targets(gt_instances, images.image_sizes, self.logit_of_class)
        k = self.queries_for(encoded.memory.shape[1])
        denoising = build_denoising_queries(
            labels,
            boxes,
            dn_number=self.dn["dn_number"],
            label_noise=self.dn["label_noise"],
            box_noise=self.dn["box_noise"],
            num_logits=self.num_logits,
            label_enc=encoded.label_enc,
            num_queries=k,
        )
        out = self.run(encoded, denoising)
        split = denoising.size if denoising is not None else 0
        layers = [(lg[:, split:], bx[:, split:]) for lg, bx in zip(out["logits"], out["boxes"])]
        dn_args = None
        if denoising is not None:
            dn_outputs = [
                (lg[:, :split], bx[:, :split]) for lg, bx in zip(out["logits"], out["boxes"])
            ]
            counts = [int(b.shape[0]) for b in boxes]
            dn_args = (dn_outputs, denoising.positive_indices(counts), denoising.groups)
        losses = self.criterion(
            layers,
            labels,
            boxes,
            denoising=dn_args,
            proposals=(out["proposal_logits"], out["proposal_boxes"]),
            proposal_weight=self.proposal_loss_weight,
        )
        if self.encoder_l2_weight > 0 and encoded.encoder_l2 is not None:
            losses["loss_encoder_l2"] = self.encoder_l2_weight * encoded.encoder_l2
        hs = [h[:, split:] for h in out["hs"]]
        return LocalizationOutput(losses=losses, consistency=self._consistency(hs, out["selected"]))

    def inference(self, images: ImageList, encoded: DINOEncoded) -> List[Instances]:
        """Per image an ``Instances`` of its unpadded size: ``pred_boxes`` (xyxy pixels, not
        clipped), ``scores`` (sigmoid), ``pred_classes`` (into the dataset's classes)."""
        out = self.run(encoded)
        probs = out["logits"][-1].float().sigmoid()[:, :, self.logit_of_class]  # (N, Q, n)
        num_classes = probs.shape[-1]
        flat = probs.flatten(1)
        scores, index = flat.topk(min(self.num_select, flat.shape[1]), dim=1)
        query = torch.div(index, num_classes, rounding_mode="floor")
        boxes = box_cxcywh_to_xyxy(out["boxes"][-1].float())
        results = []
        for i, (h, w) in enumerate(images.image_sizes):
            inst = Instances((h, w))
            scale = boxes.new_tensor([w, h, w, h])
            inst.pred_boxes = Boxes(boxes[i, query[i]] * scale)
            inst.scores = scores[i]
            inst.pred_classes = index[i] % num_classes
            results.append(inst)
        return results
