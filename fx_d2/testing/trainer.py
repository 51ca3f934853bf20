"""In-memory synthetic datasets and a trainer using them, for trainer tests and benchmarks.

Nothing is read from disk: ``register_synthetic`` registers ``fx_<key>_{train,test}`` whose dicts
describe 64x64 images with one square "lesion" (box, polygon mask, class label); the
``SyntheticMapper`` draws each image from its ``image_id`` and applies a random brightness jitter
drawn from NumPy's global RNG (so tests see whether the trainer controls augmentation randomness).
File names listed as unreadable make the mapper return None, like FXDatasetMapper does for a
corrupt file. ``SyntheticLockReleaseTrainer`` (``SOLVER.FX.TRAINER``) uses that mapper.
"""

import hashlib
import os
import signal
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils import comm

from fx_d2.data.catalog import dataset_name
from fx_d2.engine.env_launch import elastic_restart_count
from fx_d2.engine.registry import TRAINER_REGISTRY
from fx_d2.engine.trainer import LockReleaseTrainer

from . import toy_model  # noqa: F401  registers FXToyModel
from .scripts import load_script

__all__ = [
    "TOY_CONFIG",
    "toy_cfg",
    "register_synthetic",
    "SyntheticMapper",
    "SyntheticLockReleaseTrainer",
    "UNREADABLE",
    "run_train_net",
    "ddp_check_main",
]

# shipped as package data (fx_d2/testing/configs), so it works from a wheel install too
TOY_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "trainer_toy.yaml")

# file names the SyntheticMapper refuses (like an unreadable file on disk)
UNREADABLE: set = set()
SIZE = 64


def toy_cfg(opts: Sequence[Any] = (), config_file: str = TOY_CONFIG):
    """``get_cfg()`` + ``add_fx_config`` + the toy trainer config (``TOY_CONFIG``) + ``opts``."""
    from detectron2.config import get_cfg

    from fx_d2.config import add_fx_config

    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


def _lesion_box(image_id: str, size: int = SIZE) -> List[float]:
    h = int(hashlib.md5(image_id.encode()).hexdigest()[:8], 16)
    side = (12 + h % 16) * size // SIZE
    x0, y0 = 4 + (h >> 5) % (size - side - 8), 4 + (h >> 11) % (size - side - 8)
    return [float(x0), float(y0), float(x0 + side), float(y0 + side)]


def _synthetic_dicts(key: str, split: str, count: int, size: int = SIZE) -> List[Dict[str, Any]]:
    dicts = []
    for i in range(count):
        image_id = f"{key}/{split}/{i}"
        positive = i % 2 == 0
        box = _lesion_box(image_id, size)
        x0, y0, x1, y1 = box
        annotations = []
        if positive:
            annotations.append(
                dict(bbox=box, bbox_mode=BoxMode.XYXY_ABS, category_id=0, iscrowd=0,
                     segmentation=[[x0, y0, x1, y0, x1, y1, x0, y1]])  # fmt: skip
            )
        dicts.append(
            dict(file_name=f"synthetic://{image_id}.png", height=size, width=size,
                 image_id=image_id, dataset_name=key,
                 cls_labels=[1.0 if positive else 0.0, float(i % 3 == 0)],
                 annotations=annotations)  # fmt: skip
        )
    return dicts


def register_synthetic(
    key: str,
    tasks: Sequence[str] = ("cls", "loc", "seg"),
    train: int = 16,
    test: int = 0,
    size: int = SIZE,
) -> None:
    """Register ``fx_<key>_train`` (``train`` images of ``size`` x ``size``) and, when ``test`` >
    0, ``fx_<key>_test`` (re-registering replaces an earlier registration)."""
    for split, count in (("train", train), ("test", test)):
        name = dataset_name(key, split)
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        if count <= 0:
            continue
        DatasetCatalog.register(
            name, lambda k=key, s=split, n=count: _synthetic_dicts(k, s, n, size)
        )
        MetadataCatalog.get(name).set(
            dataset_key=key,
            split=split,
            tasks=list(tasks),
            cls_classes=["lesion", "third"],
            thing_classes=["lesion"],
            seg_classes=["lesion"],
        )


