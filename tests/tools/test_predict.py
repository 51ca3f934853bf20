"""tools/predict.py and FXPredictor end to end on a tiny randomly initialised FoundationX (CPU):
files, folders, extension-less DICOM, JSON + PNG outputs, --dataset, --teacher weights."""

import hashlib
import json
import os

import numpy as np
import pydicom
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import fx_d2
from fx_d2.inference.predictor import FXPredictor, teacher_state_dict
from fx_d2.testing.model import TINY_CONFIG, predictor_metadata, tiny_cfg
from fx_d2.testing.scripts import load_script

FULL, CLS = "h6apred_full", "h6apred_cls"
SMALL = ["INPUT.FX.SIZE", 64]  # square 64 px model inputs
TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "predict.py")


@pytest.fixture(scope="module", autouse=True)
def metadata():
    with predictor_metadata(FULL, CLS):
        yield


@pytest.fixture(scope="module")
def predict_tool():
    module = load_script(TOOL, "fx_predict_tool")
    return module


def _write_png(path, height=96, width=80):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(path)


def _write_dicom(path, height=72, width=88):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality, ds.PhotometricInterpretation = "CR", "MONOCHROME2"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = height, width, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(height * width, dtype=np.uint16).reshape(height, width).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _checkpoint(tmp_path):
    """A training-style checkpoint whose teacher's classification bias differs from the student."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg([FULL, CLS], SMALL))
    student = model.state_dict()
    teacher = {k: v.clone() for k, v in student.items()}
    teacher[f"cls_heads.{CLS}.bias"] = torch.full_like(teacher[f"cls_heads.{CLS}.bias"], 20.0)
    path = str(tmp_path / "model_0000099.pth")
    torch.save({"model": student, "ema_teacher": teacher, "iteration": 99}, path)
    return path


def test_predictor_input_is_mapper_equivalent():
    opts = ["INPUT.FX.RESIZE_MODE", "shortest_edge", "INPUT.FX.SIZE", 64, "INPUT.FX.MAX_SIZE", 128]
    predictor = FXPredictor(tiny_cfg([FULL], opts))
    image = np.linspace(0, 1, 100 * 80, dtype=np.float32).reshape(100, 80)
    x = predictor.model_input(image, FULL)
    assert x["image"].shape == (3, 80, 64)  # shortest edge -> INPUT.FX.SIZE 64
    assert (x["height"], x["width"], x["dataset_name"]) == (100, 80, FULL)
    assert torch.equal(x["image"][0], x["image"][2])  # gray replicated
    assert 0.0 <= float(x["image"].min()) and float(x["image"].max()) <= 255.0 + 1e-3
    assert float(x["image"].max()) > 200.0  # 0..255 scale, not 0..1
    outputs = predictor(image)
    assert set(outputs) == {FULL}
    assert outputs[FULL]["sem_seg"].shape == (1, 100, 80)  # original size
    assert outputs[FULL]["cls_probs"].shape == (2,)
    with pytest.raises(KeyError, match="no heads"):
        predictor(image, ["unknown"])


def _backbone_batches(predictor, monkeypatch):
    batches = []
    forward = predictor.model.backbone.forward_stages

    def spy(x):
        batches.append(int(x.shape[0]))
        return forward(x)

    monkeypatch.setattr(predictor.model.backbone, "forward_stages", spy)
    return batches


def _assert_same_outputs(a, b):
    assert set(a) == set(b)
    for field in ("cls_probs", "sem_seg"):
        if field in a:
            torch.testing.assert_close(a[field], b[field], rtol=0, atol=1e-6)
    if "instances" in a:
        torch.testing.assert_close(
            a["instances"].pred_boxes.tensor, b["instances"].pred_boxes.tensor
        )
        torch.testing.assert_close(a["instances"].scores, b["instances"].scores)


def test_one_backbone_pass_serves_every_dataset(monkeypatch):
    """Several datasets' heads on one image: the backbone runs once per image and pass, and
    every head's output equals the output of a forward for that dataset alone."""
    predictor = FXPredictor(tiny_cfg([FULL, CLS], SMALL))
    images = [np.random.default_rng(i).random((70, 90), dtype=np.float32) for i in range(3)]
    batches = _backbone_batches(predictor, monkeypatch)
    alone = {}
    for key in (CLS, FULL):
        batches.clear()
        alone[key] = predictor(images[0], [key])[key]
    passes = len(batches)  # FULL alone: one pass per pixel normalisation its tasks need
    batches.clear()
    together = predictor(images[0])
    assert batches == [1] * passes  # CLS's head rides on FULL's passes
    for key in (FULL, CLS):
        _assert_same_outputs(together[key], alone[key])
    batches.clear()
    named = predictor.predict(images, batch_size=2)
    assert batches == [2] * passes + [1] * passes  # images batched; heads share their pass
    for i, image in enumerate(images):
        for key in (FULL, CLS):
            one = predictor.predict([image], datasets=[key])[0][key]
            assert one.cls == pytest.approx(named[i][key].cls, abs=1e-6)
            assert set(one.masks) == set(named[i][key].masks)
            for name, prob in one.masks.items():
                np.testing.assert_allclose(prob, named[i][key].masks[name], atol=1e-6)


