"""Lock-Release cyclic schedule: which (dataset, task) trains, locked or released, at iteration i.

A cycle is an ordered list of stages ``(dataset key, task)``. Each stage runs a *lock* phase (the
modules shared across datasets for that task are frozen, only the stage's own head/decoder learns)
then a *release* phase (everything on the task's path learns). Phase lengths are explicit iteration
budgets, given per task either in iterations or as a fraction of an epoch of that stage's data
(reference: cls 0 + 1 epoch, loc and seg 0.5 + 1 epoch; docs/method.md §2-§3). Zero-length
phases are skipped and the cycle repeats until the end of training.

Optionally a *closing lock pass* follows the last of ``cycles`` cycles: every stage once more, in
the same order, with a lock phase only (``final_lock_iters``). A head trained early in a cycle has
seen the shared modules change under it during all later release phases; the closing pass fits
every head and decoder to the final shared modules, which stay untouched, before the last
evaluation. It is not in the reference (off by default).

Everything here is pure (no torch, no I/O): :meth:`LockReleaseSchedule.phase_at` is a function of
the iteration only, so every rank trains the same stage, and a resumed run finds the same phase and
the same data position (:meth:`LockReleaseSchedule.stream_position`).
"""

import bisect
import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from fx_d2.data.catalog import TASKS

__all__ = [
    "TASKS",
    "REFERENCE_STAGES",
    "Phase",
    "LockReleaseSchedule",
    "parse_stages",
    "default_stages",
    "phase_iterations",
    "epoch_iterations",
]

# The reference's 20-stage cycle (docs/method.md §3; its main.py TaskHead 0..19), as
# (dataset key, task).
REFERENCE_STAGES: Tuple[Tuple[str, str], ...] = (
    ("chexpert", "cls"),
    ("nih_cxr14", "cls"),
    ("vindr_cxr", "cls"),
    ("shenzhen", "cls"),
    ("mimic_cxr", "cls"),
    ("tbx11k", "cls"),
    ("tbx11k", "loc"),
    ("node21", "cls"),
    ("node21", "loc"),
    ("candid_ptx", "cls"),
    ("candid_ptx", "loc"),
    ("candid_ptx", "seg"),
    ("rsna_pneumonia", "cls"),
    ("rsna_pneumonia", "loc"),
    ("chestx_det", "cls"),
    ("chestx_det", "loc"),
    ("chestx_det", "seg"),
    ("siim_acr", "cls"),
    ("siim_acr", "loc"),
    ("siim_acr", "seg"),
)

Stage = Tuple[str, str]


@dataclass(frozen=True)
class Phase:
    """One lock or release phase, seen from an iteration inside it.

    Attributes:
        cycle: 0-based cycle number.
        stage_index: index of the stage in the cycle's stage list.
        dataset: dataset key, e.g. ``"chexpert"``.
        task: ``"cls"``, ``"loc"`` or ``"seg"``.
        locked: True in the lock phase, False in the release phase.
        iter_in_phase: 0-based position of the iteration inside the phase.
        phase_start: first iteration of the phase (absolute).
        phase_end: one past the last iteration of the phase (absolute).
        closing: True in the closing lock pass (``cycle`` is then the number of full cycles).
    """

    cycle: int
    stage_index: int
    dataset: str
    task: str
    locked: bool
    iter_in_phase: int
    phase_start: int
    phase_end: int
    closing: bool = False

    @property
    def mode(self) -> str:
        """``"lock"`` or ``"release"``."""
        return "lock" if self.locked else "release"

    @property
    def key(self) -> Tuple[int, int, bool]:
        """Identifies the phase (same for every iteration in it): (cycle, stage_index, locked)."""
        return (self.cycle, self.stage_index, self.locked)

    def describe(self) -> str:
        """Human-readable name, e.g. ``cycle 2 stage 6 tbx11k:loc lock [120, 140)``."""
        where = "closing pass" if self.closing else f"cycle {self.cycle}"
        return (
            f"{where} stage {self.stage_index} {self.dataset}:{self.task} {self.mode} "
            f"[{self.phase_start}, {self.phase_end})"
        )


def parse_stages(items: Sequence[str]) -> List[Stage]:
    """Parse ``["chexpert:cls", "tbx11k:loc", ...]`` into ``[("chexpert", "cls"), ...]``.

    Raises:
        ValueError: an item is not ``"<key>:<task>"`` or names an unknown task.
    """
    stages = []
    for item in items:
        parts = str(item).split(":")
        if len(parts) != 2 or not parts[0].strip() or parts[1].strip() not in TASKS:
            raise ValueError(
                f"SOLVER.LOCK_RELEASE.STAGES: bad stage {item!r}; expected '<dataset key>:<task>' "
                f"with task in {TASKS}, e.g. 'chexpert:cls'"
            )
        stages.append((parts[0].strip(), parts[1].strip()))
    return stages


