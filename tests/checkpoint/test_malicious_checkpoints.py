"""A planted malicious checkpoint, on every loading path, runs no code: MODEL.WEIGHTS (.pkl and
.pth), --resume, the converter (library and CLI), the predictor (student and --teacher, library
and CLI), --eval-only --eval-teacher, and load_foundation_x_weights. Each test asserts that the
marker file the payload would write never appears, and that the error names the file."""

import os
import pickle

import pytest
import torch
from detectron2.modeling import build_model

from fx_d2.checkpoint import CheckpointLoadError, load_checkpoint
from fx_d2.checkpoint.convert import CheckpointConversionError, convert_file
from fx_d2.checkpoint.fx_checkpointer import FXCheckpointer
from fx_d2.checkpoint.model_weights import load_foundation_x_weights
from fx_d2.engine.evaluate import evaluate_checkpoint
from fx_d2.inference.predictor import FXPredictor
from fx_d2.testing.model import TINY_CONFIG, synthetic_metadata, tiny_cfg
from fx_d2.testing.scripts import load_script
from fx_d2.testing.trainer import SyntheticLockReleaseTrainer, register_synthetic, toy_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = "h13evil"


class Payload:
    """Unpickling calls ``exec`` on code that writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def plant(path, marker, fmt="torch"):
    """A checkpoint-looking file whose unpickling writes ``marker``."""
    data = {"model": {"w": torch.zeros(2)}, "iteration": 10**6, "x": Payload(marker)}
    if fmt == "torch":
        torch.save(data, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(data, f)
    return str(path)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "code from a checkpoint ran"


def _tool(name):
    module = load_script(os.path.join(ROOT, "tools", name), f"h13_{name}")
    return module


@pytest.mark.parametrize("fmt,name", [("torch", "evil.pth"), ("pickle", "evil.pkl"),
                                      ("pickle", "evil.pth"), ("torch", "evil.pkl")])  # fmt: skip
def test_helper_refuses_and_names_the_file(tmp_path, marker, fmt, name):
    path = plant(tmp_path / name, marker, fmt)
    with pytest.raises(CheckpointLoadError, match=f"{name}.*(pickle|exec).*--trust-pickle"):
        load_checkpoint(path)


def test_trust_pickle_really_unpickles(tmp_path):
    # the flag is not a no-op: with it, the (here harmless) payload runs
    path = plant(tmp_path / "trusted.pkl", tmp_path / "ran", "pickle")
    load_checkpoint(path, trust_pickle=True)
    assert (tmp_path / "ran").read_text() == "pwned"


@pytest.mark.parametrize("name,fmt", [("w.pkl", "pickle"), ("w.pth", "torch")])
def test_model_weights(tmp_path, marker, name, fmt):
    register_synthetic("synth")
    weights = plant(tmp_path / name, marker, fmt)
    cfg = toy_cfg(["OUTPUT_DIR", str(tmp_path / "out"), "MODEL.WEIGHTS", weights])
    trainer = SyntheticLockReleaseTrainer(cfg)
    with pytest.raises(CheckpointLoadError, match=name):
        trainer.resume_or_load(resume=False)


def test_resume_skips_a_planted_checkpoint(tmp_path, marker):
    register_synthetic("synth")
    out = tmp_path / "out"
    cfg = toy_cfg(["OUTPUT_DIR", str(out)])
    trainer = SyntheticLockReleaseTrainer(cfg)
    trainer.checkpointer.save("model_0000003", iteration=3)
    plant(out / "model_0009999.pth", marker)  # newer by name and by the iteration it claims
    (out / "last_checkpoint").write_text("model_0009999.pth")
    resumed = SyntheticLockReleaseTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    # with nothing else to resume from, the run stops with the reason
    os.remove(out / "model_0000003.pth")
    with pytest.raises(CheckpointLoadError, match="model_0009999.pth.*exec"):
        SyntheticLockReleaseTrainer(cfg).resume_or_load(resume=True)


def test_converter_library_and_cli(tmp_path, marker, capsys):
    src = plant(tmp_path / "ckpt_foundation_x.pth", marker)
    with pytest.raises(CheckpointConversionError, match="ckpt_foundation_x.pth.*--trust-pickle"):
        convert_file(src, str(tmp_path / "out.pth"))
    assert _tool("convert_checkpoint.py").main([src, str(tmp_path / "out.pth")]) == 1
    assert "ckpt_foundation_x.pth" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


@pytest.fixture
def tiny_metadata():
    with synthetic_metadata(TINY, ("cls",), ("Finding",)):
        yield


@pytest.mark.parametrize("teacher", [False, True])
def test_predictor_library_and_cli(tmp_path, marker, tiny_metadata, teacher, capsys):
    weights = plant(tmp_path / "model_0000099.pth", marker)
    with pytest.raises(CheckpointLoadError, match="model_0000099.pth"):
        FXPredictor(tiny_cfg([TINY]), weights, teacher=teacher)
    argv = [
        "--config-file",
        TINY_CONFIG,
        "--weights",
        weights,
        "--input",
        weights,
        "--output",
        str(tmp_path / "pred"),
        "--opts",
        "MODEL.FX.DATASETS",
        f"['{TINY}']",
    ]
    argv[4:4] = ["--teacher"] if teacher else []  # fmt: skip
    assert _tool("predict.py").main(argv) == 2  # refused with the reason, nothing unpickled
    err = capsys.readouterr().err
    assert "model_0000099.pth" in err and "--trust-pickle" in err


def test_eval_only_teacher_and_load_foundation_x_weights(tmp_path, marker, tiny_metadata):
    weights = plant(tmp_path / "model_teacher_final.pth", marker)
    cfg = tiny_cfg([TINY], ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(CheckpointLoadError, match="model_teacher_final.pth"):
        evaluate_checkpoint(SyntheticLockReleaseTrainer, cfg, eval_teacher=True)
    with pytest.raises(CheckpointLoadError, match="model_teacher_final.pth"):
        load_foundation_x_weights(build_model(cfg), weights)


def test_checkpointer_load_of_fifo_is_refused_not_hung(tmp_path):
    fifo = tmp_path / "model_0000001.pth"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointLoadError, match="not a regular file"):
        FXCheckpointer(torch.nn.Linear(2, 2), str(tmp_path)).load(str(fifo))
