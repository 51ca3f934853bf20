"""Readers on hostile or careless input: every failure is an ImageReadError naming the file with
the original exception as ``__cause__``; bombs are refused before decoding in every format; a
MetaImage header cannot point the reader at another file, a FIFO or a device; NaN pixels are an
error; a truncated JPEG 2000 DICOM says so."""

import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from fx_d2.data.io import ImageReadError, read_image, read_image_size, read_mask
from fx_d2.testing.time_limit import time_limit

A12 = (np.random.default_rng(1).random((40, 56)) * 4095).astype(np.uint16)


def dicom(path, arr=A12, syntax=ExplicitVRLittleEndian, **attrs):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.set_pixel_data(arr, photometric_interpretation="MONOCHROME2", bits_stored=12)
    if syntax == JPEG2000Lossless:
        ds.compress(syntax, arr)
    ds.file_meta.TransferSyntaxUID = syntax  # deflated: pydicom deflates when saving
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)


def refused(path, pattern, cause=None, **kwargs):
    with time_limit(10):
        with pytest.raises(ImageReadError) as err:
            read_image(str(path), **kwargs)
    assert os.path.basename(str(path)) in str(err.value)
    assert err.match(pattern)
    if cause is not None:
        assert type(err.value.__cause__).__name__ == cause
    return err.value


# ------------------------------------------------------------------------------ item 3: DICOM


def test_dicom_multivalued_or_empty_header_fields(tmp_path):
    refused(dicom(tmp_path / "frames.dcm", NumberOfFrames=[1, 2]), "NumberOfFrames has 2 values")
    path = dicom(tmp_path / "rows.dcm")
    data = open(path, "rb").read()
    rows = b"\x28\x00\x10\x00US\x02\x00" + struct.pack("<H", A12.shape[0])
    open(path, "wb").write(data.replace(rows, b"\x28\x00\x10\x00US\x00\x00"))  # Rows empty
    refused(path, "Rows is missing or empty")
    # a US element 3 bytes long: pydicom raises BytesLengthException when reading it
    open(path, "wb").write(data.replace(rows, b"\x28\x00\x10\x00US\x03\x00\x28\x00\x00"))
    refused(path, "Rows.*BytesLengthException|BytesLengthException", "BytesLengthException")


def test_dicom_non_numeric_window_falls_back_to_min_max(tmp_path):
    path = dicom(tmp_path / "wc.dcm", WindowCenter="1234", WindowWidth="100")
    data = open(path, "rb").read()
    assert data.count(b"DS\x04\x001234") == 1
    open(path, "wb").write(data.replace(b"DS\x04\x001234", b"DS\x04\x00abcd"))  # not a number
    got = read_image(path)
    expected = (A12 - A12.min()) / float(A12.max() - A12.min())
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_dicom_nan_rescale_is_an_error(tmp_path):
    refused(dicom(tmp_path / "nan.dcm", RescaleSlope="NaN", RescaleIntercept="0"),
            "values after the Modality LUT are NaN or infinite")  # fmt: skip


def test_truncated_jpeg2000_dicom_says_truncated(tmp_path):
    path = dicom(tmp_path / "j2k.dcm", syntax=JPEG2000Lossless)
    data = open(path, "rb").read()
    (tmp_path / "cut.dcm").write_bytes(data[:-40])  # the file ends inside the pixel data
    refused(tmp_path / "cut.dcm", "truncated: the file ends inside its JPEG 2000")
    import pydicom

    ds = pydicom.dcmread(path)
    fragment = list(generate_fragments(ds.PixelData))[1]  # [0]: the Basic Offset Table
    ds.PixelData = encapsulate([fragment[:-300]])  # a complete file with a cut codestream
    ds.save_as(str(tmp_path / "cutstream.dcm"))
    refused(tmp_path / "cutstream.dcm", "truncated: the stream has no FFD9 end marker")


def test_codestream_size_must_match_the_header(tmp_path):
    path = dicom(tmp_path / "j2k.dcm", syntax=JPEG2000Lossless)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Rows = 20  # the codestream still says 40
    ds.save_as(str(tmp_path / "lie.dcm"))
    refused(tmp_path / "lie.dcm", "declares 40x56 pixels but Rows x Columns is 20x56")


def test_deflated_dicom_bomb(tmp_path):
    # 20 MB of zeros in a private element deflate to ~20 kB; pydicom would inflate them all
    path = dicom(tmp_path / "deflate.dcm", syntax=DeflatedExplicitVRLittleEndian)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.add_new(0x00091010, "OB", b"\x00" * 20_000_000)
    ds.save_as(path)
    assert os.path.getsize(path) < 100_000
    assert read_image(path, max_bytes=30_000_000).shape == A12.shape
    refused(path, "inflates to more than", max_bytes=100_000)


# ------------------------------------------------------------------------------ item 3: bombs


