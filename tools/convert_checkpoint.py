#!/usr/bin/env python
"""Convert official Swin / Ark / Foundation X / timm weights into an fx_d2 checkpoint.

Examples::

    python tools/convert_checkpoint.py swin_base_patch4_window7_224_22k.pth swin_b.pth
    python tools/convert_checkpoint.py --format foundation_x ckpt.pth fx.pth
    python tools/convert_checkpoint.py --prefix backbone.bottom_up. --window-size 12 in.pth out.pth

Prints a JSON report (format, inferred architecture, dropped / missing / unexpected keys with
counts) and exits with status 1, writing nothing, when the Swin trunk is partial (unless
``--allow-partial``) or the input cannot be read. Inputs are read without running any code from
them: a pickle-only input is refused unless ``--trust-pickle``.
"""

import argparse
import json
import logging
import sys

from fx_d2.checkpoint.convert import FORMATS, CheckpointConversionError, convert_file


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="source checkpoint (.pth / .pth.tar / .pt)")
    parser.add_argument("output", help="fx_d2 checkpoint to write (.pth)")
    parser.add_argument("--format", choices=FORMATS, help="source format (default: detect)")
    parser.add_argument(
        "--prefix",
        default="backbone.",
        help="trunk key prefix: backbone. (FoundationX), backbone.bottom_up. (GeneralizedRCNN)",
    )
    parser.add_argument("--window-size", type=int, help="resize relative position bias tables")
    parser.add_argument("--allow-partial", action="store_true", help="accept an incomplete trunk")
    parser.add_argument(
        "--use-student", action="store_true", help="Foundation X: 'model' not 'teacher_model'"
    )
    parser.add_argument("--trunk-only", action="store_true", help="drop FoundationX heads")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="unpickle an input that torch.load(weights_only=True) refuses; this RUNS code the "
        "file names: only for files whose origin you trust",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        result = convert_file(
            args.input,
            args.output,
            args.format,
            prefix=args.prefix,
            window_size=args.window_size,
            allow_partial=args.allow_partial,
            use_student=args.use_student,
            trunk_only=args.trunk_only,
            trust_pickle=args.trust_pickle,
        )
    except CheckpointConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    report = result.report()
    report["output"] = args.output
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
