"""Fuzz: the image readers over byte mutations of every format the demo replica writes (DICOM
explicit / JPEG baseline / JPEG 2000 / MONOCHROME1 with a window, PNG 8-bit gray and RGB and
16-bit, JPEG, GIF, MetaImage plain and zlib-compressed, JSRT raw) and of plain JPEG 2000 (JP2 and
raw codestream). Each probe flips, overwrites, inserts, deletes or truncates bytes (half of them
in the header) and reads the file with ``read_image`` (also with a ``min_side`` for the formats
decoded at a reduced size), ``read_image_size`` and ``read_mask``: the result is a finite
float32 (H, W) image in [0, 1] (a bool mask, a positive size) or an ``ImageReadError`` naming the
file; any other exception type, or a probe running past its deadline, fails. Hypothesis is
derandomized (tests/conftest.py), so every run draws the same probes; ``PROBES`` per format.
"""

import os
import tempfile

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fx_d2.data.demo.dicom_writer import write_demo_dicom
from fx_d2.data.io import ImageReadError, read_image, read_image_size, read_mask

PROBES = 300
LIMITS = dict(max_pixels=1_000_000, max_bytes=8_000_000)  # small: mutated sizes hit the limits
RNG = np.random.default_rng(13)
IMAGE = (RNG.random((36, 44)) * 4095).astype(np.uint16)


def _dicom(folder, name, syntax, photometric="MONOCHROME2", window=None):
    pixels = IMAGE if syntax != "jpeg_baseline" else (IMAGE >> 4).astype(np.uint8)
    path = os.path.join(folder, name)
    write_demo_dicom(path, pixels, sop_uid="1.2.3.4", study_uid="1.2.3", series_uid="1.2.3.5",
                     patient_id="P1", bits_stored=12 if pixels.dtype == np.uint16 else 8,
                     photometric=photometric, syntax=syntax, window=window)  # fmt: skip
    return path


def _seeds(folder):
    """name -> bytes of one small file per demo format."""
    import SimpleITK as sitk

    paths = {
        "explicit.dcm": _dicom(folder, "explicit.dcm", "explicit"),
        "jpeg": _dicom(folder, "1.2.276.0.7230010", "jpeg_baseline"),  # extension-less
        "j2k.dicom": _dicom(folder, "j2k.dicom", "j2k_lossless", "MONOCHROME1", (2000, 3000)),
    }
    gray8 = (IMAGE >> 4).astype(np.uint8)
    for name, array in (("gray8.png", gray8), ("gray16.png", IMAGE),
                        ("rgb.png", np.dstack([gray8] * 3)), ("image.jpg", gray8)):  # fmt: skip
        paths[name] = os.path.join(folder, name)
        cv2.imwrite(paths[name], array)
    paths["mask.gif"] = os.path.join(folder, "mask.gif")
    Image.fromarray(((IMAGE > 2000) * 255).astype(np.uint8)).save(paths["mask.gif"])
    for name, compress in (("plain.mha", False), ("zlib.mha", True)):
        paths[name] = os.path.join(folder, name)
        sitk.WriteImage(sitk.GetImageFromArray(IMAGE.astype(np.int16)), paths[name], compress)
    from openjpeg.utils import encode_array

    for name, codec in (("image.jp2", 1), ("image.j2k", 0)):
        paths[name] = os.path.join(folder, name)
        with open(paths[name], "wb") as f:
            f.write(encode_array(IMAGE, bits_stored=12, photometric_interpretation=2,
                                 codec_format=codec))  # fmt: skip
    paths["JPCLN001.IMG"] = os.path.join(folder, "JPCLN001.IMG")
    IMAGE[:36, :36].astype(">u2").tofile(paths["JPCLN001.IMG"])
    return {name: open(path, "rb").read() for name, path in paths.items()}


SEEDS = _seeds(tempfile.mkdtemp(prefix="fx_fuzz_seeds_"))
SCALED = {"jpeg", "j2k.dicom", "image.jpg", "image.jp2", "image.j2k"}  # also read with min_side


@st.composite
def mutated(draw, data: bytes):
    """``data`` with 1-4 random edits; positions fall in the first 512 bytes half of the time."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        head = draw(st.booleans())
        pos = draw(st.integers(0, min(len(data), 512) - 1 if head else len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "extreme", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "set":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
        elif kind == "extreme":  # size fields: zero, all ones, huge
            chunk = draw(st.sampled_from([b"\x00\x00", b"\xff\xff", b"\xff\xff\xff\x7f",
                                          b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]))  # fmt: skip
            data[pos : pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            del data[pos:]
    return bytes(data)


def _probe(name: str, data: bytes, no_hang) -> None:
    with tempfile.TemporaryDirectory(prefix="fx_fuzz_") as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        with no_hang(20):
            for min_side in (None, 16) if name in SCALED else (None,):
                try:
                    image = read_image(path, min_side, **LIMITS)
                except ImageReadError as err:
                    assert name in str(err)
                else:
                    assert image.dtype == np.float32 and image.ndim == 2 and image.size > 0
                    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
            try:
                height, width = read_image_size(path, max_pixels=LIMITS["max_pixels"])
                assert height > 0 and width > 0
            except ImageReadError as err:
                assert name in str(err)
            if name.endswith((".png", ".gif")):
                try:
                    assert read_mask(path, **LIMITS).dtype == bool
                except ImageReadError as err:
                    assert name in str(err)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_readers_survive_byte_mutations(name, no_hang):
    assert read_image(os.path.join(_write_seed(name)), **LIMITS).shape[0] > 0  # the seed reads

    @settings(max_examples=PROBES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=mutated(SEEDS[name]))
    def probe(data):
        _probe(name, data, no_hang)

    probe()


def _write_seed(name):
    folder = tempfile.mkdtemp(prefix="fx_fuzz_seed_")
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(SEEDS[name])
    return path