class SyntheticMapper:
    """Dict of :func:`register_synthetic` -> model input (docs/datasets.md, "Mapper output")."""

    def __init__(self, is_train: bool, task: Optional[str] = None):
        self.is_train = is_train
        self.task = task

    def __call__(self, d: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if d["file_name"] in UNREADABLE:
            return None
        seed = int(hashlib.md5(d["image_id"].encode()).hexdigest()[:8], 16)
        gen = torch.Generator().manual_seed(seed)
        h, w = int(d["height"]), int(d["width"])
        image = 60.0 + 20.0 * torch.rand(h, w, generator=gen)
        mask = torch.zeros(h, w)
        for ann in d["annotations"]:
            x0, y0, x1, y1 = (int(v) for v in ann["bbox"])
            mask[y0:y1, x0:x1] = 1.0
        image = image + 120.0 * mask
        if self.is_train:  # augmentation from the global RNG
            image = image * float(np.random.uniform(0.9, 1.1))
        tasks = [self.task] if self.task else ["cls", "loc", "seg"]
        out: Dict[str, Any] = dict(
            file_name=d["file_name"], image_id=d["image_id"], height=h, width=w,
            dataset_name=d["dataset_name"], task=tasks[0],
            image=image.clamp(0, 255).expand(3, -1, -1).contiguous(),
            cls_labels=list(d["cls_labels"]),
            cls_target=torch.tensor(d["cls_labels"], dtype=torch.float32),
            cls_weight=torch.ones(len(d["cls_labels"])),
        )  # fmt: skip
        if "loc" in tasks:
            inst = Instances((h, w))
            boxes = [a["bbox"] for a in d["annotations"]]
            inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
            inst.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
            out["instances"] = inst
        if "seg" in tasks:
            out["sem_seg"] = mask[None].clone()
        return out


@TRAINER_REGISTRY.register()
class SyntheticLockReleaseTrainer(LockReleaseTrainer):
    """LockReleaseTrainer on :func:`register_synthetic` data (tests and benchmarks).

    Environment (test hooks):

    * ``FX_TEST_SIGKILL_AFTER=N`` kills the process with SIGKILL after iteration N (after that
      iteration's hooks), to test resuming after a crash; only on a first attempt (not in a
      worker group TorchElastic restarted), and with ``FX_TEST_SIGKILL_RANK=r`` only on rank r.
    * ``FX_TEST_RECORD_DIR=dir`` writes ``dir/rank<r>.pt`` at the end of training: the phase of
      every iteration run, lock checks, student parameters, world size, restart count.
    """

    @classmethod
    def build_train_mapper(cls, cfg, dataset: str, task: str):
        return SyntheticMapper(True, task)

    @classmethod
    def build_test_mapper(cls, cfg):
        return SyntheticMapper(False)

    def build_hooks(self):
        ret = super().build_hooks()
        kill_after = os.environ.get("FX_TEST_SIGKILL_AFTER")
        kill_rank = os.environ.get("FX_TEST_SIGKILL_RANK")
        if (
            kill_after
            and elastic_restart_count() == 0
            and (kill_rank is None or int(kill_rank) == comm.get_rank())
        ):
            ret.append(_KillHook(int(kill_after)))
        if os.environ.get("FX_TEST_RECORD_DIR"):
            ret.append(_RankRecorder(os.environ["FX_TEST_RECORD_DIR"]))
        return ret


class _KillHook(HookBase):
    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def run_train_net(
    argv: Sequence[str],
    synthetic: Sequence[str] = ("synth",),
    test_images: int = 0,
    train_net: str = os.path.join("tools", "train_net.py"),
) -> None:
    """Run the checkout's ``tools/train_net.py`` (``train_net``, relative to the working
    directory) with ``argv`` after registering synthetic datasets ``synthetic`` (each with all
    tasks, 16 train images and ``test_images`` test images)."""
    for key in synthetic:
        register_synthetic(key, test=test_images)
    module = load_script(os.path.abspath(train_net), "fx_train_net")
    module.invoke_main(list(argv))


class _PhaseRecorder(HookBase):
    """Records the phase of every iteration and whether the locked modules stayed unchanged
    through each lock phase (and whether the stage's head changed)."""

    def __init__(self):
        self.phases: List[tuple] = []
        self.lock_checks: List[Dict[str, Any]] = []
        self._snapshot: Optional[Dict[str, torch.Tensor]] = None

    def _params(self, prefixes) -> Dict[str, torch.Tensor]:
        student = self.trainer.student
        return {
            n: p.detach().clone() for n, p in student.named_parameters() if n.startswith(prefixes)
        }

    def before_step(self):
        p = self.trainer.phase
        self.phases.append((self.trainer.iter, p.cycle, p.stage_index, p.dataset, p.task, p.locked))
        if p.locked and p.iter_in_phase == 0:
            shared = ("backbone.", "loc_encoder.") if p.task == "loc" else ("backbone.",)
            self._snapshot = self._params(shared)
            self._head = self._params(("cls_heads.", "loc_decoders.", "seg_heads."))

    def after_step(self):
        p = self.trainer.phase
        if p.locked and self.trainer.iter == p.phase_end - 1:
            now = self._params(tuple({n.split(".")[0] + "." for n in self._snapshot}))
            heads = self._params(("cls_heads.", "loc_decoders.", "seg_heads."))
            self.lock_checks.append(dict(
                task=p.task,
                shared_unchanged=all(torch.equal(now[n], v) for n, v in self._snapshot.items()),
                head_changed=any(not torch.equal(heads[n], v) for n, v in self._head.items()),
            ))  # fmt: skip


class _RankRecorder(_PhaseRecorder):
    """A :class:`_PhaseRecorder` that saves its record per rank at the end of training."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir

    def after_train(self):
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save(
            dict(
                phases=self.phases,
                lock_checks=self.lock_checks,
                params={n: p.detach() for n, p in self.trainer.student.named_parameters()},
                world_size=comm.get_world_size(),
                local_rank=comm.get_local_rank(),
                restart_count=elastic_restart_count(),
                completed=self.trainer.iter >= self.trainer.max_iter,
            ),
            os.path.join(self.out_dir, f"rank{comm.get_rank()}.pt"),
        )


def ddp_check_main(out_dir: str, opts: Sequence[Any] = ()) -> None:
    """Train the toy config in each process of a ``launch`` and save, per rank,
    ``rank<r>.pt``: phases per iteration, lock checks, student parameters, teacher state."""
    register_synthetic("synth")
    cfg = toy_cfg(list(opts) + ["OUTPUT_DIR", out_dir])
    trainer = SyntheticLockReleaseTrainer(cfg)
    trainer.resume_or_load(resume=False)
    recorder = _PhaseRecorder()
    trainer.register_hooks([recorder])
    trainer.train()
    torch.save(
        dict(
            phases=recorder.phases,
            lock_checks=recorder.lock_checks,
            params={n: p.detach() for n, p in trainer.student.named_parameters()},
            teacher=trainer.teacher.state_dict(),
            world_size=comm.get_world_size(),
        ),
        os.path.join(out_dir, f"rank{comm.get_rank()}.pt"),
    )
