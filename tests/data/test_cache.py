"""Decoded-image cache: round trip, invalidation, atomic/resumable writes, mapper and tool."""

import json
import os
import sys

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from fx_d2.data.cache import ImageCache, resize_shorter_side
from fx_d2.data.demo.phantom import make_phantom, to_uint8
from fx_d2.data.io import read_image
from fx_d2.data.mapper import FXDatasetMapper

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))


@pytest.fixture
def image_file(tmp_path):
    p = make_phantom(np.random.default_rng(1), 300, 200)
    path = tmp_path / "src" / "img.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), to_uint8(p.image))
    return str(path)


@pytest.mark.parametrize("fmt", ["png16", "npy"])
def test_round_trip_and_size(tmp_path, image_file, fmt):
    cache = ImageCache(str(tmp_path / "c"), size=64, fmt=fmt)
    assert cache.load(image_file) is None  # miss
    img = cache.get(image_file)
    assert img.shape == (96, 64) and img.dtype == np.float32  # shorter side 64, aspect kept
    again = cache.load(image_file)
    assert again is not None and np.abs(again - img).max() <= 1 / 65535 + 1e-7
    ref = resize_shorter_side(read_image(image_file), 64)
    np.testing.assert_allclose(again, ref, atol=1e-4)
    leftovers = [f for _, _, fs in os.walk(tmp_path / "c") for f in fs if f.startswith(".tmp")]
    assert leftovers == [] and os.path.exists(cache.entry_path(image_file))


def test_small_images_not_enlarged_and_key_tracks_file(tmp_path, image_file):
    cache = ImageCache(str(tmp_path / "c"), size=512)
    assert cache.get(image_file).shape == (300, 200)
    key = cache.key(image_file)
    assert ImageCache(str(tmp_path / "c"), size=256).key(image_file) != key  # size in the key
    cv2.imwrite(image_file, np.zeros((300, 200), np.uint8))  # file replaced -> new key
    os.utime(image_file, ns=(1, 1))
    assert cache.key(image_file) != key
    assert cache.load(image_file) is None
    assert cache.get(image_file).max() == 0.0


def test_corrupt_entry_ignored(tmp_path, image_file):
    cache = ImageCache(str(tmp_path / "c"), size=64)
    cache.get(image_file)
    with open(cache.entry_path(image_file), "wb") as f:
        f.write(b"junk")
    assert cache.load(image_file) is None
    assert cache.get(image_file).shape == (96, 64)  # decoded again and rewritten
    with pytest.raises(ValueError, match="format"):
        ImageCache(str(tmp_path), fmt="jpeg")


def test_mapper_uses_cache_transparently(tmp_path, image_file):
    d = {"file_name": image_file, "height": 300, "width": 200, "dataset_name": "toy",
         "cls_labels": [1.0], "annotations": []}  # fmt: skip
    meta = {"toy": {"tasks": ["cls"], "cls_classes": ["x"]}}
    plain = FXDatasetMapper(False, size=48, metadata=meta)(dict(d))
    cache = ImageCache(str(tmp_path / "c"), size=96)
    cached = FXDatasetMapper(False, size=48, metadata=meta, cache=cache)
    first, second = cached(dict(d)), cached(dict(d))
    assert os.path.exists(cache.entry_path(image_file))  # the miss was written
    assert (first["image"] - plain["image"]).abs().mean() < 1.0  # within 1/255 on average
    assert second["image"].equal(first["image"])


def test_cache_images_tool_is_resumable(tmp_path, image_file, capsys):
    import cache_images

    other = os.path.join(os.path.dirname(image_file), "b.png")
    cv2.imwrite(other, np.full((40, 50), 7, np.uint8))
    name = "fxtest_cache_tool"
    files = [image_file, other, str(tmp_path / "missing.png")]
    DatasetCatalog.register(name, lambda: [{"file_name": f} for f in files])
    try:
        args = ["--datasets", name, "--out", str(tmp_path / "c"), "--size", "32", "--workers", "1"]
        cache_images.main(args)
        first = json.loads(capsys.readouterr().out)
        cache_images.main(args + ["--format", "png16"])
        second = json.loads(capsys.readouterr().out)
    finally:
        DatasetCatalog.remove(name)
    assert (first["new"], first["existing"], first["failed"]) == (2, 0, 1)
    assert "missing.png" in first["first_errors"][0]
    assert (second["new"], second["existing"]) == (0, 2)
    assert ImageCache(str(tmp_path / "c"), size=32).load(other).shape == (32, 40)
