"""hash_split: the md5 rule of the datasets without an official split, pinned to its values."""

import hashlib

import pytest

from fx_d2.data.splits import TRAIN_VAL_TEST, VAL_TRAIN, hash_split

# sha256 of ",".join(split of "P0" ... "P4999") as the loaders computed it before hash_split
# replaced their own copies of the rule; a change here re-splits real datasets.
PINNED = {
    ("candid_ptx", TRAIN_VAL_TEST): "a96617290d6d7f1d",
    ("montgomery", TRAIN_VAL_TEST): "acb4bb1447c86f8e",
    ("shenzhen", TRAIN_VAL_TEST): "7bd94df0ba2ebf68",
    ("node21", TRAIN_VAL_TEST): "9c7486e1cc2d4200",
    ("rsna_pneumonia", TRAIN_VAL_TEST): "f31dbb23c7ece38a",
    ("nih_cxr14", VAL_TRAIN): "eda68683cdc5fbc7",
    ("siim_acr", VAL_TRAIN): "e626c4ec79dbf384",
}


@pytest.mark.parametrize("key, fractions", list(PINNED))
def test_pinned_splits(key, fractions):
    splits = [hash_split(key, f"P{i}", fractions) for i in range(5000)]
    assert hashlib.sha256(",".join(splits).encode()).hexdigest()[:16] == PINNED[key, fractions]


def test_rule():
    digest = hashlib.md5(b"shenzhen/CHNCXR_0001").hexdigest()
    u = int(digest[:8], 16) / 2**32
    expected = "train" if u < 0.7 else "val" if u < 0.8 else "test"
    assert hash_split("shenzhen", "CHNCXR_0001", TRAIN_VAL_TEST) == expected
    assert hash_split("a", "g", (("only", 1.0),)) == "only"
    assert hash_split("a", "g", (("none", 0.0), ("last", 0.0))) == "last"  # rounding fallback


def test_cumulative_bounds_equal_summed_fractions():
    """Some loaders wrote the bounds as (0.7, 0.8, 1.0), others summed (0.7, 0.1, 0.2): no
    u = k / 2**32 lies between 0.7 + 0.1 and 0.8, so both forms split identically."""
    summed = 0.7 + 0.1
    assert summed != 0.8
    k = int(0.8 * 2**32)
    for value in (k - 1, k, k + 1):
        assert (value / 2**32 < summed) == (value / 2**32 < 0.8)
