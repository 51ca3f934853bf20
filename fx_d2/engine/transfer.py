"""The transfer experiment: fine-tune a pretrained FoundationX on target datasets with N training
images, head-only and full, next to the same model trained from scratch (a data-efficiency
table, as in the second half of the Foundation X paper).

A run is one config: a target config (its ``_BASE_`` chain sets the model, data and the
iteration budget as each task's ``RELEASE_LENGTH``), then a mode config, then ``FEW_SHOT_N`` and
``MODEL.WEIGHTS``. Modes:

- ``scratch``: random initialisation, every part trains (release phases);
- ``head``: pretrained weights, lock phases only (the budget moves from ``RELEASE_LENGTH`` to
  ``LOCK_LENGTH``): the trunk and the shared decoders stay frozen, the target's own head learns;
- ``full``: pretrained weights, release phases: everything learns.

Results are the student's headline metrics on the target's test (else val) split:
``{target: {"<mode>@N=<n>": {"Dice": .., "mAP40": ..}}}`` with ``n`` a number or ``all``.
"""

import json
import logging
import os
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from fx_d2.evaluation import eval_json_path, read_results_json
from fx_d2.evaluation.results import HEADLINE_METRICS

__all__ = [
    "MODES",
    "run_key",
    "transfer_config",
    "run_finetune",
    "run_transfer",
    "format_transfer_table",
]

logger = logging.getLogger(__name__)
MODES = ("scratch", "head", "full")
Results = Dict[str, Dict[str, Dict[str, float]]]


def run_key(mode: str, n: int) -> str:
    """``"full@N=2"``; ``n <= 0`` (all training images) is ``"full@N=all"``."""
    return f"{mode}@N={n if n > 0 else 'all'}"


def transfer_config(
    target_config: str,
    mode_config: str,
    mode: str,
    n: int,
    weights: str,
    output_dir: str,
    opts: Sequence[Any] = (),
):
    """The frozen config of one run (see the module docstring).

    Args:
        target_config / mode_config: YAML files merged in this order.
        mode: ``scratch`` (``weights`` ignored), ``head`` or ``full``.
        n: ``SOLVER.FX.FEW_SHOT_N`` (0 = all images).
        opts: extra ``KEY VALUE`` overrides, merged after the mode config and before the
            ``head`` mode moves the release budget into the lock phases.
    """
    from detectron2.config import get_cfg

    from fx_d2.config import add_fx_config, per_task

    if mode not in MODES:
        raise ValueError(f"unknown transfer mode {mode!r}; expected one of {MODES}")
    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(target_config)
    cfg.merge_from_file(mode_config)
    cfg.merge_from_list(["SOLVER.FX.FEW_SHOT_N", int(n), "OUTPUT_DIR", output_dir])
    cfg.MODEL.WEIGHTS = "" if mode == "scratch" else weights
    # overrides first, so that a budget given there moves into the lock phases of "head" too
    cfg.merge_from_list(list(opts))
    if mode == "head":  # the same budget as lock phases: only the target's head learns
        for node in per_task(cfg.SOLVER.LOCK_RELEASE).values():
            node.LOCK_LENGTH, node.RELEASE_LENGTH = node.LOCK_LENGTH + node.RELEASE_LENGTH, 0.0
    cfg.freeze()
    return cfg


def _headline(output_dir: str) -> Dict[str, float]:
    """Headline metrics of the student in ``eval/final.json``: ``{"Dice": .., "mAP40": ..}``
    (one target per run: the mean over its test sets)."""
    flat = read_results_json(eval_json_path(output_dir, None))["results"]["student"]
    out: Dict[str, List[float]] = OrderedDict()
    for key, value in flat.items():
        task, _, metric = key.split("/", 2)
        if HEADLINE_METRICS.get(task) == metric and value is not None and value == value:
            out.setdefault(metric, []).append(float(value))
    return OrderedDict((m, sum(v) / len(v)) for m, v in out.items())


def run_finetune(cfg, trainer_cls=None, keep_checkpoints: bool = False) -> Dict[str, float]:
    """Train one run in this process and return its headline metrics (checkpoints removed
    unless ``keep_checkpoints``). Every RNG is seeded from ``cfg.SEED`` first, as
    ``tools/train_net.py`` does: the new heads start alike in every mode and a rerun repeats."""
    from detectron2.utils.env import seed_all_rng

    if trainer_cls is None:
        from .trainer import LockReleaseTrainer as trainer_cls
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    if not keep_checkpoints:
        for name in os.listdir(cfg.OUTPUT_DIR):
            if name.endswith(".pth") or name == "last_checkpoint":
                os.remove(os.path.join(cfg.OUTPUT_DIR, name))
    return _headline(cfg.OUTPUT_DIR)


def _worker_init(threads: int, level: int) -> None:
    import torch

    import fx_d2  # noqa: F401  registers the datasets in the worker

    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(message)s")
    logging.getLogger("fx_d2").setLevel(level)
    logging.getLogger("d2").setLevel(level)
    logging.getLogger("fvcore").setLevel(level)
    # expected in every transfer run, and long: the pretraining's heads the target does not use,
    # the target's new heads, SOLVER.STEPS beyond a short run
    logging.getLogger("fvcore.common.checkpoint").setLevel(max(level, logging.ERROR))
    logging.getLogger("detectron2.solver.build").setLevel(max(level, logging.ERROR))


