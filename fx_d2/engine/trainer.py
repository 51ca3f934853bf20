"""LockReleaseTrainer: cyclic multi-dataset, multi-task training of FoundationX with an EMA teacher.

Built on Detectron2's ``TrainerBase`` with our own ``run_step`` (design follows DefaultTrainer and
unbiased-teacher's rewritten ``__init__``; re-implemented). Per iteration: the schedule says which
(dataset, task) trains and whether it is locked (pure function of the iteration, identical on every
rank); the batch comes from that stage's resumable stream (train_data.py); the model returns
already-weighted losses whose sum is minimised; a non-finite loss stops training before the
optimizer step, naming the stage.
"""

import logging
import os
import weakref
from typing import Any, Dict, List, Optional, Tuple

import torch
from detectron2.data import DatasetFromList
from detectron2.engine import TrainerBase, hooks
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.events import JSONWriter, TensorboardXWriter
from torch.nn.parallel import DistributedDataParallel

from fx_d2.checkpoint.fx_checkpointer import FXCheckpointer
from fx_d2.config import per_task
from fx_d2.data.catalog import TASKS, dataset_name, load_dataset_dicts
from fx_d2.modeling.teacher import EMATeacher, unwrap_model

from .accelerate import prepare_training_model
from .evaluate import FXEvaluationRunner, eval_datasets
from .hooks import CycleEvalHook, EMAHook, FXCheckpointHook, LockReleaseHook
from .optimizer import build_fx_optimizer
from .preflight import check_datasets, validate_config
from .progress import ProgressHook, TrainingProgress, phase_label
from .registry import TRAINER_REGISTRY
from .rng import preserved_rng, restore_rng_state
from .schedule import (
    LockReleaseSchedule,
    Phase,
    default_stages,
    epoch_iterations,
    parse_stages,
)
from .train_data import (
    FXTrainStream,
    build_stream_loader,
    few_shot_subset,
    stage_dicts,
    stream_seed,
)
from .train_step import TrainStepMixin
from .trainer_eval import TrainerEvalMixin
from .trainer_state import ResumableStateMixin
from .writers import FXMetricPrinter

__all__ = ["LockReleaseTrainer"]

logger = logging.getLogger(__name__)
Stage = Tuple[str, str]


