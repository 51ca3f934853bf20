#!/usr/bin/env python
"""The transfer experiment on the demo (``make demo-finetune``, after ``make demo``).

Fine-tunes the demo's pretrained model on the demo data's fine-tuning targets (JSRT lungs /
heart / clavicles, Montgomery lungs, VinDr-RibCXR ribs, VinDr organs from CheXmask: loc + seg)
with N = 2, 5, 10 and all training images, head-only and full, next to the same model trained
from scratch; prints the data-efficiency table and writes ``<out>/transfer.json``
(``{target: {"<mode>@N=<n>": {metric: value}}}``), ``<out>/transfer.html`` and each run's outputs
under ``<out>/<target>/<mode>@N=<n>/``. Configs: configs/demo/finetune/.

    FX_DATASETS=demo_data python tools/demo_finetune.py --pretrained output/demo \\
        --out output/demo-finetune [--targets jsrt,montgomery] [--shots 2,10] [--jobs 2]
"""

import argparse
import logging
import os
import sys
import time

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "demo",
                       "finetune")  # fmt: skip
TARGETS = ("jsrt", "montgomery", "vindr_ribcxr", "chexmask_vindr")
WEIGHT_FILES = ("model_teacher_final.pth", "model_final.pth")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrained", default="output/demo",
                        help="the pretraining's OUTPUT_DIR (its model_teacher_final.pth) or a "
                             "weights file")  # fmt: skip
    parser.add_argument("--out", default="output/demo-finetune", help="output folder")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets")
    parser.add_argument("--shots", default="2,5,10,all", help="training images per run")
    parser.add_argument("--modes", default="scratch,head,full", help="scratch, head, full")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (processes)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run")
    parser.add_argument("--configs", default=CONFIGS, help="folder of the target/mode configs")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep each run's .pth")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def pretrained_weights(path: str) -> str:
    """``path`` when it is a file, else its model_teacher_final.pth (else model_final.pth)."""
    if os.path.isfile(path):
        return path
    for name in WEIGHT_FILES:
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"no {' or '.join(WEIGHT_FILES)} in {path!r}: run `make demo` first (it writes "
        "output/demo), or pass --pretrained"
    )


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from fx_d2.engine.transfer import (
        MODES,
        format_transfer_table,
        run_transfer,
        write_transfer_json,
    )
    from fx_d2.engine.transfer_report import write_transfer_report

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {MODES}")
    targets = {t.strip(): os.path.join(args.configs, f"{t.strip()}.yaml")
               for t in args.targets.split(",") if t.strip()}  # fmt: skip
    for target, path in targets.items():
        if not os.path.isfile(path):
            parser.error(f"no config for target {target!r} ({path})")
    shots = [0 if s.strip() == "all" else int(s) for s in args.shots.split(",") if s.strip()]
    weights = pretrained_weights(args.pretrained) if modes != ["scratch"] else ""
    mode_configs = {m: os.path.join(args.configs, f"mode_{m}.yaml") for m in modes}
    total = len(targets) * len(shots) * len(modes)
    print(f"Transfer: {len(targets)} targets x N {args.shots} x {modes} = {total} runs, "
          f"pretrained {weights or '-'}", flush=True)  # fmt: skip
    done = []

    def report(target, key, metrics, seconds):
        done.append(key)
        values = "  ".join(f"{k} {v:.1f}" for k, v in metrics.items())
        print(f"[{len(done)}/{total}] {target} {key}: {values}  ({seconds:.0f} s)", flush=True)

    start = time.perf_counter()
    results, seconds = run_transfer(
        targets, mode_configs, shots, weights, args.out, jobs=args.jobs,
        threads=args.threads or None, opts=args.opts, keep_checkpoints=args.keep_checkpoints,
        on_result=report,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    path = write_transfer_json(results, os.path.join(args.out, "transfer.json"))
    settings = {
        "pretrained weights": weights or "-",
        "configs": os.path.relpath(args.configs),
        "targets": ", ".join(targets),
        "modes": ", ".join(modes),
        "N": args.shots,
        "overrides": " ".join(args.opts) or "-",
        "wall time": f"{elapsed:.0f} s",
    }
    html = write_transfer_report(results, os.path.join(args.out, "transfer.html"), settings,
                                 seconds, modes)  # fmt: skip
    print(f"\n{format_transfer_table(results, modes)}\n")
    print(f"{path}\n{html}\n{total} runs in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
