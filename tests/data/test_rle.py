"""The three RLE conventions: hand-checked examples on asymmetric masks, errors, round trips."""

import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fx_d2.data.masks import mask_to_box
from fx_d2.data.rle import (
    RLEOverflowError,
    chexmask_rle_to_coco,
    coco_rle_to_mask,
    decode_chexmask_rle,
    decode_siim_rle,
    detect_rle_mode,
    encode_chexmask_rle,
    encode_siim_rle,
    is_empty_rle,
    mask_to_coco_rle,
    siim_rle_to_coco,
)


def test_siim_relative_column_major_by_hand():
    # 3x4 image; column-major flat index = col * 3 + row.
    m = decode_siim_rle("1 2 3 1", 3, 4)  # run [1,3) -> col 0 rows 1-2; gap 3 -> index 6 = (0, 2)
    expected = np.zeros((3, 4), bool)
    expected[1:3, 0] = True
    expected[0, 2] = True
    assert np.array_equal(m, expected)
    assert encode_siim_rle(expected) == "1 2 3 1"
    # A row-major or absolute reading would put the pixels elsewhere.
    assert not np.array_equal(decode_siim_rle("3 1", 3, 4), decode_chexmask_rle("4 1", 3, 4))
    assert decode_siim_rle("3 1", 3, 4)[0, 1]


def test_chexmask_absolute_row_major_by_hand():
    # Worked example: a 5x7 mask with row 1, cols 2-4 set encodes as "10 3".
    m = np.zeros((5, 7), bool)
    m[1, 2:5] = True
    assert encode_chexmask_rle(m) == "10 3"
    assert np.array_equal(decode_chexmask_rle("10 3", 5, 7), m)
    # the same string read SIIM-style lands in other pixels
    assert not np.array_equal(decode_siim_rle("10 3", 5, 7), m)


def test_siim_absolute_and_auto_modes():
    m = np.zeros((4, 6), bool)
    m[1:3, 1] = True
    m[0, 4] = True
    flat_starts = "6 2 17 1"  # 1-based absolute column-major starts: index 5 and 16
    assert np.array_equal(decode_siim_rle(flat_starts, 4, 6, mode="absolute"), m)
    assert np.array_equal(decode_siim_rle(flat_starts, 4, 6, mode="auto"), m)
    m2 = np.zeros(24, bool)
    m2[[10, 11, 14]] = True
    m2 = m2.reshape((4, 6), order="F")
    assert encode_siim_rle(m2) == "10 2 2 1"  # "starts" 10, 2 not increasing -> relative
    assert np.array_equal(decode_siim_rle("10 2 2 1", 4, 6, mode="auto"), m2)
    with pytest.raises(ValueError, match="mode"):
        decode_siim_rle("1 1", 4, 6, mode="sideways")


@pytest.mark.parametrize("empty", ["-1", " -1", " -1 ", "", "  ", None, float("nan")])
def test_empty_encodings(empty):
    assert is_empty_rle(empty)
    assert not decode_siim_rle(empty, 4, 5).any()
    assert decode_chexmask_rle(empty, 4, 5).shape == (4, 5)
    assert encode_siim_rle(np.zeros((4, 5), bool)) == "-1"


def test_overflow_and_malformed_raise():
    with pytest.raises(ValueError, match="past the 12 pixels of a 3x4 mask"):
        decode_siim_rle("10 3", 3, 4)
    with pytest.raises(ValueError, match="run #1"):
        decode_siim_rle("0 2 8 5", 3, 4)  # second run starts at 10, ends at 15
    with pytest.raises(ValueError, match="past"):
        decode_chexmask_rle("11 3", 3, 4)
    with pytest.raises(ValueError, match="below 1"):
        decode_chexmask_rle("0 3", 3, 4)
    with pytest.raises(ValueError, match="odd number"):
        decode_siim_rle("1 2 3", 3, 4)
    with pytest.raises(ValueError, match="not an integer"):
        decode_chexmask_rle("1 2.5", 3, 4)
    with pytest.raises(ValueError, match="negative"):
        decode_siim_rle("1 -2", 3, 4)
    with pytest.raises(ValueError, match="sum to"):
        coco_rle_to_mask({"size": [3, 4], "counts": [2, 3]})
    with pytest.raises(ValueError, match="sum to"):
        coco_rle_to_mask({"size": [5, 7], "counts": "0"})
    with pytest.raises(ValueError, match="2-D"):
        encode_siim_rle(np.zeros((2, 2, 2), bool))


