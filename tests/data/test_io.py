"""Image readers: DICOM photometrics/LUTs/compression, PNG bit depths, JPEG, GIF, .mha, JSRT raw,
and clear errors for bombs, corrupt and unsupported files."""

import struct

import cv2
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from fx_d2.data.io import ImageReadError, read_image, read_image_size, read_mask

RNG = np.random.default_rng(0)
A12 = (RNG.random((48, 80)) * 4095).astype(np.uint16)  # asymmetric 12-bit test image


def make_dicom(arr, photometric="MONOCHROME2", bits=12, **attrs):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        SecondaryCaptureImageStorage,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "CR"
    ds.set_pixel_data(arr, photometric_interpretation=photometric, bits_stored=bits)
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def save(ds, path):
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)


def minmax(x):
    x = x.astype(np.float64)
    return (x - x.min()) / (x.max() - x.min())


def test_dicom_monochrome1_equals_monochrome2(tmp_path):
    mono2 = read_image(save(make_dicom(A12), tmp_path / "m2.dcm"))
    mono1 = read_image(save(make_dicom(4095 - A12, "MONOCHROME1"), tmp_path / "m1.dcm"))
    assert mono2.dtype == np.float32 and mono2.shape == (48, 80)
    np.testing.assert_allclose(mono2, minmax(A12), atol=1e-6)
    np.testing.assert_allclose(mono1, mono2, atol=1e-6)


def test_dicom_window_then_invert_monochrome1(tmp_path):
    c, w = 2000.0, 1000.0
    expected = np.clip((A12.astype(np.float64) - (c - w / 2)) / w, 0, 1)  # LINEAR_EXACT
    kw = dict(WindowCenter=c, WindowWidth=w, VOILUTFunction="LINEAR_EXACT")
    got = read_image(save(make_dicom(A12, **kw), tmp_path / "w2.dcm"))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    got1 = read_image(save(make_dicom(A12, "MONOCHROME1", **kw), tmp_path / "w1.dcm"))
    np.testing.assert_allclose(got1, 1 - expected, atol=1e-5)  # invert AFTER the window


def test_dicom_rescale_slope_intercept(tmp_path):
    slope, intercept, c, w = 2.0, -1000.0, 3000.0, 2000.0
    hu = A12 * slope + intercept
    expected = np.clip((hu - (c - w / 2)) / w, 0, 1)
    ds = make_dicom(A12, RescaleSlope=slope, RescaleIntercept=intercept, WindowCenter=c,
                    WindowWidth=w, VOILUTFunction="LINEAR_EXACT")  # fmt: skip
    np.testing.assert_allclose(read_image(save(ds, tmp_path / "r.dcm")), expected, atol=1e-5)
    # without a window: min-max of the rescaled values (negative slope flips the contrast)
    ds = make_dicom(A12, RescaleSlope=-1.0, RescaleIntercept=0.0)
    np.testing.assert_allclose(read_image(save(ds, tmp_path / "n.dcm")), 1 - minmax(A12), atol=1e-6)


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_dicom_voi_lut_sequence(tmp_path, vr):
    lut = (np.sqrt(np.arange(4096) / 4095.0) * 60000 + 1000).astype(np.uint16)  # nonlinear
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, vr, lut.tolist() if vr == "US" else lut.astype("<u2").tobytes())
    ds = make_dicom(A12, WindowCenter=100.0, WindowWidth=10.0)  # LUT takes precedence
    ds.VOILUTSequence = Sequence([item])
    got = read_image(save(ds, tmp_path / "lut.dcm"))
    expected = (lut[A12].astype(np.float64) - lut.min()) / (lut.max() - lut.min())
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless])
def test_dicom_compressed_lossless_equals_uncompressed(tmp_path, syntax):
    ds = make_dicom(A12)
    ds.compress(syntax, A12)
    path = save(ds, tmp_path / "comp")  # extension-less, like CANDID-PTX
    np.testing.assert_allclose(read_image(path), minmax(A12), atol=1e-6)
    assert read_image_size(path) == (48, 80)


def test_dicom_jpeg2000_lossy_within_tolerance(tmp_path):
    smooth = cv2.GaussianBlur(A12.astype(np.float32), (0, 0), 3)
    smooth = (minmax(smooth) * 4095).astype(np.uint16)
    ds = make_dicom(smooth)
    ds.compress(JPEG2000, smooth, j2k_psnr=[60])
    got = read_image(save(ds, tmp_path / "lossy.dcm"))
    assert np.abs(got - minmax(smooth)).mean() < 0.01


def test_dicom_unsupported_syntax_names_it(tmp_path):
    ds = make_dicom(A12)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\x00" * 16])
    ds["PixelData"].VR = "OB"
    path = save(ds, tmp_path / "video.dcm")
    with pytest.raises(ImageReadError, match="MPEG2.*video.dcm|video.dcm.*MPEG2"):
        read_image(path)


def test_dicom_truncated_and_bomb(tmp_path):
    ds = make_dicom(A12)
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(ImageReadError, match="short.dcm.*PixelData has 100 bytes"):
        read_image(save(ds, tmp_path / "short.dcm"))
    ds = make_dicom(A12)
    ds.Rows, ds.Columns = 30000, 30000
    with pytest.raises(ImageReadError, match="bomb.dcm.*max_pixels"):
        read_image(save(ds, tmp_path / "bomb.dcm"))
    with pytest.raises(ImageReadError, match="max_pixels=100"):
        read_image(save(make_dicom(A12), tmp_path / "ok.dcm"), max_pixels=100)


