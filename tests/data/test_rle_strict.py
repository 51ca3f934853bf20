"""Run-length decoders accept ASCII digits only and raise ValueError for anything else, overflow
included (before: StopIteration, OverflowError, IndexError, MemoryError, or ``1_0`` / ``٣`` / ``+3``
read as numbers); COCO counts must be non-negative integers (before: floats were truncated)."""

import numpy as np
import pytest

from fx_d2.data.rle import (
    RLEOverflowError,
    chexmask_rle_to_coco,
    coco_rle_to_mask,
    decode_chexmask_rle,
    decode_siim_rle,
    detect_rle_mode,
    siim_rle_to_coco,
)

DECODERS = [decode_siim_rle, decode_chexmask_rle, siim_rle_to_coco, chexmask_rle_to_coco]


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "text,pattern",
    [
        ("--5 2", "not an integer of ASCII digits"),
        ("\u00b2 2", "not an integer of ASCII digits"),  # superscript two: str.isdigit() is True
        ("\u0663 2", "not an integer of ASCII digits"),  # Arabic-Indic three: int() reads it
        ("1_0 2", "not an integer of ASCII digits"),
        ("+3 2", "not an integer of ASCII digits"),
        ("3\u00a02", "not an integer of ASCII digits"),  # no-break space is no separator here
        ("1e2 3", "not an integer of ASCII digits"),
        ("-2 3", "is negative"),
        ("1 99999999999999999999", "more than 18 digits"),
        ("2 9223372036854775807", "more than 18 digits"),
        ("2 4611686018427387904", "more than 18 digits"),
        ("2 999999999999999999", "goes past the 100 pixels"),
        ("90 20", "goes past|past the"),
    ],
)
def test_only_ascii_digits(decoder, text, pattern):
    with pytest.raises(ValueError, match=pattern):
        decoder(text, 10, 10)


def test_overflow_is_the_overflow_type():
    with pytest.raises(RLEOverflowError):
        siim_rle_to_coco("2 9223372036854775807", 10, 10)
    with pytest.raises(RLEOverflowError):
        decode_chexmask_rle("1 101", 10, 10)


@pytest.mark.parametrize("size", [(0, 5), (70000, 5), (5.5, 5), (True, 5), ("5", 5)])
def test_mask_size_checked(size):
    with pytest.raises(ValueError, match="RLE mask size"):
        siim_rle_to_coco("1 2", *size)


def test_detect_mode_ignores_bad_rows():
    assert detect_rle_mode(["\u0663 2 5 1", "1 2 5 3"]) == "absolute"
    assert detect_rle_mode(["+1 2 5 3"]) == "relative"


@pytest.mark.parametrize(
    "counts",
    [[1.5, 98.5], [10.0, 90.0], [-5, 105], [True, 99], ["10", "90"], None, 100, {"a": 1}],
)
def test_coco_counts_must_be_non_negative_integers(counts):
    with pytest.raises(ValueError, match="COCO RLE"):
        coco_rle_to_mask({"size": [10, 10], "counts": counts})


def test_coco_size_and_strings_checked():
    with pytest.raises(ValueError, match="size"):
        coco_rle_to_mask({"size": [10.0, 10], "counts": [100]})
    with pytest.raises(ValueError, match="size"):
        coco_rle_to_mask({"size": [100000, 1], "counts": [100000]})
    with pytest.raises(ValueError, match="not ASCII"):
        coco_rle_to_mask({"size": [1, 1], "counts": "\u00e9"})
    assert coco_rle_to_mask({"size": [2, 5], "counts": [3, 4, 3]}).sum() == 4
    assert np.array_equal(
        coco_rle_to_mask({"size": [2, 2], "counts": [np.int64(1), np.int64(3)]}),
        np.array([[False, True], [True, True]]),
    )
