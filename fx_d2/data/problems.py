"""Problems found while reading a dataset: counted, with the first examples, or raised in strict
mode.

A dataset is often read several times in one process (training, each evaluation): its summary is
logged as a warning the first time and only at DEBUG level when the same problems come back;
:func:`reported_problems` keeps the last counts of every dataset for reports.
"""

import contextlib
import logging
from collections import OrderedDict
from typing import Dict, Iterator, List, Tuple

__all__ = ["DatasetProblemError", "ProblemLog", "reported_problems", "log_once"]

logger = logging.getLogger(__name__)

# dataset name -> the counts last reported, and the summaries already logged as warnings
_REPORTED: Dict[str, Dict[str, int]] = OrderedDict()
_WARNED: set = set()


def log_once(log: logging.Logger, level: int, message: str, *args) -> None:
    """``log.log(level, message, *args)`` the first time this text is logged in the process;
    later repeats (the same dataset read again) go to DEBUG."""
    text = message % args if args else message
    if text in _WARNED:
        log.debug("%s (as before)", text)
        return
    _WARNED.add(text)
    log.log(level, text)


def reported_problems() -> Dict[str, Dict[str, int]]:
    """``{dataset name: {kind: count}}`` as last reported in this process (datasets read
    without problems are absent)."""
    return {name: dict(counts) for name, counts in _REPORTED.items() if counts}


# What malformed data makes record-building code raise (a wrong type, a missing key, a huge or
# non-finite number, undecodable text); anything else (e.g. OSError) is not about one record.
RECORD_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError, UnicodeError,
    RecursionError,
)  # fmt: skip


class DatasetProblemError(ValueError):
    """Raised for bad input in strict mode, or when a dataset folder is missing."""


class ProblemLog:
    """Counts problems found while reading a dataset and keeps the first examples of each kind.

    Kinds used by the sources (docs/datasets.md): ``missing_image``, ``missing_mask``,
    ``bad_image``, ``unknown_class``, ``unlabelled_study``, ``rle_overflow``, ``box_clipped``,
    ``box_degenerate``, ``path_outside_root``, ``bad_id``, ``bad_encoding``, ``split_overlap``,
    ``bad_row``. In strict mode the first problem raises :class:`DatasetProblemError`.
    """

    def __init__(self, name: str, strict: bool = False, max_examples: int = 5):
        self.name = name
        self.strict = strict
        self.max_examples = max_examples
        self.counts: Dict[str, int] = OrderedDict()
        self.examples: Dict[str, List[str]] = OrderedDict()

    def add(self, kind: str, where: str, message: str) -> None:
        """Record one problem. ``where`` names the file (and line/row when known)."""
        text = f"{where}: {message}"
        if self.strict:
            raise DatasetProblemError(f"[{self.name}] {kind}: {text}")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < self.max_examples:
            examples.append(text)

    @contextlib.contextmanager
    def guard(self, where: str, kind: str = "bad_row") -> Iterator[None]:
        """Build one record inside ``with problems.guard(where):``; if malformed data makes the
        body raise (:data:`RECORD_ERRORS`), the rest of the body is skipped and the error is
        recorded as ``kind`` under ``where`` (file and line or entry index), so one bad record
        never stops a dataset. Strict mode raises :class:`DatasetProblemError` instead."""
        try:
            yield
        except DatasetProblemError:
            raise
        except RECORD_ERRORS as e:
            self.add(kind, where, f"{type(e).__name__}: {e}")

    def total(self) -> int:
        """Number of problems recorded."""
        return sum(self.counts.values())

    def summary(self) -> str:
        """Counts per kind with their first examples, one per line."""
        lines = [f"{self.name}: {self.total()} problem(s)"]
        for kind, count in self.counts.items():
            lines.append(f"  {kind}: {count}, e.g.")
            lines.extend(f"    {e}" for e in self.examples[kind])
        return "\n".join(lines)

    def report(self) -> None:
        """Log the summary as a warning when anything was found, once per dataset and set of
        problems in this process (a repeat goes to DEBUG)."""
        _REPORTED[self.name] = dict(self.counts)
        if not self.counts:
            return
        key: Tuple = (self.name, tuple(self.counts.items()))
        if key in _WARNED:
            logger.debug("%s (as before)", self.summary())
            return
        _WARNED.add(key)
        logger.warning(self.summary())
