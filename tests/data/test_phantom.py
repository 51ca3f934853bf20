"""Synthetic chest phantoms: anatomy, determinism, and lesion masks that agree with the pixels."""

import json
import os

import cv2
import numpy as np
import pytest

from fx_d2.data.demo.phantom import FINDINGS, RIBS, make_phantom, mask_box, to_uint8, to_uint16
from fx_d2.utils.registry import Registry

IN_LUNG = ("effusion", "consolidation", "nodule", "mass", "pneumothorax", "atelectasis", "edema",
           "tb", "calcification", "fibrosis", "emphysema", "pleural_thickening", "infiltration",
           "diffuse_nodule", "tb_obsolete")  # fmt: skip
BRIGHTER = ("effusion", "consolidation", "nodule", "mass", "atelectasis", "edema", "tb",
            "calcification", "fibrosis", "pleural_thickening", "infiltration", "diffuse_nodule",
            "support_device", "tb_obsolete")  # fmt: skip


def _ring(mask, px=3):
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0
    return grown & ~mask


def test_deterministic_given_rng():
    a = make_phantom(np.random.default_rng(5), 96, 112, ["nodule", "fracture"])
    b = make_phantom(np.random.default_rng(5), 96, 112, ["nodule", "fracture"])
    c = make_phantom(np.random.default_rng(6), 96, 112, ["nodule", "fracture"])
    assert np.array_equal(a.image, b.image)
    assert all(np.array_equal(a.organs[k], b.organs[k]) for k in a.organs)
    assert [le.box for le in a.lesions] == [le.box for le in b.lesions]
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("hw", [(64, 64), (128, 96), (256, 256)])
def test_structure_and_orientation(hw):
    p = make_phantom(np.random.default_rng(0), *hw)
    assert p.image.shape == hw and p.image.dtype == np.float32
    assert 0.0 <= p.image.min() and p.image.max() <= 1.0
    assert list(p.ribs) == list(RIBS)
    assert set(p.organs) == {"left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle"}
    for m in list(p.organs.values()) + list(p.ribs.values()):
        assert m.dtype == bool and m.shape == hw and m.any()
    # PA view: the patient's right lung/clavicle lie on the image LEFT.
    cx = {k: np.nonzero(m)[1].mean() for k, m in p.organs.items()}
    assert cx["right_lung"] < hw[1] / 2 < cx["left_lung"]
    assert cx["right_clavicle"] < cx["left_clavicle"]
    # Lungs are dark, the heart is dense; ribs run top to bottom.
    assert p.image[p.organs["heart"]].mean() > p.image[p.organs["left_lung"]].mean() + 0.2
    tops = [np.nonzero(p.ribs[f"R{i}"])[0].mean() for i in range(1, 11)]
    assert tops == sorted(tops)


@pytest.mark.parametrize("kind", FINDINGS)
def test_lesion_masks_agree_with_pixels(kind):
    base_seed = FINDINGS.index(kind)
    p = make_phantom(np.random.default_rng(base_seed), 160, 160, [kind])
    lesions = [le for le in p.lesions if le.kind == kind]
    assert lesions, kind
    lungs = p.organs["left_lung"] | p.organs["right_lung"]
    for le in lesions:
        assert le.mask.dtype == bool and le.mask.any()
        x0, y0, x1, y1 = (int(v) for v in le.box)  # tight: mask touches all four sides
        assert le.mask[y0:y1, x0:x1].sum() == le.mask.sum()
        assert le.mask[y0].any() and le.mask[y1 - 1].any()
        assert le.mask[:, x0].any() and le.mask[:, x1 - 1].any()
        if kind in IN_LUNG:
            assert not (le.mask & ~lungs).any(), f"{kind} leaks outside the lungs"
        ring = _ring(le.mask)
        if kind in IN_LUNG and (ring & lungs).any():
            ring &= lungs  # compare with the lung around the lesion, not the mediastinum
        inside, around = p.image[le.mask].mean(), p.image[ring].mean()
        if kind in BRIGHTER:
            assert inside > around + 0.05, (kind, inside, around)
        if kind in ("pneumothorax", "emphysema"):
            assert inside < 0.12, (kind, inside)


