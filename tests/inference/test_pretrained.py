"""FXPredictor.from_pretrained (file:// URL, a training run's folder), named batched predictions,
untrained heads reported and skipped, the CPU fallback, and Detectron2's DefaultPredictor on a
FoundationX config."""

import json

import numpy as np
import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from PIL import Image

from fx_d2.inference import DatasetPrediction, FXPredictor
from fx_d2.inference.pretrained import select_device
from fx_d2.testing.model import predictor_metadata, tiny_cfg
from fx_d2.testing.scripts import load_script

FULL, CLS = "i12pre_full", "i12pre_cls"
SMALL = ["INPUT.FX.SIZE", 64]


@pytest.fixture(scope="module", autouse=True)
def metadata():
    with predictor_metadata(FULL, CLS):
        yield


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_D2_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A training run's OUTPUT_DIR: config.yaml and model_final.pth (a head left out of it)."""
    folder = tmp_path_factory.mktemp("run")
    cfg = tiny_cfg([FULL, CLS], SMALL)
    (folder / "config.yaml").write_text(cfg.dump())
    torch.manual_seed(0)
    state = build_model(cfg).state_dict()
    state[f"cls_heads.{CLS}.bias"] = torch.full_like(state[f"cls_heads.{CLS}.bias"], 20.0)
    torch.save({"model": state, "iteration": 9}, str(folder / "model_final.pth"))
    partial = {k: v for k, v in state.items() if not k.startswith(f"cls_heads.{CLS}.")}
    torch.save({"model": partial}, str(folder / "partial.pth"))
    return folder


def _images():
    rng = np.random.default_rng(0)
    return [rng.random((72, 60), dtype=np.float32), rng.random((64, 80), dtype=np.float32)]


def test_from_pretrained_file_url_names_every_output(run_dir):
    predictor = FXPredictor.from_pretrained(
        (run_dir / "model_final.pth").as_uri(), device="cpu",
        config_file=str(run_dir / "config.yaml"),
    )  # fmt: skip
    assert predictor.weights.format == "fx_d2" and predictor.untrained == {}
    results = predictor.predict(_images(), batch_size=2)
    assert len(results) == 2 and set(results[0]) == {FULL, CLS}
    full = results[1][FULL]
    assert isinstance(full, DatasetPrediction) and full.tasks == ("cls", "loc", "seg")
    assert set(full.cls) == {"Nodule", "Effusion"} and set(full.masks) == {"Lung"}
    assert full.masks["Lung"].shape == (64, 80)
    assert full.binary_masks()["Lung"].dtype == bool
    assert all(b.category in ("Nodule", "Lung") for b in full.boxes)
    assert results[0][CLS].cls["Tuberculosis"] > 0.999  # the loaded bias, not a random one
    # batching does not change the numbers
    single = predictor.predict(_images()[1:], batch_size=1)[0][FULL]
    assert single.cls == full.cls
    np.testing.assert_allclose(single.masks["Lung"], full.masks["Lung"], atol=1e-5)


def test_config_is_implied_by_a_run_folder_and_tasks_restrict(run_dir):
    predictor = FXPredictor.from_pretrained(str(run_dir / "model_final.pth"), tasks=["cls"])
    assert predictor.cfg.MODEL.DEVICE == select_device("auto")
    result = predictor.predict(_images()[:1])[0]
    assert result[FULL].tasks == ("cls",) and not result[FULL].masks
    with pytest.raises(ValueError, match="choose from"):
        FXPredictor.from_pretrained(str(run_dir / "model_final.pth"), tasks=["detect"])


def test_untrained_heads_are_reported_and_skipped(run_dir, tmp_path):
    path = tmp_path / "partial.pth"
    path.write_bytes((run_dir / "partial.pth").read_bytes())  # no config.yaml beside it
    with pytest.raises(ValueError, match="config_file"):
        FXPredictor.from_pretrained(str(path))
    predictor = FXPredictor.from_pretrained(str(path), config_file=str(run_dir / "config.yaml"))
    assert set(predictor.untrained) == {CLS}
    assert "its own head" in predictor.untrained[CLS]["cls"]
    assert set(predictor.predict(_images()[:1])[0]) == {FULL}
    both = FXPredictor.from_pretrained(
        str(path), config_file=str(run_dir / "config.yaml"), include_untrained=True
    )
    assert set(both.predict(_images()[:1])[0]) == {FULL, CLS}
    with pytest.raises(ValueError, match="trained none of the heads"):
        FXPredictor.from_pretrained(
            str(path), config_file=str(run_dir / "config.yaml"), datasets=[CLS]
        )


