"""The task-branch contract: what one task (cls, loc or seg) adds to FoundationX.

A branch is a plain object (not an ``nn.Module``): the modules it builds are registered on the
FoundationX model under the branch's ``module_names`` (the state-dict prefixes ``cls_heads``,
``loc_encoder``, ``loc_decoders``, ``seg_decoder``, ``seg_heads``), and every method receives the
model it should run. The same branch therefore serves the student and its EMA teacher (a deep
copy of the student, branches included).

Building happens in two phases: ``build_shared`` (the registry-built decoders of every branch, in
task order), then ``build_heads`` (the per-dataset heads each branch builds itself). Heads are
thus drawn from the random generator after every decoder, which is the order the model has
always been initialised in (a seeded model keeps its initial weights across versions).
"""

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.structures import ImageList
from torch import nn

from ...data.catalog import DatasetSpec

__all__ = ["TaskBranch", "input_field", "detach_output"]


def input_field(x: Dict[str, Any], name: str) -> Any:
    """``x[name]`` of a mapper output, with an error naming the image and the task."""
    if name not in x:
        raise KeyError(
            f"input {x.get('image_id', x.get('file_name', '?'))} of task {x.get('task')!r} "
            f"has no {name!r} (is the FX mapper used?)"
        )
    return x[name]


def detach_output(x: Any) -> Any:
    """``x`` with every tensor detached, inside mappings, lists, tuples and dataclasses.

    A locked shared module runs under ``no_grad``, but a parameter it hands on unchanged (e.g. a
    query embedding the decoders read) would still carry gradient; detaching its whole output
    makes the lock exact.
    """
    if torch.is_tensor(x):
        return x.detach()
    if isinstance(x, Mapping):
        return {k: detach_output(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(detach_output(v) for v in x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        changes = {
            f.name: detach_output(getattr(x, f.name)) for f in dataclasses.fields(x) if f.init
        }
        return dataclasses.replace(x, **changes)
    return x


class TaskBranch:
    """One task of FoundationX.

    Class attributes:
        task: ``"cls"``, ``"loc"`` or ``"seg"``.
        module_names: model attributes this branch owns, in registration order.
        shared_names: those of ``module_names`` that every dataset shares; a lock phase runs them
            (and the backbone) frozen.

    Args:
        specs: the datasets that have this task (may be empty: the branch then builds empty
            ModuleDicts / None, so the model's attributes always exist).
    """

    task: ClassVar[str] = ""
    module_names: ClassVar[Tuple[str, ...]] = ()
    shared_names: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, specs: Sequence[DatasetSpec]):
        self.specs: "OrderedDict[str, DatasetSpec]" = OrderedDict((s.key, s) for s in specs)

    # ------------------------------------------------------------------------------ building
    def build_shared(self, cfg, backbone: nn.Module) -> Dict[str, Optional[nn.Module]]:
        """Phase 1: the modules built from this task's registry (decoders), by attribute name."""
        return {}

    def build_heads(self, cfg, backbone: nn.Module) -> Dict[str, nn.Module]:
        """Phase 2: the per-dataset heads this branch builds itself, by attribute name."""
        return {}

    def shared_modules(self, model: nn.Module) -> List[nn.Module]:
        """The model's modules named in ``shared_names`` (those that exist)."""
        found = (getattr(model, name, None) for name in self.shared_names)
        return [m for m in found if m is not None]

    # ------------------------------------------------------------------------------ running
    def shared_forward(
        self, model: nn.Module, stages: List[torch.Tensor], images: ImageList
    ) -> Any:
        """Run the shared modules on the backbone's raw stage maps (frozen under lock)."""
        raise NotImplementedError

    def losses(
        self,
        model: nn.Module,
        key: str,
        shared: Any,
        images: ImageList,
        batched_inputs: List[Dict[str, Any]],
    ) -> Tuple[Dict[str, torch.Tensor], List[torch.Tensor]]:
        """Training on one dataset: ``(losses, student consistency features)``."""
        raise NotImplementedError

    def consistency_features(
        self, model: nn.Module, key: str, shared: Any, images: ImageList
    ) -> List[torch.Tensor]:
        """The features compared between student and teacher (run on the teacher)."""
        raise NotImplementedError

    def predict(
        self,
        model: nn.Module,
        key: str,
        shared: Any,
        images: ImageList,
        idx: List[int],
        out_sizes: List[Tuple[int, int]],
    ) -> List[Dict[str, Any]]:
        """Inference for the images ``idx`` of the batch with dataset ``key``'s heads; one dict
        of output fields per image, in the original ``out_sizes[i]`` (height, width)."""
        raise NotImplementedError
