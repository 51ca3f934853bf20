"""DICOM SEG and SR written with highdicom read back (pydicom / highdicom) to the same masks,
pixel for pixel, and the same boxes and probabilities; inputs without the UIDs are refused with
the reason; the input checks refuse CT, colour and multi-frame data unless forced."""

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from fx_d2.data.demo.dicom_writer import write_demo_dicom
from fx_d2.inference.dicom_common import DicomOutputError, finding_code, property_category
from fx_d2.inference.dicom_seg import write_dicom_seg
from fx_d2.inference.dicom_sr import write_dicom_sr
from fx_d2.inference.input_checks import check_input
from fx_d2.inference.results import Box, DatasetPrediction

H, W = 48, 40


def _dicom(path, **kwargs):
    rng = np.random.default_rng(0)
    uids = dict(sop_uid=generate_uid(), study_uid=generate_uid(), series_uid=generate_uid())
    uids.update(kwargs)
    write_demo_dicom(str(path), rng.integers(0, 4096, (H, W)).astype(np.uint16),
                     patient_id="P1", bits_stored=12, **uids)  # fmt: skip
    return str(path), check_input(str(path))


def _predictions():
    rng = np.random.default_rng(1)
    lung = rng.random((H, W), dtype=np.float32)
    empty = np.zeros((H, W), np.float32)
    organs = DatasetPrediction("organs", ("seg",), masks={"Left Lung": lung, "Heart": empty})
    findings = DatasetPrediction(
        "chestx", ("cls", "loc", "seg"),
        cls={"Pneumothorax": 0.912345, "Diffuse Nodule": 0.000123},
        boxes=[Box((1.25, 2.5, 30.75, 40.0), 0.87654, "Nodule", 1),
               Box((0.0, 0.0, 39.99, 47.99), 0.61, "Lung tumor", 3),
               Box((5.0, 5.0, 6.0, 6.0), 0.2, "Nodule", 1)],
        masks={"Pneumothorax": (lung > 0.8).astype(np.float32)},
    )  # fmt: skip
    return {"organs": organs, "chestx": findings}


def test_seg_round_trip_binary_and_fractional(tmp_path):
    import highdicom as hd

    src, check = _dicom(tmp_path / "cr.dcm")
    preds = _predictions()
    expected = [(k, n, m) for k, p in preds.items() for n, m in p.masks.items()]
    for fractional in (False, True):
        out = write_dicom_seg(str(tmp_path / f"s{fractional}.seg.dcm"), src, check.dicom, preds,
                              "0.1.0", fractional=fractional)  # fmt: skip
        seg = hd.seg.segread(out)
        assert seg.number_of_segments == 3
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == check.dicom["SeriesInstanceUID"]
        assert seg.StudyInstanceUID == check.dicom["StudyInstanceUID"]
        pixels = seg.get_pixels_by_source_instance(
            [check.dicom["SOPInstanceUID"]], combine_segments=False,
            rescale_fractional=False,
        )[0]  # fmt: skip
        for number, (key, name, prob) in enumerate(expected, 1):
            desc = seg.get_segment_description(number)
            assert desc.segment_label == f"{name} ({key})"
            assert desc.segmented_property_type == finding_code(name)
            assert desc.segmented_property_category == property_category(name)
            want = np.round(prob * 255) if fractional else prob > 0.5
            np.testing.assert_array_equal(pixels[:, :, number - 1], want.astype(pixels.dtype))
    assert str(finding_code("Left Lung").value) == "44029006"
    assert finding_code("Pneumothorax").scheme_designator == "SCT"
    assert finding_code("Diffuse Nodule").scheme_designator == "99FXD2"


