#!/usr/bin/env python
"""Named Foundation X weights: list the catalogue, fetch a file, convert it once.

Examples::

    python tools/weights.py list                 # every entry, its source and whether cached
    python tools/weights.py get swin_b_in22k     # download (resumable, checksum-verified)
    python tools/weights.py get foundation_x     # request-only: says where to ask, where to put it
    python tools/weights.py convert foundation_x # convert once (cached by the file's SHA-256)
    python tools/weights.py convert ~/Downloads/ckpt.pth   # any file or file:// / https:// URL

Files live in ``~/.cache/fx_d2`` (``$FX_D2_CACHE`` overrides). Prints JSON on success; exit
status 2 when a request-only file is not there yet, 1 on any other failure (the reason is printed
on stderr).
"""

import argparse
import json
import logging
import os
import sys
from typing import Optional, Sequence

from fx_d2.checkpoint.convert import CheckpointConversionError
from fx_d2.model_zoo import (
    WeightsDownloadError,
    WeightsNotAvailableError,
    cache_root,
    fetch_weights,
    get_entry,
    list_entries,
    resolve_weights,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the catalogue, one entry per line")
    get = sub.add_parser(
        "get", help="download a public file / say how to obtain a request-only one"
    )
    get.add_argument("name", help="catalogue name")
    convert = sub.add_parser("convert", help="convert a name, URL or file to fx_d2's layout once")
    convert.add_argument("name", help="catalogue name, https:// or file:// URL, or a local file")
    convert.add_argument(
        "--use-student", action="store_true", help="Foundation X: the student, not the teacher"
    )
    convert.add_argument(
        "--trust-pickle",
        action="store_true",
        help="unpickle a file that torch.load(weights_only=True) refuses; this RUNS code the file "
        "names: only for files whose origin you trust",
    )
    for p in (get, convert):
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _list() -> dict:
    rows = []
    for entry in list_entries():
        cached = os.path.join(cache_root(), "weights", entry.filename)
        rows.append(
            {
                "name": entry.name,
                "title": entry.title,
                "format": entry.format,
                "config": entry.config,
                "source": entry.url or f"on request: {entry.request_url}",
                "sha256": entry.sha256,
                "cached": os.path.isfile(cached),
                "path": cached,
            }
        )
    return {"cache": cache_root(), "weights": rows}


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        if args.command == "list":
            result = _list()
        elif args.command == "get":
            path = fetch_weights(get_entry(args.name), progress=not args.no_progress)
            result = {"name": args.name, "path": path}
        else:
            weights = resolve_weights(
                args.name,
                trust_pickle=args.trust_pickle,
                progress=not args.no_progress,
                use_student=True if args.use_student else None,
            )
            result = {
                "name": weights.name,
                "source": weights.source,
                "sha256": weights.sha256,
                "format": weights.format,
                "converted": weights.path,
                "config_file": weights.config_file,
                "trunk_only": weights.trunk_only,
            }
    except WeightsNotAvailableError as err:
        print(str(err), file=sys.stderr)
        return 2
    except (KeyError, FileNotFoundError, WeightsDownloadError, CheckpointConversionError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 1
    except ValueError as err:  # unknown format, checksum of a placed file, unreadable file
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
