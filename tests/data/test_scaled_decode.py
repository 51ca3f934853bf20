"""read_image(path, min_side): JPEG 2000 at a reduced wavelet level and JPEG at a DCT scale.

Quality against a full decode followed by an area resize to the same size: the gate (mean <= 0.5 %,
max <= 5 % of the range) for JPEG at every scale and JPEG 2000 one level down; JPEG 2000 two and
three levels down alias more (its low-pass is not a box filter) and are held to the looser bounds
measured here. The phantom gets a detector's blur (Gaussian, 1 px) and the DICOMs a window, so that
neither pixel-sharp edges nor a min-max range set by a single pixel decide the figures (both are
measured in benchmarks/data.py). Also: level and size selection, the DICOM intensity
steps identical at every resolution, plain .jp2 / .j2k files, the mapper and cache passing their
target size, bad input.
"""

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from pydicom.sequence import Sequence

from fx_d2.data.cache import ImageCache
from fx_d2.data.codestream import J2KHeader, j2k_header
from fx_d2.data.demo.dicom_writer import write_demo_dicom
from fx_d2.data.demo.phantom import make_phantom, to_uint8, to_uint16
from fx_d2.data.io import ImageReadError, detect_format, read_image, read_image_size
from fx_d2.data.mapper import FXDatasetMapper, read_image_min_side
from fx_d2.data.scaled_decode import (
    ReducedGrid,
    decode_dicom_scaled,
    j2k_level,
    j2k_level_size,
)

H, W = 1000, 1200  # big enough for 3 reduction steps, small enough to encode in ~0.3 s
MEAN_TOL, MAX_TOL = 0.005, 0.05  # the gate, of the [0, 1] range
# JPEG 2000 levels 2, 3: measured mean / max 0.4-0.5 / 8-10 % and 0.7-0.8 / 9-11 % (5/3 and 9/7)
DEEP_TOLS = {2: (0.006, 0.12), 3: (0.009, 0.13)}
WINDOW = (2048.0, 4096.0)  # the whole 12-bit range


@pytest.fixture(scope="module")
def phantom():
    img = make_phantom(np.random.default_rng(3), H, W, ["nodule", "effusion"]).image
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def _dicom(path, pixels, syntax, **kwargs):
    bits = kwargs.pop("bits_stored", 12 if pixels.dtype == np.uint16 else 8)
    write_demo_dicom(str(path), pixels, sop_uid="1.2.3.4", study_uid="1.2.3", series_uid="1.2.3.5",
                     patient_id="P", bits_stored=bits, syntax=syntax, **kwargs)  # fmt: skip
    return str(path)


@pytest.fixture(scope="module")
def j2k_dicom(tmp_path_factory, phantom):
    path = tmp_path_factory.mktemp("j2k") / "a.dcm"
    return _dicom(path, to_uint16(phantom, 12), "j2k_lossless", window=WINDOW)


def _area(img, shape):
    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _assert_close_to_area_resize(full, reduced, level=1):
    mean_tol, max_tol = DEEP_TOLS.get(level, (MEAN_TOL, MAX_TOL))
    diff = np.abs(_area(full, reduced.shape) - reduced)
    assert diff.mean() <= mean_tol and diff.max() <= max_tol, (diff.mean(), diff.max())


def test_level_selection():
    header = J2KHeader(0, 0, 3000, 2500, 1, 12, False, 5)
    assert j2k_level_size(header, 2) == (625, 750)
    assert [j2k_level(header, s) for s in (2500, 1251, 1250, 512, 313, 312, 1)] == [
        0,
        0,
        1,
        2,
        3,
        3,
        5,
    ]
    odd = J2KHeader(0, 0, 3001, 2503, 1, 12, False, 5)
    assert j2k_level_size(odd, 3) == (313, 376)  # ceil, where Pillow's reduce rounds to 312x375
    few = J2KHeader(0, 0, 3000, 2500, 1, 12, False, 1)
    assert j2k_level(few, 100) == 1  # fewer levels than asked: the coarsest the stream has