def test_png_8_and_16_bit(tmp_path):
    a8 = (A12 >> 4).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g8.png"), a8)
    np.testing.assert_allclose(read_image(str(tmp_path / "g8.png")), a8 / 255.0, atol=1e-6)
    rgb = np.repeat(a8[..., None], 3, axis=2)  # gray stored as RGB (Shenzhen)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    np.testing.assert_allclose(read_image(str(tmp_path / "rgb.png")), a8 / 255.0, atol=1e-6)
    full = (A12.astype(np.uint32) * 16).astype(np.uint16)  # 16-bit full range
    full[0, 0] = 65535
    cv2.imwrite(str(tmp_path / "g16.png"), full)
    np.testing.assert_allclose(read_image(str(tmp_path / "g16.png")), full / 65535.0, atol=1e-6)
    a12 = A12.copy()
    a12[0, 0] = 4095  # 12-bit values stored unscaled in a 16-bit PNG
    cv2.imwrite(str(tmp_path / "g12.png"), a12)
    np.testing.assert_allclose(read_image(str(tmp_path / "g12.png")), a12 / 4095.0, atol=1e-6)
    assert read_image_size(str(tmp_path / "g12.png")) == (48, 80)


def test_jpeg_and_gif(tmp_path):
    a8 = cv2.GaussianBlur((A12 >> 4).astype(np.uint8), (0, 0), 2)
    cv2.imwrite(str(tmp_path / "x.dcm.jpeg"), a8, [cv2.IMWRITE_JPEG_QUALITY, 98])
    got = read_image(str(tmp_path / "x.dcm.jpeg"))  # magic bytes beat the extension
    assert np.abs(got - a8 / 255.0).max() < 0.03
    mask = np.zeros((40, 30), np.uint8)
    mask[5:20, 3:9] = 255
    Image.fromarray(mask).save(tmp_path / "m.gif")
    assert np.array_equal(read_mask(str(tmp_path / "m.gif")), mask > 0)
    np.testing.assert_allclose(read_image(str(tmp_path / "m.gif")), mask / 255.0)
    Image.fromarray((mask > 0).astype(np.uint8)).save(tmp_path / "m01.png")  # 0/1 label PNG
    assert np.array_equal(read_mask(str(tmp_path / "m01.png")), mask > 0)


def test_mha_2d_and_single_slice(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(A12), str(tmp_path / "a.mha"))
    np.testing.assert_allclose(read_image(str(tmp_path / "a.mha")), minmax(A12), atol=1e-6)
    sitk.WriteImage(sitk.GetImageFromArray(A12[None]), str(tmp_path / "s.mha"))
    np.testing.assert_allclose(read_image(str(tmp_path / "s.mha")), minmax(A12), atol=1e-6)
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([A12, A12])), str(tmp_path / "v.mha"))
    with pytest.raises(ImageReadError, match="v.mha.*2-slice"):
        read_image(str(tmp_path / "v.mha"))


def test_jsrt_raw(tmp_path):
    raw = A12[:48, :48].copy()
    raw[0, 0] = 4095
    raw[0, 1] = 5000  # out of the 12-bit range: clipped
    raw.astype(">u2").tofile(tmp_path / "JPCLN001.IMG")
    got = read_image(str(tmp_path / "JPCLN001.IMG"))
    expected = (4095 - np.minimum(raw, 4095)) / 4095.0  # stored inverted
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert read_image_size(str(tmp_path / "JPCLN001.IMG")) == (48, 48)
    (tmp_path / "bad.IMG").write_bytes(b"\x00" * 1001)
    with pytest.raises(ImageReadError, match="bad.IMG.*not 2\\*N\\*N"):
        read_image(str(tmp_path / "bad.IMG"))


def test_png_bomb_header_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((8, 8), np.uint8))
    data = bytearray((tmp_path / "small.png").read_bytes())
    data[16:24] = struct.pack(">II", 60000, 60000)  # IHDR claims 3.6 gigapixels
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="bomb.png.*60000x60000.*max_pixels"):
        read_image(str(tmp_path / "bomb.png"))


def test_corrupt_missing_unknown_name_the_file(tmp_path):
    cv2.imwrite(str(tmp_path / "ok.png"), (A12 >> 4).astype(np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="trunc.png"):
        read_image(str(tmp_path / "trunc.png"))
    (tmp_path / "noise.png").write_bytes(b"not an image at all" * 10)
    with pytest.raises(ImageReadError, match="noise.png.*unknown image format"):
        read_image(str(tmp_path / "noise.png"))
    with pytest.raises(ImageReadError, match="nothere.dcm.*does not exist"):
        read_image(str(tmp_path / "nothere.dcm"))
    (tmp_path / "fake.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 40)
    with pytest.raises(ImageReadError, match="fake.dcm"):
        read_image(str(tmp_path / "fake.dcm"))
    assert issubclass(ImageReadError, ValueError)


def test_dicom_j2k_bits_stored_mismatch_vindr_style(tmp_path):
    # VinDr: the header says BitsStored 10/12 while the J2K codestream holds more bits.
    ds = make_dicom(A12, "MONOCHROME1")
    ds.compress(JPEG2000Lossless, A12)
    ds.BitsStored = 10
    got = read_image(save(ds, tmp_path / "vindr.dicom"))
    np.testing.assert_allclose(got, 1 - minmax(A12), atol=1e-6)