def test_coco_rle_matches_pycocotools():
    m = np.zeros((6, 9), bool)
    m[1:4, 2:7] = True
    m[5, 0] = True
    rle = mask_to_coco_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [6, 9]
    assert float(mask_util.area({"size": [6, 9], "counts": rle["counts"].encode()})) == m.sum()
    assert np.array_equal(coco_rle_to_mask(rle), m)
    assert np.array_equal(coco_rle_to_mask(dict(rle, counts=rle["counts"].encode())), m)
    # uncompressed counts: column-major alternating background/foreground runs
    flat = m.ravel(order="F").astype(int)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], change])).tolist()
    assert np.array_equal(coco_rle_to_mask({"size": [6, 9], "counts": counts}), m)


masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(bool, hw, elements=st.booleans())
)


@settings(max_examples=150, deadline=None)
@given(masks)
def test_round_trips(m):
    h, w = m.shape
    assert np.array_equal(decode_siim_rle(encode_siim_rle(m), h, w), m)
    assert np.array_equal(decode_chexmask_rle(encode_chexmask_rle(m), h, w), m)
    assert np.array_equal(coco_rle_to_mask(mask_to_coco_rle(m)), m)
    # column-major SIIM order == row-major order of the transpose
    assert np.array_equal(decode_siim_rle(encode_chexmask_rle(m.T), h, w, mode="absolute"), m)


@settings(max_examples=60, deadline=None)
@given(masks, st.integers(1, 5))
def test_overflow_detected(m, extra):
    h, w = m.shape
    runs = encode_chexmask_rle(m).split()
    start = max(1, h * w - extra + 2)  # a valid 1-based start ...
    length = h * w - start + 2  # ... whose run ends one pixel past the end
    bad = " ".join(runs + [str(start), str(length)])
    with pytest.raises(ValueError, match="past"):
        decode_chexmask_rle(bad, h, w)
    assert math.isfinite(start)


def test_siim_to_coco_matches_decoder():
    rng = np.random.default_rng(1)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 14, 2))
        mask = rng.random((h, w)) < rng.choice([0.1, 0.5, 0.95])
        out = siim_rle_to_coco(encode_siim_rle(mask), h, w)
        if not mask.any():
            assert out is None
            continue
        assert np.array_equal(coco_rle_to_mask(out[0]), mask)
        assert out[1] == list(mask_to_box(mask))
    with pytest.raises(ValueError, match="past the"):
        siim_rle_to_coco("10 200", 10, 10)
    assert siim_rle_to_coco(" -1", 4, 4) is None
    # Absolute 1-based starts (stage-2 variant), column-major.
    mask = np.zeros((5, 4), bool)
    mask[1:3, 0] = mask[0, 2] = True
    seg, box = siim_rle_to_coco("2 2 11 1", 5, 4, mode="absolute")
    assert np.array_equal(coco_rle_to_mask(seg), mask) and box == [0.0, 0.0, 3.0, 3.0]
    assert detect_rle_mode(["2 2 11 1", "-1", "7 1"]) == "absolute"
    assert detect_rle_mode(["5 2 3 1", "2 2 11 1", "-1"]) == "relative"
    assert encode_chexmask_rle(mask) != encode_siim_rle(mask)


def test_chexmask_to_coco_matches_decoder():
    rng = np.random.default_rng(2)
    for i in range(400):
        h, w = (int(v) for v in rng.integers(1, 13, 2))
        mask = rng.random((h, w)) < rng.choice([0.05, 0.4, 0.8, 1.0])
        if i % 5 == 0:
            mask[: int(rng.integers(h + 1))] = True  # runs wrapping whole rows
        out = chexmask_rle_to_coco(encode_chexmask_rle(mask), h, w)
        if not mask.any():
            assert out is None
            continue
        assert out[0] == mask_to_coco_rle(mask)
        assert out[1] == list(mask_to_box(mask))
    # Worked example: a 5x7 mask with row 1, cols 2-4 set encodes as "10 3".
    seg, box = chexmask_rle_to_coco("10 3", 5, 7)
    assert box == [2.0, 1.0, 5.0, 2.0] and int(mask_util.area(_bytes(seg))) == 3
    # Unsorted and overlapping runs are merged.
    assert np.array_equal(
        coco_rle_to_mask(chexmask_rle_to_coco("12 3 10 3", 5, 7)[0]),
        decode_chexmask_rle("10 5", 5, 7),
    )
    with pytest.raises(ValueError, match="past the"):
        chexmask_rle_to_coco("30 10", 5, 7)
    with pytest.raises(ValueError, match="below 1"):
        chexmask_rle_to_coco("0 3", 5, 7)
    with pytest.raises(RLEOverflowError):
        chexmask_rle_to_coco("30 10", 5, 7)
    with pytest.raises(RLEOverflowError):
        decode_siim_rle("10 200", 10, 10)
    with pytest.raises(ValueError, match="too large"):  # not an OverflowError escaping numpy
        siim_rle_to_coco("1 99999999999999999999", 10, 10)


def _bytes(seg):
    return {"size": seg["size"], "counts": seg["counts"].encode()}