@TRAINER_REGISTRY.register()
class LockReleaseTrainer(TrainStepMixin, ResumableStateMixin, TrainerEvalMixin, TrainerBase):
    """Lock-Release trainer (docs/lock_release.md).

    Attributes:
        model: the student (DDP-wrapped when distributed); ``student`` is the unwrapped module.
        teacher: the EMATeacher (None when ``SOLVER.FX.EMA_ENABLED`` is off).
        schedule: the LockReleaseSchedule; ``phase`` the current Phase.
        optimizer, scheduler, checkpointer, max_iter.
    """

    def __init__(self, cfg):
        super().__init__()
        validate_config(cfg)  # preflight: a bad value fails here, in seconds, with its key named
        self.cfg = cfg
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        student = self.build_model(cfg)
        # Built before anything is locked: every parameter is in the optimizer.
        self.optimizer = self.build_optimizer(cfg, student)
        self.stages = self.build_stages(cfg, student)
        self._dataset_dicts: Dict[str, List[Dict[str, Any]]] = {}
        self._stage_data: Dict[Stage, DatasetFromList] = {}
        self.schedule = self.build_schedule(cfg)
        logger.info(self.schedule.describe())
        cycles = cfg.SOLVER.LOCK_RELEASE.CYCLES
        self.max_iter = self.schedule.total_length if cycles > 0 else cfg.SOLVER.MAX_ITER
        if self.max_iter <= 0:
            raise ValueError("nothing to train: set SOLVER.LOCK_RELEASE.CYCLES or SOLVER.MAX_ITER")
        self.scheduler = self.build_lr_scheduler(cfg, self.optimizer, self.max_iter)
        self.model = self._wrap_ddp(student)
        # After DDP wrapping, so every rank copies the same (broadcast) weights.
        self.teacher = EMATeacher(student) if cfg.SOLVER.FX.EMA_ENABLED else None
        if hasattr(student, "attach_teacher"):
            student.attach_teacher(self.teacher)
        self._setup_amp(cfg)
        checkpointables: Dict[str, Any] = dict(
            trainer=weakref.proxy(self), optimizer=self.optimizer, scheduler=self.scheduler
        )
        if self.teacher is not None:
            checkpointables["ema_teacher"] = self.teacher
        if self.grad_scaler is not None:
            checkpointables["grad_scaler"] = self.grad_scaler
        self.checkpointer = FXCheckpointer(
            student,
            cfg.OUTPUT_DIR,
            keep_last=cfg.SOLVER.FX.KEEP_LAST,
            trust_pickle=cfg.MODEL.FX.TRUST_PICKLE,
            **checkpointables,
        )
        self.evaluation = FXEvaluationRunner(
            cfg,
            eval_datasets(cfg, self.stages),
            self.build_test_mapper,
            num_samples=cfg.SOLVER.FX.NUM_OVERLAYS if comm.is_main_process() else 0,
        )
        self.progress = TrainingProgress(
            self.schedule,
            self.max_iter,
            eval_period=self.eval_period(),
            has_eval=bool(self.evaluation.datasets),
            batch_size=cfg.SOLVER.IMS_PER_BATCH,
        )
        # the ETA estimates the first evaluation from the test-set sizes
        self.progress.eval_images = lambda: (
            self.evaluation.num_images() * len(self.eval_models()) // comm.get_world_size()
        )
        self.data_seed = cfg.SEED if cfg.SEED >= 0 else int(comm.shared_random_seed())
        self.skipped_images = 0
        self.phase: Optional[Phase] = None
        self.completed = False
        self.last_eval_seconds: Optional[float] = None
        self._stream: Optional[Stage] = None
        self._data_iter = None
        self._stream_offsets: Dict[str, int] = {}
        self._rng_states: Optional[List[Dict[str, Any]]] = None
        self._pending_rng: Optional[Dict[str, Any]] = None
        self.register_hooks(self.build_hooks())
        # preflight: every stage's data and every test set is read now, not when it is needed;
        # the test sets into the evaluation runner's cache (read once per run)
        check_datasets(
            self.stages,
            self.stage_data,
            self.evaluation.datasets,
            cfg.DATASETS.FX.STRICT,
            test_data=self.evaluation.dataset_dicts,
        )

    # ------------------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        """Detectron2 ``build_model`` (META_ARCH_REGISTRY) with the speed options of
        :func:`prepare_training_model` (channels-last on CUDA, ``MODEL.FX.COMPILE``), logged."""
        model = prepare_training_model(build_model(cfg), cfg)
        count = sum(p.numel() for p in model.parameters())
        logger.info("Model %s: %.2fM parameters", type(model).__name__, count / 1e6)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model) -> torch.optim.Optimizer:
        return build_fx_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer, max_iter: int):
        """Detectron2's warmup + multi-step/cosine scheduler over ``max_iter`` iterations."""
        cfg = cfg.clone()
        cfg.defrost()
        cfg.SOLVER.MAX_ITER = int(max_iter)
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_stages(cls, cfg, model) -> List[Stage]:
        """Stages from ``SOLVER.LOCK_RELEASE.STAGES``, else the reference order (schedule.py)."""
        model = unwrap_model(model)
        datasets = list(cfg.MODEL.FX.DATASETS)
        if hasattr(model, "tasks_of"):
            tasks_of = {k: tuple(model.tasks_of(k)) for k in datasets}
        else:
            tasks_of = {k: TASKS for k in datasets}
        if not cfg.SOLVER.LOCK_RELEASE.STAGES:
            return default_stages(datasets, tasks_of)
        stages = parse_stages(cfg.SOLVER.LOCK_RELEASE.STAGES)
        for key, task in stages:
            if task not in tasks_of.get(key, ()):
                raise ValueError(
                    f"SOLVER.LOCK_RELEASE.STAGES has {key}:{task} but the model has no {task} head "
                    f"for {key!r} (MODEL.FX.DATASETS {datasets}, tasks {tasks_of.get(key)})"
                )
        return stages

    @classmethod
    def build_train_mapper(cls, cfg, dataset: str, task: str):
        """Mapper of a training stream (FXDatasetMapper for ``task``)."""
        from fx_d2.data.mapper import FXDatasetMapper

        return FXDatasetMapper(cfg, is_train=True, task=task)

    @classmethod
    def build_test_mapper(cls, cfg):
        """Mapper of the test sets (all tasks of each dict's dataset)."""
        from fx_d2.data.mapper import FXDatasetMapper

        return FXDatasetMapper(cfg, is_train=False)

    def build_schedule(self, cfg) -> LockReleaseSchedule:
        lr = cfg.SOLVER.LOCK_RELEASE
        nodes = per_task(lr)
        lock = {t: node.LOCK_LENGTH for t, node in nodes.items()}
        release = {t: node.RELEASE_LENGTH for t, node in nodes.items()}
        final = {t: node.FINAL_LOCK_LENGTH for t, node in nodes.items()}
        epoch_iters = None
        if lr.UNIT == "epochs":
            batch = cfg.SOLVER.IMS_PER_BATCH
            epoch_iters = {
                s: epoch_iterations(len(self.stage_data(*s)), batch) for s in self.stages
            }
        return LockReleaseSchedule.from_lengths(
            self.stages,
            lock,
            release,
            lr.UNIT,
            epoch_iters,
            cycles=lr.CYCLES,
            final_lock_length=final,
        )

    def stage_data(self, dataset: str, task: str) -> DatasetFromList:
        """Training data of a stage, serialised once: ``fx_<key>_<SOLVER.FX.TRAIN_SPLIT>``,
        few-shot subset (same images for every task of the key), task filter."""
        stage = (dataset, task)
        if stage not in self._stage_data:
            name = dataset_name(dataset, self.cfg.SOLVER.FX.TRAIN_SPLIT)
            if dataset not in self._dataset_dicts:
                dicts = load_dataset_dicts(name, strict=self.cfg.DATASETS.FX.STRICT)
                n = self.cfg.SOLVER.FX.FEW_SHOT_N
                if n > 0:
                    dicts = few_shot_subset(dicts, n, self.cfg.SEED if self.cfg.SEED >= 0 else 0)
                    logger.info("Few-shot: %s uses %d images", name, len(dicts))
                self._dataset_dicts[dataset] = dicts
            selected = stage_dicts(self._dataset_dicts[dataset], task, name)
            self._stage_data[stage] = DatasetFromList(selected, copy=True, serialize=True)
            if all(s in self._stage_data for s in self.stages if s[0] == dataset):
                del self._dataset_dicts[dataset]  # every stage of the key is serialised
        return self._stage_data[stage]

    def _wrap_ddp(self, model):
        if comm.get_world_size() == 1:
            return model
        device = next(model.parameters()).device
        # Only one head trains per step: unused parameters are normal. Buffers stay per rank.
        return DistributedDataParallel(
            model,
            device_ids=[comm.get_local_rank()] if device.type == "cuda" else None,
            broadcast_buffers=False,
            find_unused_parameters=True,
        )

    def build_hooks(self) -> List[hooks.HookBase]:
        """IterationTimer, LockRelease, LR scheduler, EMA, checkpoints, per-cycle eval, writers."""
        cfg = self.cfg
        ret: List[Optional[hooks.HookBase]] = [
            hooks.IterationTimer(),
            LockReleaseHook(self.schedule),
            hooks.LRScheduler(self.optimizer, self.scheduler),
        ]
        if self.teacher is not None:
            ret.append(
                EMAHook(
                    self.update_teacher,
                    cfg.SOLVER.FX.EMA_MOMENTUM,
                    self.schedule,
                    cfg.SOLVER.FX.EMA_PERIOD,
                )
            )
        ret.append(FXCheckpointHook(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, self.max_iter))
        if self.evaluation.datasets:
            ret.append(CycleEvalHook(self.eval_period(), self._evaluate_in_training))
        ret.append(ProgressHook(self.progress))  # after the evaluation hook: it excludes eval time
        if comm.is_main_process():
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=cfg.SOLVER.FX.LOG_PERIOD))
        return ret

    def build_writers(self):
        out = self.cfg.OUTPUT_DIR
        return [
            FXMetricPrinter(self.progress),
            JSONWriter(os.path.join(out, "metrics.json")),
            TensorboardXWriter(out),
        ]

    def eval_period(self) -> int:
        """``TEST.EVAL_PERIOD`` when > 0, else ``EVAL_EVERY_CYCLES`` cycles (0: only at the end)."""
        if self.cfg.TEST.EVAL_PERIOD > 0:
            return self.cfg.TEST.EVAL_PERIOD
        return self.cfg.SOLVER.LOCK_RELEASE.EVAL_EVERY_CYCLES * self.schedule.cycle_length

    # ------------------------------------------------------------------------------ state
    @property
    def student(self) -> torch.nn.Module:
        return unwrap_model(self.model)

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from the last checkpoint of ``OUTPUT_DIR`` (``resume``) or load
        ``MODEL.WEIGHTS`` into the student; a teacher not restored starts as a student copy."""
        loaded = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        resumed = resume and self.checkpointer.has_checkpoint()
        if resumed:
            self.start_iter = int(loaded.get("iteration", self.iter)) + 1
        teacher_restored = resumed and "ema_teacher" in self.checkpointer.last_loaded_keys
        if self.teacher is not None:
            if not teacher_restored:
                self.teacher.update(self.student, 0.0)
            self._sync_teacher()

    def _sync_teacher(self) -> None:
        """Broadcast the teacher from rank 0 (identical teachers whatever each rank loaded)."""
        if comm.get_world_size() > 1 and self.teacher is not None:
            for tensor in self.teacher.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)

    def update_teacher(self, momentum: float) -> None:
        """EMA step; in DDP float buffers (e.g. BN statistics, per rank) are averaged so every
        rank keeps the same teacher."""
        self.teacher.update(self.student, momentum)
        if comm.get_world_size() > 1:
            buffers = [b for b in self.teacher.module.buffers() if b.is_floating_point()]
            for buffer in buffers:
                torch.distributed.all_reduce(buffer)
                buffer.div_(comm.get_world_size())

    # ------------------------------------------------------------------------------ loop
    def train(self) -> None:
        """Train from ``start_iter`` to ``max_iter``; afterwards also write
        ``model_teacher_final.pth`` (the teacher as plain model weights)."""
        super().train(self.start_iter, self.max_iter)
        if self.completed and self.teacher is not None:
            self.checkpointer.save_weights("model_teacher_final", self.teacher.state_dict())

    def before_train(self) -> None:
        self.completed = False
        super().before_train()
        if self._pending_rng is not None:
            restore_rng_state(self._pending_rng)
            self._pending_rng = None

    def after_train(self) -> None:
        # After the loop TrainerBase sets iter = max_iter; an exception leaves it below.
        self.completed = self.iter >= self.max_iter
        self._data_iter = None
        super().after_train()

    def enter_phase(self, phase: Phase) -> None:
        """Switch to ``phase``: lock state, data stream (restarted at its position), logging."""
        self.phase = phase
        self.student.set_locked(phase.locked)
        stream = (phase.dataset, phase.task)
        if stream != self._stream:
            self._data_iter = None  # stops the previous stream's workers
            start = self.stream_position(self.iter, *stream)
            loader = self.build_train_loader(stream, start)
            with preserved_rng():  # DataLoader start-up draws a seed from torch's RNG
                self._data_iter = iter(loader)
            self._stream = stream
            logger.info("Data stream %s:%s from batch %d", stream[0], stream[1], start)
        logger.info(
            "Phase: %s [%d, %d)",
            phase_label(phase, self.schedule),
            phase.phase_start,
            phase.phase_end,
        )
        storage = self.storage
        storage.put_scalar("phase/stage", phase.stage_index, smoothing_hint=False)
        storage.put_scalar("phase/locked", float(phase.locked), smoothing_hint=False)
        storage.put_scalar("phase/cycle", phase.cycle, smoothing_hint=False)

    def build_train_loader(self, stream: Stage, start_batch: int):
        dataset, task = stream
        data = FXTrainStream(
            self.stage_data(dataset, task),
            self.build_train_mapper(self.cfg, dataset, task),
            total_batch_size=self.cfg.SOLVER.IMS_PER_BATCH,
            seed=stream_seed(self.data_seed, dataset, task),
            start_batch=start_batch,
            name=f"{dataset}:{task}",
        )
        return build_stream_loader(data, self.cfg.DATALOADER.NUM_WORKERS)
