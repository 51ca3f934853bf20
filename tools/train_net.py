#!/usr/bin/env python
"""Train or evaluate Foundation X with the Lock-Release trainer.

Examples::

    # pretrain on 8 GPUs
    python tools/train_net.py --config-file configs/pretrain/fx_swin_b_224_reference.yaml \\
        --num-gpus 8 OUTPUT_DIR output/fx_pretrain
    # resume after an interruption (same stage, phase and data position)
    python tools/train_net.py --config-file ... --num-gpus 8 --resume OUTPUT_DIR output/fx_pretrain
    # evaluate a checkpoint, student and EMA teacher
    python tools/train_net.py --config-file ... --eval-only --eval-teacher \\
        MODEL.WEIGHTS output/fx_pretrain/model_final.pth

Without GPUs ``--num-gpus N`` starts N CPU processes (gloo). Started by ``torchrun`` (or any
launcher that sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT, e.g. a SLURM or
Kubernetes job), each process joins that launcher's process group instead of spawning its own::

    torchrun --nproc_per_node 8 --max-restarts 3 tools/train_net.py --config-file ... OUTPUT_DIR out

and a worker group that TorchElastic restarted resumes from the last checkpoint of OUTPUT_DIR
(``--resume`` implied). After each evaluation the overlays, metric curves and ``report.html`` in
OUTPUT_DIR are rewritten; at the end of training the results table is printed.
"""

import logging
import os
import sys
from typing import Optional, Sequence

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser
from detectron2.utils import comm

from fx_d2 import add_fx_config
from fx_d2.engine import TRAINER_REGISTRY, build_trainer, launch
from fx_d2.engine.defaults import fx_default_setup
from fx_d2.engine.env_launch import elastic_restart_count
from fx_d2.engine.report import results_table

logger = logging.getLogger("fx_d2.train_net")


def build_parser():
    """Detectron2's parser plus ``--eval-teacher`` and ``--trust-pickle``."""
    parser = default_argument_parser()
    parser.add_argument(
        "--eval-teacher",
        action="store_true",
        help="with --eval-only: also evaluate the checkpoint's EMA teacher; when training: "
        "evaluate the teacher at every evaluation (TEST.FX.EVAL_TEACHER True)",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read MODEL.WEIGHTS / checkpoints that need full unpickling (.pkl model-zoo files; "
        "MODEL.FX.TRUST_PICKLE True); this RUNS code the file names: only for trusted files",
    )
    return parser


def setup(args):
    """Config from file + opts, then loggers, config dump and seeds (fx_default_setup)."""
    cfg = get_cfg()
    add_fx_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.eval_teacher:
        cfg.TEST.FX.EVAL_TEACHER = True
    if getattr(args, "trust_pickle", False):
        cfg.MODEL.FX.TRUST_PICKLE = True
    cfg.freeze()
    fx_default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    trainer_cls = TRAINER_REGISTRY.get(cfg.SOLVER.FX.TRAINER)
    if args.eval_only:
        return trainer_cls.test(cfg, resume=args.resume, eval_teacher=args.eval_teacher)
    resume = args.resume
    restarts = elastic_restart_count()
    if restarts > 0:  # TorchElastic restarted the worker group: continue where it stopped
        logger.info("TorchElastic restart %d: resuming from the last checkpoint", restarts)
        resume = True
    trainer = build_trainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    if comm.is_main_process():
        table = results_table(cfg.OUTPUT_DIR)
        if table:
            print(f"\nFinal evaluation ({cfg.OUTPUT_DIR}/eval/final.json):\n{table}\n")
        report = os.path.join(cfg.OUTPUT_DIR, "report.html")
        if os.path.isfile(report):
            print(f"Run report (overlays, curves, timings): {report}")
    comm.synchronize()


def invoke_main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main(sys.argv[1:])
