"""Fuzz: the run-length decoders over random strings and counts. Every call returns a mask of the
requested shape (or None / a mask and box for the ``*_to_coco`` converters) or raises
``ValueError``; no other exception type, no hang. Where a decode succeeds the converter and the
rasterising decoder agree. Derandomized (tests/conftest.py); ``PROBES`` per target.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fx_d2.data.rle import (
    chexmask_rle_to_coco,
    coco_rle_to_mask,
    decode_chexmask_rle,
    decode_siim_rle,
    detect_rle_mode,
    siim_rle_to_coco,
)

PROBES = 400
FUZZ = settings(max_examples=PROBES, deadline=None, suppress_health_check=list(HealthCheck))

# Characters that confuse int(): signs, '_', other scripts' digits, separators that are not ASCII.
ALPHABET = st.sampled_from(list("0123456789  -+_.e\t\n") + ["\u00b2", "\u0663", "\u00a0", "x"])
NUMBERS = st.one_of(
    st.integers(0, 40),
    st.integers(0, 2**64),
    st.sampled_from([2**31 - 1, 2**32, 2**63 - 1, 2**63, 10**20, 10**18 - 1]),
)
TEXTS = st.one_of(
    st.text(ALPHABET, max_size=40),
    st.lists(NUMBERS, max_size=12).map(lambda v: " ".join(map(str, v))),
    st.lists(st.integers(-3, 30), max_size=10).map(lambda v: " ".join(map(str, v))),
)
SIDES = st.one_of(st.integers(1, 12), st.sampled_from([0, -1, 65535, 65536, 2**40]))


def _mask_ok(mask, height, width):
    assert mask.dtype == bool and mask.shape == (height, width)


def _coco_ok(result, height, width, decoded):
    if result is None:
        assert not decoded.any()
        return
    segmentation, box = result
    mask = coco_rle_to_mask(segmentation)
    assert np.array_equal(mask, decoded)  # the converter and the decoder agree
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


@FUZZ
@given(
    text=TEXTS, height=SIDES, width=SIDES, mode=st.sampled_from(["relative", "absolute", "auto"])
)
def test_siim_decoders(text, height, width, mode, no_hang):
    with no_hang(20):
        try:
            decoded = decode_siim_rle(text, height, width, mode=mode)
        except ValueError:
            with pytest.raises(ValueError):
                siim_rle_to_coco(text, height, width, mode=mode)
            return
        _mask_ok(decoded, height, width)
        _coco_ok(siim_rle_to_coco(text, height, width, mode=mode), height, width, decoded)


@FUZZ
@given(text=TEXTS, height=SIDES, width=SIDES)
def test_chexmask_decoders(text, height, width, no_hang):
    with no_hang(20):
        try:
            decoded = decode_chexmask_rle(text, height, width)
        except ValueError:
            with pytest.raises(ValueError):
                chexmask_rle_to_coco(text, height, width)
            return
        _mask_ok(decoded, height, width)
        _coco_ok(chexmask_rle_to_coco(text, height, width), height, width, decoded)


@FUZZ
@given(texts=st.lists(TEXTS, max_size=6))
def test_detect_mode_never_raises(texts):
    assert detect_rle_mode(texts) in ("relative", "absolute")


COUNT = st.one_of(
    st.integers(-2, 30),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.integers(2**31, 2**65),
)


@FUZZ
@given(
    size=st.one_of(st.tuples(st.integers(-1, 8), st.integers(-1, 8)).map(list), COUNT),
    counts=st.one_of(
        st.lists(COUNT, max_size=8),
        st.text(max_size=12),
        st.binary(max_size=12),
        COUNT,
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    ),
)
def test_coco_decoder(size, counts, no_hang):
    with no_hang(20):
        try:
            mask = coco_rle_to_mask({"size": size, "counts": counts})
        except ValueError:
            return
        assert mask.dtype == bool and list(mask.shape) == [int(v) for v in size]