@pytest.mark.parametrize("min_side,level", [(H, 0), (500, 1), (400, 1), (250, 2), (125, 3)])
def test_j2k_dicom_reduced_level_and_quality(j2k_dicom, min_side, level):
    full = read_image(j2k_dicom)
    reduced = read_image(j2k_dicom, min_side)
    assert reduced.shape == (-(-H // 2**level), -(-W // 2**level))
    assert min(reduced.shape) >= min_side
    if level == 0:
        np.testing.assert_array_equal(reduced, full)
    else:
        _assert_close_to_area_resize(full, reduced, level)


def test_j2k_lossy_dicom_reduced(tmp_path, phantom):
    import pydicom
    from pydicom.uid import JPEG2000

    pixels = to_uint16(phantom, 12)
    path = _dicom(tmp_path / "lossy.dcm", pixels, "explicit", window=WINDOW)
    ds = pydicom.dcmread(path)
    ds.compress(JPEG2000, pixels, j2k_cr=[10], generate_instance_uid=False)  # 9/7 wavelet
    ds.save_as(path, enforce_file_format=True)
    full = read_image(path)
    for min_side, level in ((500, 1), (250, 2), (125, 3)):
        reduced = read_image(path, min_side)
        assert reduced.shape == (-(-H // 2**level), -(-W // 2**level))
        _assert_close_to_area_resize(full, reduced, level)


def test_j2k_odd_size_levels_match_pillow_where_it_can(tmp_path):
    # 501x603 (odd): Pillow's own reduce refuses levels 2+ (it rounds the size); ours decodes
    # OpenJPEG's ceil size, and equals Pillow's output where Pillow decodes.
    pixels = to_uint16(make_phantom(np.random.default_rng(5), 501, 603, []).image, 12)
    path = _dicom(tmp_path / "odd.dcm", pixels, "j2k_lossless")
    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    for min_side, level in ((250, 1), (125, 2), (62, 3)):
        stored, grid = decode_dicom_scaled(ds, min_side)
        assert grid == ReducedGrid((501, 603), 2**level, 0.5)
        assert stored.dtype == np.uint16
        assert stored.shape == (-(-501 // 2**level), -(-603 // 2**level))
        with Image.open(io.BytesIO(frame)) as im:
            im.reduce = level
            try:
                im.load()
            except OSError:
                continue  # the size Pillow rounds to is not OpenJPEG's
            np.testing.assert_array_equal(np.asarray(im) >> 4, stored)
    assert decode_dicom_scaled(ds, 251) is None  # no level keeps 251: decode in full


def _with_tags(ds, **tags):
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


VOI_CASES = {
    "window": dict(WindowCenter=1800.0, WindowWidth=1200.0),
    "no_voi": {},
    "rescale_window": dict(RescaleSlope=0.5, RescaleIntercept=-100.0, WindowCenter=800.0,
                           WindowWidth=900.0),
    "voi_lut": "lut",
    "monochrome1_window": dict(PhotometricInterpretation="MONOCHROME1", WindowCenter=2000.0,
                               WindowWidth=3000.0),
}  # fmt: skip


def _voi_lut_item():
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    table = (np.sqrt(np.arange(4096) / 4095.0) * 4095).astype(np.uint16)
    item.add_new("LUTData", "US", table.tolist())
    return item


@pytest.mark.parametrize("case", sorted(VOI_CASES))
def test_intensity_steps_identical_at_every_level(tmp_path, phantom, case):
    """The reduced stored values go through exactly the Modality LUT / VOI / MONOCHROME1 steps of
    an uncompressed file holding them: read_image(j2k, min_side) equals that file's read_image."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    pixels = to_uint16(phantom[::2, ::2], 12)  # 500x600: levels 0-3 checked in ~1 s
    tags = VOI_CASES[case]
    src = pydicom.dcmread(_dicom(tmp_path / "src.dcm", pixels, "j2k_lossless"))
    if tags == "lut":
        src.VOILUTSequence = Sequence([_voi_lut_item()])
    else:
        _with_tags(src, **tags)
    j2k = str(tmp_path / "j2k.dcm")
    src.save_as(j2k, enforce_file_format=True)
    for min_side in (None, 250, 125, 62):
        reduced = decode_dicom_scaled(pydicom.dcmread(j2k), min_side) if min_side else None
        stored, grid = reduced or (pixels, None)
        plain = pydicom.dcmread(j2k)
        plain.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        plain.Rows, plain.Columns = stored.shape
        plain.PixelData = np.ascontiguousarray(stored).tobytes()
        ref = str(tmp_path / f"plain_{min_side}.dcm")
        plain.save_as(ref, enforce_file_format=True)
        expected = grid.align(read_image(ref)) if grid else read_image(ref)
        np.testing.assert_array_equal(read_image(j2k, min_side), expected)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_jpeg_dicom_reduced(tmp_path, phantom, photometric):
    pixels = to_uint8(phantom)
    stored = 255 - pixels if photometric == "MONOCHROME1" else pixels
    window = (128.0, 256.0)
    path = _dicom(
        tmp_path / "j.dcm", stored, "jpeg_baseline", photometric=photometric, window=window
    )
    full = read_image(path)
    for min_side, factor in ((500, 2), (250, 4), (125, 8), (60, 8)):
        reduced = read_image(path, min_side)
        assert reduced.shape == (-(-H // factor), -(-W // factor))
        _assert_close_to_area_resize(full, reduced)
    np.testing.assert_array_equal(read_image(path, 501), full)


@pytest.mark.parametrize("colour", [False, True])
def test_jpeg_file_reduced(tmp_path, phantom, colour):
    img = to_uint8(phantom)
    if colour:  # a tinted colour copy: luma, by cv2 in full and from Pillow's RGB when reduced
        img = np.dstack([img, (img * 0.9).astype(np.uint8), (img * 0.8).astype(np.uint8)])
    path = str(tmp_path / "a.jpg")
    cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    full = read_image(path)
    for min_side, factor in ((500, 2), (250, 4), (100, 8)):
        reduced = read_image(path, min_side)
        assert reduced.shape == (-(-H // factor), -(-W // factor))
        _assert_close_to_area_resize(full, reduced)
    np.testing.assert_array_equal(read_image(path, 10**6), full)  # larger than the image


@pytest.mark.parametrize("container", ["jp2", "j2k"])
def test_plain_jpeg2000_files(tmp_path, phantom, container):
    from openjpeg.utils import encode_array

    pixels = to_uint16(phantom, 12)
    data = encode_array(pixels, bits_stored=12, photometric_interpretation=2,
                        codec_format=1 if container == "jp2" else 0)  # fmt: skip
    path = str(tmp_path / f"a.{container}")
    with open(path, "wb") as f:
        f.write(data)
    assert detect_format(path) == "jpeg2000" and read_image_size(path) == (H, W)
    full = read_image(path)
    np.testing.assert_array_equal(full, pixels.astype(np.float32) / np.float32(4095))
    for min_side, level in ((500, 1), (250, 2), (125, 3)):
        reduced = read_image(path, min_side)
        assert reduced.shape == j2k_level_size(J2KHeader(0, 0, W, H, 1, 12, False, 5), level)
        _assert_close_to_area_resize(full, reduced, level)
    with open(path, "wb") as f:  # cut: no FFD9 end marker
        f.write(data[: len(data) // 2])
    for min_side in (None, 250):
        with pytest.raises(ImageReadError, match="truncated"):
            read_image(path, min_side)


def test_stream_with_fewer_levels_uses_its_coarsest(tmp_path, phantom):
    pixels = (to_uint16(phantom, 12) << 4)[:, :]  # Pillow writes 16-bit precision
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG2000", num_resolutions=2, irreversible=False)
    path = str(tmp_path / "few.jp2")
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    full, reduced = read_image(path), read_image(path, 60)  # asks for 8x, the stream has 2x
    assert reduced.shape == (H // 2, W // 2)
    _assert_close_to_area_resize(full, reduced)


def test_corrupt_streams_raise_with_min_side(tmp_path, j2k_dicom):
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(j2k_dicom)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    cuts = {"truncated": frame[: len(frame) // 3],
            "garbage": frame[:200] + bytes(len(frame) - 202) + b"\xff\xd9"}  # fmt: skip
    for name, data in cuts.items():
        ds.PixelData = encapsulate([data])
        path = str(tmp_path / f"{name}.dcm")
        ds.save_as(path, enforce_file_format=True)
        with pytest.raises(ImageReadError) as full_error:
            read_image(path)
        with pytest.raises(ImageReadError) as reduced_error:
            read_image(path, 125)
        assert str(reduced_error.value) == str(full_error.value)


def test_mapper_and_cache_pass_their_target_size(tmp_path, j2k_dicom, monkeypatch):
    assert read_image_min_side(1000, 1200, (224, 224)) == 224
    assert read_image_min_side(1200, 1000, (512, 512)) == 512
    assert read_image_min_side(1000, 2000, (256, 256)) == 256  # both axes covered
    assert read_image_min_side(1000, 1200, (250, 300)) == 250  # shortest_edge
    assert read_image_min_side(1000, 3000, (100, 200)) == 100  # longer side capped
    import fx_d2.data.cache as cache_module
    import fx_d2.data.mapper as mapper_module

    calls = []

    def spy(path, min_side=None, **kwargs):
        calls.append(min_side)
        return read_image(path, min_side, **kwargs)

    monkeypatch.setattr(mapper_module, "read_image", spy)
    monkeypatch.setattr(cache_module, "read_image", spy)
    d = {"file_name": j2k_dicom, "height": H, "width": W, "dataset_name": "t",
         "cls_labels": [1.0], "annotations": []}  # fmt: skip
    meta = {"t": {"tasks": ["cls"]}}
    outs = {}
    for scaled, margin in ((True, 0), (False, 0), (True, 1)):
        mapper = FXDatasetMapper(False, size=224, metadata=meta, seed=0, scaled_decode=scaled,
                                 scaled_decode_margin=margin)  # fmt: skip
        outs[scaled, margin] = mapper(dict(d))["image"]
    assert calls == [224, None, 448]
    diff = (outs[True, 0] - outs[False, 0]).abs() / 255.0  # level 2 (250 px) resized to 224
    assert float(diff.mean()) <= DEEP_TOLS[2][0] and float(diff.max()) <= DEEP_TOLS[2][1]
    # one level finer (500 px), the area resize does the rest: the gate holds at the output
    diff = (outs[True, 1] - outs[False, 0]).abs() / 255.0
    assert float(diff.mean()) <= MEAN_TOL and float(diff.max()) <= MAX_TOL
    cache = ImageCache(str(tmp_path / "c"), size=300)
    assert cache.get(j2k_dicom).shape == (300, 360) and calls[-1] == 300
    full = ImageCache(str(tmp_path / "c"), size=300, scaled_decode=False)
    finer = ImageCache(str(tmp_path / "c"), size=300, decode_margin=1)
    full.get(j2k_dicom)
    assert calls[-1] is None
    assert finer.get(j2k_dicom).shape == (300, 360) and calls[-1] == 600
    # each decode mode has entries of its own
    assert len({c.entry_path(j2k_dicom) for c in (cache, full, finer)}) == 3


@pytest.mark.parametrize("margin", [-1, 4, 1.5, True, "1"])
def test_decode_margin_must_be_a_small_integer(margin):
    with pytest.raises(ValueError, match="SCALED_DECODE_MARGIN"):
        ImageCache("unused", size=300, decode_margin=margin)
    with pytest.raises(ValueError, match="SCALED_DECODE_MARGIN"):
        FXDatasetMapper(False, size=224, metadata={}, scaled_decode_margin=margin)


def test_header_parse_refuses_what_it_cannot_size():
    assert j2k_header(b"\xff\xd8\xff\xe0" + bytes(60)) is None  # JPEG, not JPEG 2000
    assert j2k_header(b"\xff\x4f\xff\x51" + bytes(10)) is None  # cut SIZ


def test_cache_images_tool_decodes_at_its_size(tmp_path, phantom, capsys, monkeypatch):
    import json
    import os

    from detectron2.data import DatasetCatalog

    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
    import cache_images

    path = str(tmp_path / "a.jpg")
    cv2.imwrite(path, to_uint8(phantom), [cv2.IMWRITE_JPEG_QUALITY, 95])
    name = "fxtest_scaled_cache_tool"
    DatasetCatalog.register(name, lambda: [{"file_name": path}])
    entries = []
    try:
        for flags, min_side in (([], 200), (["--full-decode"], None)):
            out = str(tmp_path / f"c{len(flags)}")
            args = ["--datasets", name, "--out", out, "--size", "200", "--workers", "1"]
            cache_images.main(args + flags)
            assert json.loads(capsys.readouterr().out)["new"] == 1
            cache = ImageCache(out, size=200, scaled_decode=not flags)
            entries.append(np.round(cache.load(path) * 65535.0).astype(np.uint16))
            np.testing.assert_array_equal(entries[-1], cache.quantize(read_image(path, min_side)))
        with pytest.raises(SystemExit):  # refused before any worker starts
            cache_images.main(args + ["--decode-margin", "9"])
        assert "--decode-margin" in capsys.readouterr().err
    finally:
        DatasetCatalog.remove(name)
    assert not np.array_equal(entries[0], entries[1])  # the flag changes how it decodes


@pytest.mark.parametrize(
    "key", ["chexpert", "mimic_cxr", "vindr_cxr", "rsna_pneumonia", "siim_acr"]
)
def test_demo_config_decodes_the_demo_images_as_before(demo_datasets, key):
    """`make demo` keeps its numbers: its JPEG / JPEG 2000 images (at most 256 px) are below twice
    its 160 px input, so the mapper's read with SCALED_DECODE on is the full decode, bit for bit."""
    import os

    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog

    import fx_d2  # noqa: F401  registers the fx_* names
    from fx_d2.config import add_fx_config

    cfg = add_fx_config(get_cfg())
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    cfg.merge_from_file(os.path.join(root, "configs", "demo", "fx_demo.yaml"))
    assert cfg.INPUT.FX.SCALED_DECODE
    mapper = FXDatasetMapper(cfg, is_train=True)
    dicts = DatasetCatalog.get(f"fx_{key}_train")
    biggest = sorted(dicts, key=lambda d: -min(d["height"], d["width"]))[:4]
    for d in biggest:
        assert detect_format(d["file_name"]) in ("dicom", "jpeg")
        np.testing.assert_array_equal(mapper._read(d), read_image(d["file_name"]))