def test_teacher_weights_are_loaded(tmp_path):
    path = _checkpoint(tmp_path)
    image = np.full((64, 64), 0.5, dtype=np.float32)
    student = FXPredictor(tiny_cfg([FULL, CLS], SMALL), path)(image, [CLS])[CLS]["cls_probs"]
    teacher = FXPredictor(tiny_cfg([FULL, CLS], SMALL), path, teacher=True)(image, [CLS])[CLS][
        "cls_probs"
    ]
    assert float(teacher[0]) > 0.999 and float(student[0]) < 0.99
    with pytest.raises(ValueError, match="no EMA teacher"):
        teacher_state_dict({"model": {}}, "x.pth")


def _argv(tmp_path, out, extra):
    weights = ["--weights", _checkpoint(tmp_path), "--output", str(out)]
    opts = ["--opts", "MODEL.FX.DATASETS", f"['{FULL}', '{CLS}']", "INPUT.FX.SIZE", "64"]
    return ["--config-file", TINY_CONFIG] + weights + extra + opts


def test_predict_tool_end_to_end(tmp_path, predict_tool, capsys):
    folder = tmp_path / "scans" / "patient1"
    folder.mkdir(parents=True)
    _write_png(str(tmp_path / "a.png"))
    _write_dicom(str(folder / "1.2.840.99"))  # extension-less DICOM, found by its magic bytes
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    inputs = ["--input", str(tmp_path / "a.png"), str(tmp_path / "scans")]
    assert predict_tool.main(_argv(tmp_path, out, inputs)) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 2
    index = json.loads((out / "index.json").read_text())
    assert [i["status"] for i in index["images"]] == ["ok", "ok"]
    record = json.loads((out / "patient1__1.2.840.99.json").read_text())
    assert record["schema_version"] == 1 and record["tool"]["version"] == fx_d2.__version__
    assert (record["input"]["height"], record["input"]["width"]) == (72, 88)
    assert record["weights"]["model"] == "student" and record["weights"]["format"] == "fx_d2"
    assert (
        record["weights"]["sha256"]
        == hashlib.sha256((tmp_path / "model_0000099.pth").read_bytes()).hexdigest()
    )
    assert record["thresholds"] == {"seg": 0.5, "box_score_min": 0.05, "box_reported": 0.5}
    assert record["input"]["dicom"]["Modality"] == "CR"
    assert (
        record["input"]["dicom"]["SOPInstanceUID"]
        == pydicom.dcmread(str(folder / "1.2.840.99")).SOPInstanceUID
    )
    assert set(record["datasets"]) == {FULL, CLS}
    full = record["datasets"][FULL]
    assert set(full["cls"]) == {"Nodule", "Effusion"} and set(full["masks"]) == {"Lung"}
    assert full["masks"]["Lung"]["rle"]["size"] == [72, 88]
    assert all(len(b["bbox"]) == 4 and b["category"] in ("Nodule", "Lung") for b in full["boxes"])
    assert set(record["datasets"][CLS]) == {"cls"}
    overlay = Image.open(out / f"patient1__1.2.840.99.{FULL}.png")
    assert overlay.size == (88, 72) and overlay.mode == "RGB"
    assert (out / f"a.{CLS}.png").is_file()

    # one dataset's heads, the teacher, and an unreadable file (exit status 1, others written)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out2 = tmp_path / "out2"
    inputs = ["--input", str(tmp_path / "broken.png"), str(tmp_path / "a.png")]
    argv = _argv(tmp_path, out2, ["--teacher", "--dataset", CLS] + inputs)
    assert predict_tool.main(argv) == 1
    record = json.loads((out2 / "a.json").read_text())
    assert record["weights"]["model"] == "teacher" and set(record["datasets"]) == {CLS}
    assert record["datasets"][CLS]["cls"]["Tuberculosis"] > 0.999
    assert not (out2 / "broken.json").exists()
    failed = json.loads((out2 / "index.json").read_text())["images"][0]
    assert failed["status"] == "failed" and "broken.png" in failed["file"] and failed["reason"]