def default_stages(datasets: Sequence[str], tasks_of: Mapping[str, Sequence[str]]) -> List[Stage]:
    """The reference's 20-stage order restricted to ``datasets`` and each dataset's tasks.

    Datasets that are not in the reference cycle (e.g. fine-tuning targets) follow, in the order of
    ``datasets``, each with its tasks in cls -> loc -> seg order.
    """
    wanted = set(datasets)
    stages = [(k, t) for k, t in REFERENCE_STAGES if k in wanted and t in tasks_of.get(k, ())]
    reference_keys = {k for k, _ in REFERENCE_STAGES}
    for key in datasets:
        if key not in reference_keys:
            stages.extend((key, t) for t in TASKS if t in tasks_of.get(key, ()))
    return stages


def epoch_iterations(num_images: int, global_batch: int) -> int:
    """Iterations of one epoch: ``ceil(num_images / global_batch)``."""
    if global_batch <= 0:
        raise ValueError(f"global batch size must be positive, got {global_batch}")
    return max(0, math.ceil(num_images / global_batch))


def phase_iterations(length: float, unit: str, epoch_iters: Optional[int] = None) -> int:
    """Length of a phase in iterations.

    Args:
        length: the configured length (>= 0).
        unit: ``"iters"`` (``length`` must be an integer) or ``"epochs"`` (fraction of an epoch).
        epoch_iters: iterations of one epoch of the stage's data (needed for ``"epochs"``).

    Returns:
        iterations; a positive epoch fraction gives at least 1 iteration (rounded half up).
    """
    if length < 0:
        raise ValueError(f"phase length must be >= 0, got {length}")
    if unit == "iters":
        if float(length) != int(length):
            raise ValueError(f"phase length {length} in 'iters' must be an integer")
        return int(length)
    if unit == "epochs":
        if epoch_iters is None:
            raise ValueError("phase lengths in 'epochs' need the stage's epoch size")
        if length == 0 or epoch_iters == 0:
            return 0
        return max(1, int(math.floor(length * epoch_iters + 0.5)))
    raise ValueError(f"SOLVER.LOCK_RELEASE.UNIT must be 'iters' or 'epochs', got {unit!r}")