def test_cuda_config_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == "cpu" and select_device("cuda:0") == "cpu"
    assert select_device("cpu") == "cpu"


def test_detectron2_default_predictor(run_dir):
    cfg = tiny_cfg([FULL, CLS], SMALL)
    cfg.MODEL.WEIGHTS = str(run_dir / "model_final.pth")
    image = (np.random.default_rng(1).random((70, 90, 3)) * 255).astype(np.uint8)  # BGR
    with pytest.raises(ValueError, match="MODEL.FX.PREDICT_DATASETS"):
        DefaultPredictor(cfg)(image)
    cfg.MODEL.FX.PREDICT_DATASETS = [CLS, FULL]
    out = DefaultPredictor(cfg)(image)
    assert out["cls_probs"].shape == (1,) and float(out["cls_probs"][0]) > 0.999  # CLS first
    assert set(out["datasets"]) == {CLS, FULL}
    assert out["datasets"][FULL]["sem_seg"].shape == (1, 70, 90)
    assert out["datasets"][FULL]["instances"].image_size == (70, 90)
    cfg.MODEL.FX.PREDICT_DATASETS = ["not_a_dataset"]
    with pytest.raises(ValueError, match="no heads"):
        DefaultPredictor(cfg)


def test_official_foundation_x_layout_becomes_a_ready_predictor(tmp_path):
    """A checkpoint in the authors' layout (teacher_model, backbone.0.*, the DINO keys; toy
    widths) through a file:// URL: detected, converted once, loaded with nothing untrained."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "test_convert_dino.py"
    layout = load_script(path, "fx_convert_dino_layout")
    model = layout._model()
    checkpoint, dino = layout._reference_checkpoint(model)
    torch.save(checkpoint, str(tmp_path / "ckpt_E1_TH0.pth"))
    cfg = tiny_cfg(list(layout.FX_LOC_DECODERS), layout.TINY_DINO_OPTS + layout.FULL
                   + layout.TASKS + ["MODEL.FX.DINO.NUM_LOGITS", layout.LOGITS])  # fmt: skip
    (tmp_path / "tiny_dino.yaml").write_text(cfg.dump())
    predictor = FXPredictor.from_pretrained(
        (tmp_path / "ckpt_E1_TH0.pth").as_uri(), config_file=str(tmp_path / "tiny_dino.yaml")
    )
    assert predictor.weights.format == "foundation_x" and predictor.untrained == {}
    result = predictor.predict(_images()[:1], datasets=["chestx_det"])[0]["chestx_det"]
    names = set(MetadataCatalog.get("fx_chestx_det_train").thing_classes)
    assert result.tasks == ("loc",) and {b.category for b in result.boxes} <= names
    loaded = predictor.model.state_dict()["loc_encoder.tgt_embed.weight"]
    assert torch.equal(loaded, dino["transformer.tgt_embed.weight"])  # the teacher's tensors
    # the command line reuses the cached conversion and records what the weights are
    tool = load_script(
        Path(__file__).resolve().parents[2] / "tools" / "predict.py", "fx_predict_tool_official"
    )
    Image.fromarray((_images()[0] * 255).astype(np.uint8)).save(str(tmp_path / "x.png"))
    argv = ["--weights", str(tmp_path / "ckpt_E1_TH0.pth"), "--config-file",
            str(tmp_path / "tiny_dino.yaml"), "--input", str(tmp_path / "x.png"), "--output",
            str(tmp_path / "out"), "--dataset", "node21", "--no-overlay"]  # fmt: skip
    assert tool.main(argv) == 0
    record = json.loads((tmp_path / "out" / "x.json").read_text())
    assert record["weights"]["format"] == "foundation_x" and record["weights"]["model"] == "teacher"
    assert record["weights"]["name"] == "ckpt_E1_TH0.pth" and set(record["datasets"]) == {"node21"}