def _run_job(job: Tuple) -> Tuple[str, str, Dict[str, float], float]:
    target, key, args, keep, trainer_path = job
    trainer_cls = None
    if trainer_path:
        module, _, name = trainer_path.rpartition(".")
        trainer_cls = getattr(__import__(module, fromlist=[name]), name)
    start = time.perf_counter()
    metrics = run_finetune(transfer_config(*args), trainer_cls, keep)
    return target, key, metrics, time.perf_counter() - start


def run_transfer(
    targets: Mapping[str, str],
    modes: Mapping[str, str],
    shots: Sequence[int],
    weights: str,
    output_dir: str,
    jobs: int = 1,
    threads: Optional[int] = None,
    opts: Sequence[Any] = (),
    trainer: str = "",
    keep_checkpoints: bool = False,
    on_result: Optional[Callable[[str, str, Dict[str, float], float], None]] = None,
) -> Tuple[Results, Dict[str, float]]:
    """Every target x N x mode run; ``jobs`` runs at a time in worker processes.

    Args:
        targets: target name -> target config file.
        modes: mode (of :data:`MODES`) -> mode config file.
        shots: training images per run (0 = all).
        weights: the pretrained checkpoint (plain weights, e.g. ``model_teacher_final.pth``).
        output_dir: runs go to ``<output_dir>/<target>/<mode>@N=<n>/``.
        threads: torch threads per worker (default: the machine's cores / jobs).
        trainer: ``"module.Class"`` of the trainer (default LockReleaseTrainer).
        on_result: called as each run finishes: ``(target, key, metrics, seconds)``.

    Returns:
        ``(results, seconds per run key "<target>/<key>")``.
    """
    if not os.path.isfile(weights) and any(m != "scratch" for m in modes):
        raise FileNotFoundError(f"pretrained weights {weights!r} not found (run `make demo`)")
    work = []
    for target, config in targets.items():
        for n in shots:
            for mode, mode_config in modes.items():
                folder = os.path.join(output_dir, target, run_key(mode, n))
                args = (config, mode_config, mode, n, weights, folder, tuple(opts))
                work.append((target, run_key(mode, n), args, keep_checkpoints, trainer))
    results: Results = OrderedDict((t, OrderedDict()) for t in targets)
    seconds: Dict[str, float] = OrderedDict()

    def collect(target: str, key: str, metrics: Dict[str, float], elapsed: float) -> None:
        results[target][key] = metrics
        seconds[f"{target}/{key}"] = elapsed
        if on_result is not None:
            on_result(target, key, metrics, elapsed)

    if jobs <= 1:  # in this process (also sees datasets registered here, e.g. by tests)
        if threads:
            import torch

            torch.set_num_threads(threads)
        for job in work:
            collect(*_run_job(job))
    else:
        import multiprocessing

        threads = threads or max(1, (os.cpu_count() or 1) // jobs)
        level = logging.getLogger("fx_d2").getEffectiveLevel()
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded torch
            initializer=_worker_init,
            initargs=(threads, level),
        ) as pool:
            for future in as_completed([pool.submit(_run_job, job) for job in work]):
                collect(*future.result())
    # the table's order: N, then mode, whatever order the runs finished in
    order = [run_key(m, n) for n in shots for m in modes]
    results = OrderedDict(
        (t, OrderedDict((k, r[k]) for k in order if k in r)) for t, r in results.items()
    )
    return results, seconds


def format_transfer_table(results: Results, modes: Sequence[str] = MODES) -> str:
    """A Markdown table: one row per target, metric and N; one column per mode; the last
    column is pretrained full minus scratch."""
    lines = []
    header = ["target", "metric", "N"] + list(modes)
    if "scratch" in modes and "full" in modes:
        header.append("full - scratch")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(":---" if i < 3 else "---:" for i in range(len(header))) + "|")
    for target, runs in results.items():
        metrics = list(OrderedDict.fromkeys(m for r in runs.values() for m in r))
        shots = list(OrderedDict.fromkeys(k.split("@N=")[1] for k in runs))
        for metric in metrics:
            for n in shots:
                values = [runs.get(f"{mode}@N={n}", {}).get(metric) for mode in modes]
                row = [target, metric, n] + ["–" if v is None else f"{v:.1f}" for v in values]
                if len(header) > len(row):
                    full = runs.get(f"full@N={n}", {}).get(metric)
                    scratch = runs.get(f"scratch@N={n}", {}).get(metric)
                    # "or 0.0": a difference that rounds to -0.0 prints as +0.0
                    diff = None if None in (full, scratch) else round(full - scratch, 1) or 0.0
                    row.append("–" if diff is None else f"{diff:+.1f}")
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_transfer_json(results: Results, path: str) -> str:
    """``results`` as JSON (``{target: {"<mode>@N=<n>": {metric: value}}}``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    return path