class LockReleaseSchedule:
    """Cyclic Lock-Release schedule over explicit per-stage phase budgets.

    Args:
        stages: ordered ``(dataset key, task)`` pairs of one cycle.
        lock_iters: lock-phase length (iterations) of each stage.
        release_iters: release-phase length (iterations) of each stage.
        cycles: number of full cycles, needed for a closing lock pass (None: cycles repeat
            forever).
        final_lock_iters: lock-phase length of each stage in the closing pass after ``cycles``
            cycles (None or all 0: no closing pass).
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        lock_iters: Sequence[int],
        release_iters: Sequence[int],
        cycles: Optional[int] = None,
        final_lock_iters: Optional[Sequence[int]] = None,
    ):
        if not stages:
            raise ValueError("Lock-Release schedule has no stages (check MODEL.FX.DATASETS/STAGES)")
        final_lock_iters = [0] * len(stages) if final_lock_iters is None else final_lock_iters
        if not len(stages) == len(lock_iters) == len(release_iters) == len(final_lock_iters):
            raise ValueError(
                "stages, lock_iters, release_iters and final_lock_iters must have the same length"
            )
        self.stages: List[Stage] = [(str(k), str(t)) for k, t in stages]
        self.lock_iters = [int(n) for n in lock_iters]
        self.release_iters = [int(n) for n in release_iters]
        self.final_lock_iters = [int(n) for n in final_lock_iters]
        if min(self.lock_iters + self.release_iters + self.final_lock_iters) < 0:
            raise ValueError("phase lengths must be >= 0")
        if any(self.final_lock_iters) and not (cycles and cycles > 0):
            raise ValueError(
                "a closing lock pass (SOLVER.LOCK_RELEASE.{CLS,LOC,SEG}.FINAL_LOCK_LENGTH) needs "
                "a number of cycles (SOLVER.LOCK_RELEASE.CYCLES > 0)"
            )
        self.cycles = int(cycles) if cycles else None
        # Non-empty phases of one cycle: (stage_index, locked, offset in cycle, length).
        self._phases: List[Tuple[int, bool, int, int]] = []
        offset = 0
        for index in range(len(self.stages)):
            for locked, length in (
                (True, self.lock_iters[index]),
                (False, self.release_iters[index]),
            ):
                if length > 0:
                    self._phases.append((index, locked, offset, length))
                    offset += length
        self.cycle_length = offset
        if self.cycle_length == 0:
            raise ValueError("every Lock-Release phase has length 0: nothing to train")
        self._starts = [p[2] for p in self._phases]
        # Closing pass, relative to its start: (stage_index, offset, length).
        self._closing: List[Tuple[int, int, int]] = []
        offset = 0
        for index, length in enumerate(self.final_lock_iters):
            if length > 0:
                self._closing.append((index, offset, length))
                offset += length
        self.closing_length = offset
        self._closing_starts = [p[1] for p in self._closing]
        # Iterations per cycle of each data stream (a (dataset, task) may appear in several stages).
        self._stream_per_cycle: Dict[Stage, int] = {}
        for index, _, _, length in self._phases:
            stream = self.stages[index]
            self._stream_per_cycle[stream] = self._stream_per_cycle.get(stream, 0) + length

    @classmethod
    def from_lengths(
        cls,
        stages: Sequence[Stage],
        lock_length: Mapping[str, float],
        release_length: Mapping[str, float],
        unit: str,
        epoch_iters: Optional[Mapping[Stage, int]] = None,
        cycles: Optional[int] = None,
        final_lock_length: Optional[Mapping[str, float]] = None,
    ) -> "LockReleaseSchedule":
        """Build from per-task lengths (``{"cls": 0, "loc": 0.5, ...}``) in ``unit``.

        ``epoch_iters`` maps each stage to the iterations of one epoch of its data (needed when
        ``unit == "epochs"``); ``final_lock_length`` gives the closing pass's lock lengths.
        """
        lock, release, final = [], [], []
        for stage in stages:
            per_epoch = None if epoch_iters is None else epoch_iters.get(tuple(stage))
            if unit == "epochs" and per_epoch is None:
                raise ValueError(f"no epoch size for stage {stage[0]}:{stage[1]}")
            lock.append(phase_iterations(float(lock_length[stage[1]]), unit, per_epoch))
            release.append(phase_iterations(float(release_length[stage[1]]), unit, per_epoch))
            closing = 0.0 if final_lock_length is None else float(final_lock_length[stage[1]])
            final.append(phase_iterations(closing, unit, per_epoch))
        return cls(stages, lock, release, cycles=cycles, final_lock_iters=final)

    @property
    def total_length(self) -> Optional[int]:
        """Iterations of ``cycles`` cycles plus the closing pass (None without ``cycles``)."""
        return (
            None if self.cycles is None else self.cycles * self.cycle_length + self.closing_length
        )

    @property
    def closing_start(self) -> Optional[int]:
        """First iteration of the closing pass (None when there is none)."""
        return self.cycles * self.cycle_length if self.closing_length and self.cycles else None

    @property
    def num_phases(self) -> int:
        """Non-empty phases per cycle."""
        return len(self._phases)

    def phase_at(self, iteration: int) -> Phase:
        """The phase that trains at ``iteration`` (>= 0)."""
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        base = self.closing_start
        if base is not None and iteration >= base:
            offset = min(int(iteration) - base, self.closing_length - 1)
            j = bisect.bisect_right(self._closing_starts, offset) - 1
            index, start, length = self._closing[j]
            return Phase(
                cycle=int(self.cycles),
                stage_index=index,
                dataset=self.stages[index][0],
                task=self.stages[index][1],
                locked=True,
                iter_in_phase=int(iteration) - base - start,
                phase_start=base + start,
                phase_end=base + start + length,
                closing=True,
            )
        cycle, offset = divmod(int(iteration), self.cycle_length)
        j = bisect.bisect_right(self._starts, offset) - 1
        index, locked, start, length = self._phases[j]
        base = cycle * self.cycle_length
        return Phase(
            cycle=cycle,
            stage_index=index,
            dataset=self.stages[index][0],
            task=self.stages[index][1],
            locked=locked,
            iter_in_phase=offset - start,
            phase_start=base + start,
            phase_end=base + start + length,
        )

    def is_phase_end(self, iteration: int) -> bool:
        """True when ``iteration`` is the last iteration of its phase."""
        return self.phase_at(iteration).phase_end == iteration + 1

    def stream_position(self, iteration: int, dataset: str, task: str) -> int:
        """Iterations in ``[0, iteration)`` that trained on the data stream ``(dataset, task)``.

        This is the number of batches that stream has delivered before ``iteration``: the data
        position a resumed run restores.
        """
        stream = (dataset, task)
        per_cycle = self._stream_per_cycle.get(stream, 0)
        base = self.closing_start
        if base is not None and iteration > base:
            done = self.stream_position(base, dataset, task)
            for index, start, length in self._closing:
                if self.stages[index] == stream:
                    done += max(0, min(length, int(iteration) - base - start))
            return done
        cycle, offset = divmod(int(iteration), self.cycle_length)
        done = cycle * per_cycle
        for index, _, start, length in self._phases:
            if start >= offset:
                break
            if self.stages[index] == stream:
                done += min(length, offset - start)
        return done

    def describe(self) -> str:
        """One line per stage: ``index  key:task  lock N  release M``, and the cycle length."""
        lines = [f"Lock-Release cycle: {len(self.stages)} stages, {self.cycle_length} iterations"]
        for i, (key, task) in enumerate(self.stages):
            lines.append(
                f"  {i:2d}  {key}:{task:<4s} lock {self.lock_iters[i]:6d}  "
                f"release {self.release_iters[i]:6d}"
                + (f"  closing lock {self.final_lock_iters[i]:6d}" if self.closing_length else "")
            )
        if self.closing_length:
            lines.append(
                f"Closing lock pass after the last cycle: {self.closing_length} iterations"
            )
        return "\n".join(lines)
