"""tools/predict.py's clinical outputs end to end on a tiny FoundationX (CPU): the config implied
by a run folder, refusal of a CT / colour input, index.json statuses, DICOM SEG and SR that read
back to the JSON's masks and boxes, a DICOM without UIDs (JSON written, DICOM refused), the HTML
pages in headless Chromium, request-only weights, and the CPU fallback of a CUDA config."""

import json
import os
import re

import numpy as np
import pydicom
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image
from pycocotools import mask as mask_util
from pydicom.uid import generate_uid

from fx_d2.data.demo.dicom_writer import write_demo_dicom
from fx_d2.testing.browser import load_page, require_chromium
from fx_d2.testing.model import predictor_metadata, tiny_cfg
from fx_d2.testing.scripts import load_script

FULL, CLS = "i12out_full", "i12out_cls"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "predict.py")


@pytest.fixture(scope="module", autouse=True)
def metadata():
    with predictor_metadata(FULL, CLS):
        yield


@pytest.fixture(scope="module")
def tool():
    module = load_script(TOOL, "fx_predict_outputs_tool")
    return module


def _dicom(path, modality="CR", **drop):
    rng = np.random.default_rng(len(str(path)))
    write_demo_dicom(str(path), rng.integers(0, 4096, (72, 88)).astype(np.uint16),
                     sop_uid=generate_uid(), study_uid=generate_uid(), series_uid=generate_uid(),
                     patient_id="P1", bits_stored=12, modality=modality)  # fmt: skip
    if drop:
        ds = pydicom.dcmread(str(path))
        for keyword in drop:
            delattr(ds, keyword)
        ds.save_as(str(path))
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tool):
    """One prediction run with every output, on four inputs."""
    root = tmp_path_factory.mktemp("predict_outputs")
    run_dir = root / "run"
    run_dir.mkdir()
    cfg = tiny_cfg([FULL, CLS], ["INPUT.FX.SIZE", 64, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    (run_dir / "config.yaml").write_text(cfg.dump())
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, str(run_dir / "model_final.pth"))
    scans = root / "scans"
    scans.mkdir()
    _dicom(scans / "cr.dcm")
    _dicom(scans / "ct.dcm", modality="CT")
    _dicom(scans / "nouid.dcm", StudyInstanceUID=True)
    colour = np.zeros((40, 40, 3), np.uint8)
    colour[..., 0] = 255
    Image.fromarray(colour).save(str(scans / "colour.png"))
    out = root / "out"
    argv = [
        "--weights",
        str(run_dir / "model_final.pth"),
        "--input",
        str(scans),
        "--output",
        str(out),
        "--dicom-seg",
        "--dicom-sr",
        "--html",
        "--score-thresh",
        "0",
    ]
    status = tool.main(argv)  # fmt: skip
    return status, out, scans


def test_index_lists_every_input_with_its_status(run):
    status, out, scans = run
    assert status == 1  # two inputs refused
    index = json.loads((out / "index.json").read_text())
    by_name = {i["name"]: i for i in index["images"]}
    assert index["counts"] == {"ok": 2, "refused": 2, "failed": 0}
    assert by_name["cr"]["status"] == by_name["nouid"]["status"] == "ok"
    assert "Modality CT is not a projection radiograph" in by_name["ct"]["reason"]
    assert "colour image" in by_name["colour"]["reason"]
    assert not (out / "ct.json").exists() and not (out / "colour.json").exists()
    assert index["weights"]["name"] == "model_final.pth" and index["schema_version"] == 1


def test_dicom_seg_and_sr_read_back_to_the_json(run):
    import highdicom as hd

    _, out, scans = run
    record = json.loads((out / "cr.json").read_text())
    assert record["outputs"]["dicom_seg"] == str(out / "cr.seg.dcm")
    uids = record["input"]["dicom"]
    assert uids["SOPInstanceUID"] == pydicom.dcmread(str(scans / "cr.dcm")).SOPInstanceUID
    seg = hd.seg.segread(str(out / "cr.seg.dcm"))
    pixels = seg.get_pixels_by_source_instance([uids["SOPInstanceUID"]], combine_segments=False)
    rle = dict(record["datasets"][FULL]["masks"]["Lung"]["rle"])
    rle["counts"] = rle["counts"].encode("ascii")
    np.testing.assert_array_equal(pixels[0, :, :, 0], mask_util.decode(rle))
    assert seg.get_segment_description(1).segment_label == f"Lung ({FULL})"

    boxes = record["datasets"][FULL]["boxes"]
    assert boxes, "the tiny model at score threshold 0 predicts boxes"
    report = hd.sr.srread(str(out / "cr.sr.dcm"))
    read = {}
    for group in report.content.get_planar_roi_measurement_groups():
        points = group.roi.value
        bbox = [points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()]
        read[str(group.tracking_identifier)] = (
            [round(float(v), 2) for v in bbox],
            float(group.get_measurements()[0].value),
        )
    assert read == {f"{FULL}/box/{i}": (b["bbox"], b["score"]) for i, b in enumerate(boxes)}
    probs = {str(g.tracking_identifier): float(g.get_measurements()[0].value)
             for g in report.content.get_image_measurement_groups()}  # fmt: skip
    assert probs[f"{CLS}/cls/Tuberculosis"] == record["datasets"][CLS]["cls"]["Tuberculosis"]


def test_dicom_without_uids_keeps_the_json_and_says_why(run):
    _, out, _ = run
    record = json.loads((out / "nouid.json").read_text())
    assert set(record["datasets"]) == {FULL, CLS}
    errors = record["outputs"]["dicom_errors"]
    assert "no StudyInstanceUID" in errors["seg"] and "no StudyInstanceUID" in errors["sr"]
    assert not (out / "nouid.seg.dcm").exists() and not (out / "nouid.sr.dcm").exists()


def test_html_pages_are_self_contained(run):
    _, out, _ = run
    page = (out / "cr.html").read_text()
    assert not re.search(r"(src|href)=['\"]https?:", page)
    assert page.count("class='layer'") == 2  # FULL's masks and boxes
    assert "cr.seg.dcm" in page and "cr.sr.dcm" in page and "cr.json" in page
    index = (out / "index.html").read_text()
    assert "cr.html" in index and "Modality CT" in index


def test_html_pages_in_headless_chromium(run, tmp_path):
    require_chromium()
    _, out, _ = run
    for name, images in (("index.html", 2), ("cr.html", 3)):
        shot = str(tmp_path / f"{name}.png")
        loaded = load_page(str(out / name), screenshot=shot, window=(1000, 800))
        assert (loaded.images_ok, loaded.images_bad) == (images, 0), name
        assert 'data-js-errors="0"' in loaded.dom, name
        with Image.open(shot) as im:
            assert im.size == (1000, 800)
            assert len(set(im.convert("L").getdata())) > 10  # not a blank page


def test_request_only_weights_say_where_to_get_them(tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FX_D2_CACHE", str(tmp_path / "cache"))
    argv = ["--weights", "foundation_x", "--input", str(tmp_path), "--output", str(tmp_path)]
    assert tool.main(argv) == 2
    err = capsys.readouterr().err
    assert "https://forms.gle/7ynYFcoiKYYwQNWG8" in err and "tools/weights.py convert" in err


def test_cuda_config_runs_on_the_cpu(run, tool, tmp_path, monkeypatch):
    _, _, scans = run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_dir = scans.parent / "run"
    argv = ["--weights", str(run_dir / "model_final.pth"), "--input", str(scans / "cr.dcm"),
            "--output", str(tmp_path), "--no-overlay"]  # fmt: skip
    argv += ["--opts", "MODEL.DEVICE", "cuda"]
    assert tool.main(argv) == 0
    assert (tmp_path / "cr.json").is_file()


def test_help_names_only_existing_configs(tool):
    for config in re.findall(r"configs/[\w./-]+\.yaml", tool.__doc__):
        assert os.path.isfile(os.path.join(ROOT, config)), config


def test_a_failing_prediction_fails_that_image_only(run, tool, tmp_path, monkeypatch):
    from fx_d2.inference.predictor import FXPredictor

    _, _, scans = run
    for name, size in (("big", 60), ("small", 40)):
        gray = np.random.default_rng(size).integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(gray).save(str(tmp_path / f"{name}.png"))
    predict = FXPredictor.predict

    def fragile(self, images, *args, **kwargs):
        if any(im.shape == (60, 60) for im in images):
            raise RuntimeError("CUDA out of memory (simulated)")
        return predict(self, images, *args, **kwargs)

    monkeypatch.setattr(FXPredictor, "predict", fragile)
    out = tmp_path / "out"
    argv = ["--weights", str(scans.parent / "run" / "model_final.pth"), "--input",
            str(tmp_path / "big.png"), str(tmp_path / "small.png"), "--output", str(out),
            "--batch-size", "2", "--no-overlay"]  # fmt: skip
    assert tool.main(argv) == 1
    images = {i["name"]: i for i in json.loads((out / "index.json").read_text())["images"]}
    assert images["small"]["status"] == "ok" and (out / "small.json").is_file()
    assert images["big"]["status"] == "failed"
    assert "prediction failed: CUDA out of memory" in images["big"]["reason"]


def test_resume_predicts_only_what_a_killed_run_left(run, tool, tmp_path, monkeypatch):
    from fx_d2.inference.predictor import FXPredictor

    _, _, scans = run
    out = tmp_path / "out"
    argv = ["--weights", str(scans.parent / "run" / "model_final.pth"), "--input",
            str(scans / "cr.dcm"), str(scans / "nouid.dcm"), "--output", str(out),
            "--no-overlay", "--batch-size", "1"]  # fmt: skip
    assert tool.main(argv) == 0
    kept = (out / "cr.json").read_text()
    (out / "nouid.json").unlink()  # the run was killed before this one was written
    seen = []
    predict = FXPredictor.predict

    def counting(self, images, *args, **kwargs):
        seen.append(len(images))
        return predict(self, images, *args, **kwargs)

    monkeypatch.setattr(FXPredictor, "predict", counting)
    assert tool.main(argv + ["--resume"]) == 0
    assert seen == [1] and (out / "cr.json").read_text() == kept
    index = json.loads((out / "index.json").read_text())["images"]
    assert [(i["name"], i.get("resumed", False)) for i in index] == [("cr", True), ("nouid", False)]