def test_sr_round_trip_findings_and_boxes(tmp_path):
    import highdicom as hd

    src, check = _dicom(tmp_path / "cr.dcm")
    preds = _predictions()
    out = write_dicom_sr(str(tmp_path / "a.sr.dcm"), src, check.dicom, preds, "0.1.0", 0.5)
    report = hd.sr.srread(out)
    assert pydicom.dcmread(out).SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive
    assert report.StudyInstanceUID == check.dicom["StudyInstanceUID"]
    found = {}
    for group in report.content.get_image_measurement_groups():
        (m,) = group.get_measurements()
        found[str(group.tracking_identifier)] = (group.finding_type, float(m.value))
    assert found == {
        "chestx/cls/Pneumothorax": (finding_code("Pneumothorax"), 0.912345),
        "chestx/cls/Diffuse Nodule": (finding_code("Diffuse Nodule"), 0.000123),
    }
    boxes = {}
    for group in report.content.get_planar_roi_measurement_groups():
        (m,) = group.get_measurements()
        region = group.roi
        assert region.value.shape == (5, 2)
        ref = region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        assert ref == check.dicom["SOPInstanceUID"]
        points = region.value.astype(np.float32)
        bbox = [points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()]
        boxes[str(group.tracking_identifier)] = (group.finding_type, bbox, float(m.value))
    assert set(boxes) == {"chestx/box/0", "chestx/box/1"}  # the 0.2 box is below 0.5
    for rank, box in enumerate(preds["chestx"].boxes[:2]):
        code, bbox, score = boxes[f"chestx/box/{rank}"]
        assert code == finding_code(box.category) and score == box.score
        assert bbox == [np.float32(v) for v in box.bbox]  # SCOORD is 32-bit float: exact
        assert [round(float(v), 2) for v in bbox] == list(box.bbox)


def test_missing_uids_refuse_dicom_outputs(tmp_path):
    src, check = _dicom(tmp_path / "cr.dcm")
    ds = pydicom.dcmread(src)
    del ds.StudyInstanceUID
    ds.save_as(src)
    check = check_input(src)
    assert check.refused is None and check.missing_uids == ["StudyInstanceUID"]
    for write in (write_dicom_seg, write_dicom_sr):
        with pytest.raises(DicomOutputError, match="no StudyInstanceUID"):
            write(str(tmp_path / "x.dcm"), src, check.dicom, _predictions(), "0.1.0")
    with pytest.raises(DicomOutputError, match="no segmentation head"):
        path, other = _dicom(tmp_path / "b.dcm")
        write_dicom_seg(str(tmp_path / "y.dcm"), path, other.dicom, {}, "0.1.0")


def test_input_checks(tmp_path):
    src, check = _dicom(tmp_path / "cr.dcm")
    assert check.refused is None and check.dicom["Modality"] == "CR" and not check.warnings
    ds = pydicom.dcmread(src)
    ds.Modality, ds.BodyPartExamined = "CT", "ABDOMEN"
    ds.save_as(str(tmp_path / "ct.dcm"))
    refused = check_input(str(tmp_path / "ct.dcm"))
    assert "Modality CT is not a projection radiograph" in refused.refused
    assert "--force" in refused.refused and "BodyPartExamined is ABDOMEN" in refused.warnings[0]
    forced = check_input(str(tmp_path / "ct.dcm"), force=True)
    assert forced.refused is None and any("Modality CT" in w for w in forced.warnings)
    ds.Modality, ds.NumberOfFrames = "DX", 2
    ds.save_as(str(tmp_path / "mf.dcm"))
    assert "multi-frame DICOM (2 frames)" in check_input(str(tmp_path / "mf.dcm")).refused
    assert check_input(str(tmp_path / "mf.dcm"), force=True).frame == 0
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(str(tmp_path / "colour.png"))
    assert "colour image" in check_input(str(tmp_path / "colour.png")).refused
    gray = np.repeat(np.arange(400, dtype=np.uint8).reshape(20, 20)[..., None], 3, axis=2)
    Image.fromarray(gray).save(str(tmp_path / "gray_rgb.png"))
    assert check_input(str(tmp_path / "gray_rgb.png")).refused is None


def test_forced_multi_frame_dicom_reads_the_asked_frame(tmp_path):
    from fx_d2.data.io import ImageReadError, read_image

    src, _ = _dicom(tmp_path / "cr.dcm")
    ds = pydicom.dcmread(src)
    frames = np.stack([np.full((H, W), 100, np.uint16), np.arange(H * W, dtype=np.uint16)
                       .reshape(H, W)])  # fmt: skip
    ds.Modality, ds.NumberOfFrames, ds.PixelData = "DX", 2, frames.tobytes()
    ds.save_as(str(tmp_path / "mf.dcm"))
    check = check_input(str(tmp_path / "mf.dcm"), force=True)
    assert check.refused is None and check.frame == 0
    with pytest.raises(ImageReadError, match="multi-frame"):
        read_image(str(tmp_path / "mf.dcm"))
    second = read_image(str(tmp_path / "mf.dcm"), frame=1)
    assert second.shape == (H, W) and second[0, 0] < second[-1, -1]  # the ramp, not the flat one
    with pytest.raises(ImageReadError, match="no frame 2"):
        read_image(str(tmp_path / "mf.dcm"), frame=2)