def test_cardiomegaly_enlarges_heart():
    def ctr(findings, seed):
        p = make_phantom(np.random.default_rng(seed), 128, 128, findings)
        heart_w = np.ptp(np.nonzero(p.organs["heart"])[1])
        lungs = p.organs["left_lung"] | p.organs["right_lung"]
        return heart_w / np.ptp(np.nonzero(lungs)[1])

    assert min(ctr(["cardiomegaly"], s) for s in range(5)) > max(ctr([], s) for s in range(5))
    p = make_phantom(np.random.default_rng(0), 128, 128, ["cardiomegaly"])
    assert np.array_equal(p.lesions[0].mask, p.organs["heart"])


def test_pneumothorax_has_no_vessels_and_a_pleural_line():
    p = make_phantom(np.random.default_rng(3), 192, 192, ["pneumothorax"])
    m = p.lesions[0].mask
    normal = make_phantom(np.random.default_rng(3), 192, 192, [])
    assert p.image[m].std() < normal.image[m].std()  # no vessel texture in the crescent
    line = _ring(m, 1) & (p.organs["left_lung"] | p.organs["right_lung"])
    assert p.image[line].mean() > p.image[m].mean() + 0.2


def test_fracture_breaks_a_rib():
    p = make_phantom(np.random.default_rng(1), 256, 256, ["fracture"])
    frac = p.lesions[0].mask
    broken = [k for k, m in p.ribs.items() if (m & frac).any()]
    assert broken
    rib = p.ribs[broken[0]]
    x0, _, x1, _ = mask_box(frac)
    cols = rib[:, int(x0) : int(x1)].any(axis=0)
    assert cols.any() and not cols.all()  # a gap in the rib inside the lesion


def test_errors_and_converters():
    with pytest.raises(ValueError, match="unknown phantom finding"):
        make_phantom(np.random.default_rng(0), findings=["tumour"])
    with pytest.raises(ValueError, match="too small"):
        make_phantom(np.random.default_rng(0), 16, 16)
    img = np.array([[0.0, 0.5, 1.0, 2.0]], np.float32)
    assert to_uint8(img).tolist() == [[0, 128, 255, 255]]
    assert to_uint16(img, bits=12).tolist() == [[0, 2048, 4095, 4095]]
    assert to_uint16(img).dtype == np.uint16


def test_build_demo_deterministic_atomic_and_skips(tmp_path, monkeypatch):
    from fx_d2.data.demo import build as build_mod

    calls = []

    def writer(parent, rng):
        calls.append(1)
        os.makedirs(os.path.join(parent, "toy"))
        np.save(os.path.join(parent, "toy", "x.npy"), rng.random(4))

    def broken(parent, rng):
        os.makedirs(os.path.join(parent, "bad"))
        raise RuntimeError("writer crashed")

    registry = Registry("TEST_DEMO_WRITER")
    registry.register(writer, name="toy")
    registry.register(broken, name="bad")
    monkeypatch.setattr(build_mod, "DEMO_WRITER_REGISTRY", registry)
    stats = build_mod.build_demo(str(tmp_path / "a"), seed=3, keys=["toy"])
    build_mod.build_demo(str(tmp_path / "b"), seed=3, keys=["toy"])
    a, b = (np.load(tmp_path / r / "toy" / "x.npy") for r in "ab")
    assert np.array_equal(a, b) and stats["toy"]["files"] == 1
    assert not np.array_equal(a, build_mod.key_rng(4, "toy").random(4))
    build_mod.build_demo(str(tmp_path / "a"), seed=3, keys=["toy"], skip_existing=True)
    assert len(calls) == 2  # skipped the third time
    with pytest.raises(RuntimeError, match="crashed"):
        build_mod.build_demo(str(tmp_path / "a"), seed=3, keys=["bad"])
    assert sorted(os.listdir(tmp_path / "a")) == ["DEMO_MANIFEST.json", "toy"]  # nothing partial
    with pytest.raises(KeyError, match="no demo writer"):
        build_mod.build_demo(str(tmp_path / "a"), keys=["nope"])


def test_demo_replica_budget(demo_root):
    from fx_d2.data.demo import DEMO_WRITER_REGISTRY

    with open(os.path.join(demo_root, "DEMO_MANIFEST.json")) as f:
        manifest = json.load(f)
    assert set(manifest["datasets"]) == set(DEMO_WRITER_REGISTRY.names())
    assert sum(s["bytes"] for s in manifest["datasets"].values()) <= 120e6
