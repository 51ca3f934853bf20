"""Lock-Release schedule: pure-function properties, the reference order, epoch-fraction lengths."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fx_d2.engine.schedule import (
    REFERENCE_STAGES,
    LockReleaseSchedule,
    default_stages,
    epoch_iterations,
    parse_stages,
    phase_iterations,
)

PRETRAIN_TASKS = {
    "chexpert": ("cls",),
    "nih_cxr14": ("cls",),
    "vindr_cxr": ("cls",),
    "shenzhen": ("cls",),
    "mimic_cxr": ("cls",),
    "tbx11k": ("cls", "loc"),
    "node21": ("cls", "loc"),
    "candid_ptx": ("cls", "loc", "seg"),
    "rsna_pneumonia": ("cls", "loc"),
    "chestx_det": ("cls", "loc", "seg"),
    "siim_acr": ("cls", "loc", "seg"),
}


def test_reference_order_for_all_eleven_sources():
    stages = default_stages(list(PRETRAIN_TASKS), PRETRAIN_TASKS)
    assert stages == list(REFERENCE_STAGES)
    assert len(stages) == 20
    assert stages[6] == ("tbx11k", "loc") and stages[11] == ("candid_ptx", "seg")


def test_default_stages_restricted_and_targets_appended():
    tasks = {"siim_acr": ("cls", "seg"), "jsrt": ("seg",), "chexpert": ("cls",)}
    stages = default_stages(["jsrt", "siim_acr", "chexpert"], tasks)
    # reference order first (chexpert before siim_acr, siim_acr loc dropped), then targets
    assert stages == [
        ("chexpert", "cls"),
        ("siim_acr", "cls"),
        ("siim_acr", "seg"),
        ("jsrt", "seg"),
    ]


def test_parse_stages():
    assert parse_stages(["chexpert:cls", " tbx11k : loc"]) == [
        ("chexpert", "cls"),
        ("tbx11k", "loc"),
    ]
    for bad in ("chexpert", "chexpert:det", ":cls", "a:b:c"):
        with pytest.raises(ValueError, match="STAGES"):
            parse_stages([bad])


def test_phase_lengths_in_epochs_and_iters():
    assert epoch_iterations(100, 24) == 5  # ceil
    assert phase_iterations(0.5, "epochs", 5) == 3  # 2.5 rounded half up
    assert phase_iterations(0.5, "epochs", 4) == 2
    assert phase_iterations(0.01, "epochs", 4) == 1  # positive fractions give >= 1 iteration
    assert phase_iterations(0.0, "epochs", 4) == 0
    assert phase_iterations(7.0, "iters") == 7
    with pytest.raises(ValueError):
        phase_iterations(2.5, "iters")
    with pytest.raises(ValueError):
        phase_iterations(1.0, "steps")
    with pytest.raises(ValueError):
        phase_iterations(-1.0, "iters")


def test_reference_lengths_from_epochs():
    stages = [("chexpert", "cls"), ("tbx11k", "loc"), ("siim_acr", "seg")]
    sizes = {("chexpert", "cls"): 10, ("tbx11k", "loc"): 7, ("siim_acr", "seg"): 4}
    sched = LockReleaseSchedule.from_lengths(
        stages, {"cls": 0, "loc": 0.5, "seg": 0.5}, {"cls": 1, "loc": 1, "seg": 1}, "epochs", sizes
    )
    assert sched.lock_iters == [0, 4, 2] and sched.release_iters == [10, 7, 4]
    assert sched.cycle_length == 27 and sched.num_phases == 5
    p = sched.phase_at(10)
    assert (p.dataset, p.task, p.locked, p.phase_start, p.phase_end) == (
        "tbx11k",
        "loc",
        True,
        10,
        14,
    )
    p = sched.phase_at(27 + 14)
    assert (p.cycle, p.task, p.locked, p.iter_in_phase) == (1, "loc", False, 0)
    with pytest.raises(ValueError, match="epoch size"):
        LockReleaseSchedule.from_lengths(stages, {"cls": 0, "loc": 0, "seg": 0},
                                         {"cls": 1, "loc": 1, "seg": 1}, "epochs", {})  # fmt: skip


def test_invalid_schedules():
    with pytest.raises(ValueError):
        LockReleaseSchedule([], [], [])
    with pytest.raises(ValueError, match="length 0"):
        LockReleaseSchedule([("a", "cls")], [0], [0])
    with pytest.raises(ValueError):
        LockReleaseSchedule([("a", "cls")], [1], [1]).phase_at(-1)


lengths = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(lengths=lengths, seed=st.integers(0, 3))
def test_phase_at_is_a_consistent_pure_function(lengths, seed):
    if sum(a + b for a, b in lengths) == 0:
        lengths = lengths + [(0, 1)]
    keys = ["a", "b", "c"]
    stages = [(keys[(i + seed) % 3], ("cls", "loc", "seg")[i % 3]) for i in range(len(lengths))]
    sched = LockReleaseSchedule(stages, [a for a, _ in lengths], [b for _, b in lengths])
    length = sched.cycle_length
    assert length == sum(a + b for a, b in lengths)
    counts = {}
    previous = None
    for i in range(3 * length):
        p = sched.phase_at(i)
        assert p == sched.phase_at(i)  # pure
        assert p.phase_start <= i < p.phase_end and p.iter_in_phase == i - p.phase_start
        assert p.cycle == i // length
        assert (
            p.phase_end - p.phase_start
            == (sched.lock_iters[p.stage_index] if p.locked else sched.release_iters[p.stage_index])
            > 0
        )  # zero-length phases never show up
        assert sched.is_phase_end(i) == (i + 1 == p.phase_end)
        # stream_position == brute-force count of earlier iterations on the same stream
        stream = (p.dataset, p.task)
        assert sched.stream_position(i, *stream) == counts.get(stream, 0)
        counts[stream] = counts.get(stream, 0) + 1
        if previous is not None and previous.key != p.key:
            assert p.phase_start == previous.phase_end == i  # phases are contiguous
            if previous.stage_index == p.stage_index and previous.cycle == p.cycle:
                assert previous.locked and not p.locked  # lock comes before release
        previous = p
        shifted = sched.phase_at(i + length)
        assert (shifted.cycle, shifted.stage_index, shifted.locked) == (
            p.cycle + 1,
            p.stage_index,
            p.locked,
        )


@settings(max_examples=40, deadline=None)
@given(lengths=lengths, finals=st.lists(st.integers(0, 4), min_size=6, max_size=6))
def test_closing_lock_pass_after_the_last_cycle(lengths, finals):
    if sum(a + b for a, b in lengths) == 0:
        lengths = lengths + [(0, 1)]
    stages = [(("a", "b")[i % 2], ("cls", "loc", "seg")[i % 3]) for i in range(len(lengths))]
    final = finals[: len(stages)]
    sched = LockReleaseSchedule(
        stages, [a for a, _ in lengths], [b for _, b in lengths], cycles=2, final_lock_iters=final
    )
    plain = LockReleaseSchedule(stages, [a for a, _ in lengths], [b for _, b in lengths])
    main = 2 * sched.cycle_length
    assert sched.total_length == main + sum(final) and sched.closing_length == sum(final)
    counts = {}
    seen_closing = []
    for i in range(sched.total_length):
        p = sched.phase_at(i)
        if i < main:  # the cycles are those of the plain schedule
            assert p == plain.phase_at(i) and not p.closing
        else:
            assert p.closing and p.locked and p.cycle == 2
            assert p.phase_end - p.phase_start == final[p.stage_index] > 0
            assert p.phase_start <= i < p.phase_end and p.iter_in_phase == i - p.phase_start
            if not seen_closing or seen_closing[-1] != p.stage_index:
                seen_closing.append(p.stage_index)
        stream = (p.dataset, p.task)
        assert sched.stream_position(i, *stream) == counts.get(stream, 0)
        counts[stream] = counts.get(stream, 0) + 1
    # every stage with a closing length, once, in cycle order
    assert seen_closing == [i for i, n in enumerate(final) if n > 0]
    for stream, n in counts.items():
        assert sched.stream_position(sched.total_length, *stream) == n


def test_closing_lock_pass_needs_cycles_and_shows_in_describe():
    with pytest.raises(ValueError, match="CYCLES"):
        LockReleaseSchedule([("a", "cls")], [1], [1], final_lock_iters=[3])
    sched = LockReleaseSchedule.from_lengths(
        [("a", "cls"), ("a", "loc")],
        {"cls": 2, "loc": 1, "seg": 0},
        {"cls": 3, "loc": 4, "seg": 0},
        "iters",
        cycles=3,
        final_lock_length={"cls": 5, "loc": 0, "seg": 0},
    )
    assert sched.final_lock_iters == [5, 0] and sched.total_length == 3 * 10 + 5
    assert sched.closing_start == 30 and sched.phase_at(34).describe().startswith("closing pass")
    assert "Closing lock pass after the last cycle: 5 iterations" in sched.describe()
    no_pass = LockReleaseSchedule([("a", "cls")], [1], [1], cycles=2)
    assert no_pass.closing_start is None and no_pass.total_length == 4