def test_pil_bombs_are_image_read_errors(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "s.gif")
    data = bytearray((tmp_path / "s.gif").read_bytes())
    data[6:10] = struct.pack("<HH", 65535, 65535)
    i = data.find(b",")
    data[i + 5 : i + 9] = struct.pack("<HH", 65535, 65535)
    (tmp_path / "bomb.gif").write_bytes(bytes(data))
    refused(tmp_path / "bomb.gif", "decompression bomb", "DecompressionBombError")
    with pytest.raises(ImageReadError, match="bomb.gif.*decompression bomb"):
        read_mask(str(tmp_path / "bomb.gif"))
    cv2.imwrite(str(tmp_path / "s.jpg"), np.zeros((8, 8), np.uint8))
    data = bytearray((tmp_path / "s.jpg").read_bytes())
    i = data.find(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", 60000, 60000)
    (tmp_path / "bomb.jpg").write_bytes(bytes(data))
    refused(tmp_path / "bomb.jpg", "decompression bomb", "DecompressionBombError")


def test_decoded_bytes_limit_applies_to_every_format(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint16)
    cv2.imwrite(str(tmp_path / "rgba16.png"), rgba)  # 8 bytes a pixel
    refused(tmp_path / "rgba16.png", "32768 decoded bytes, more than max_bytes=20000",
            max_bytes=20_000)  # fmt: skip
    cv2.imwrite(str(tmp_path / "g.jpg"), np.zeros((64, 64), np.uint8))
    refused(tmp_path / "g.jpg", "max_bytes=4000", max_bytes=4_000)
    refused(dicom(tmp_path / "d.dcm"), "max_bytes=4000", max_bytes=4_000)
    np.zeros((64, 64), ">u2").tofile(tmp_path / "JPCLN001.IMG")
    refused(tmp_path / "JPCLN001.IMG", "max_bytes=4000", max_bytes=4_000)


def test_other_exception_types_are_wrapped_with_the_cause(tmp_path, monkeypatch):
    import fx_d2.data.io as io_module

    def broken(*args, **kwargs):
        raise TypeError("decoder bug")

    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((8, 8), np.uint8))
    monkeypatch.setattr(io_module.cv2, "imdecode", broken)
    err = refused(tmp_path / "ok.png", "TypeError: decoder bug", "TypeError")
    assert isinstance(err, ValueError)


# ------------------------------------------------------------------------------ item 4: .mha


def mha(folder, name, data_file="LOCAL", payload=None, element="MET_USHORT", dims=(16, 16)):
    header = (
        f"ObjectType = Image\nNDims = 2\nDimSize = {dims[0]} {dims[1]}\n"
        f"ElementType = {element}\nElementDataFile = {data_file}\n"
    ).encode()
    if payload is None:
        payload = np.arange(dims[0] * dims[1], dtype="<u2").tobytes()
    path = folder / name
    path.write_bytes(header + (payload if data_file == "LOCAL" else b""))
    return path


def test_mha_element_data_file_stays_in_its_folder(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"x" * 512)
    data = tmp_path / "images"
    data.mkdir()
    refused(mha(data, "abs.mha", str(outside)), "not a file name in the header's folder")
    refused(mha(data, "up.mha", "../secret.txt"), "not a file name in the header's folder")
    refused(mha(data, "zero.mha", "/dev/zero", dims=(9000, 9000)), "max_pixels|not a file name")
    os.symlink(outside, data / "link.raw")
    refused(mha(data, "link.mha", "link.raw"), "links out of its folder")
    os.mkfifo(data / "fifo.raw")
    refused(mha(data, "fifo.mha", "fifo.raw"), "not a regular file")
    os.symlink("/dev/zero", data / "dev.raw")
    refused(mha(data, "dev.mha", "dev.raw"), "links out of its folder|not a regular file")
    refused(mha(data, "list.mha", "LIST"), "multi-file")
    # the legitimate form: a .raw next to its header
    (data / "ok.raw").write_bytes(np.arange(256, dtype="<u2").tobytes())
    assert read_image(str(mha(data, "ok.mha", "ok.raw"))).shape == (16, 16)
    assert read_image_size(str(data / "ok.mha")) == (16, 16)
    with time_limit(10):
        with pytest.raises(ImageReadError, match="not a regular file"):
            read_image_size(str(data / "fifo.mha"))


def test_mha_nan_is_an_error_and_truncation_is_named(tmp_path):
    values = np.full((16, 16), 0.5, "<f4")
    values[3, 4] = np.nan
    refused(mha(tmp_path, "nan.mha", payload=values.tobytes(), element="MET_FLOAT"),
            "1 of 256 pixel values are NaN")  # fmt: skip
    refused(mha(tmp_path, "short.mha", payload=b"\x00" * 100), "100 bytes.*needs 512.*truncated")
    refused(mha(tmp_path, "big.mha", payload=b"", dims=(20000, 20000)), "max_pixels")


def test_fifo_image_is_refused_not_read(tmp_path):
    os.mkfifo(tmp_path / "scan.png")
    refused(tmp_path / "scan.png", "not a regular file")


def test_compressed_mha_within_limits(tmp_path):
    raw = np.arange(256, dtype="<u2").tobytes()
    packed = zlib.compress(raw)
    header = (
        "ObjectType = Image\nNDims = 2\nDimSize = 16 16\nElementType = MET_USHORT\n"
        f"CompressedData = True\nCompressedDataSize = {len(packed)}\nElementDataFile = LOCAL\n"
    ).encode()
    (tmp_path / "z.mha").write_bytes(header + packed)
    assert read_image(str(tmp_path / "z.mha")).shape == (16, 16)
