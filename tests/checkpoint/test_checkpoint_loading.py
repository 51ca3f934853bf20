"""fx_d2.checkpoint.load_checkpoint: what it accepts, and an error naming the file and the reason
for everything else (before, the converter said "()" for an empty file and "(101)" for a text
file); the environment report of a run on a Detectron2 without compiled ops."""

import os
import pickle

import pytest
import torch

from fx_d2.checkpoint import CheckpointLoadError, load_checkpoint
from fx_d2.checkpoint.convert import CheckpointConversionError, convert_file
from fx_d2.checkpoint.fx_checkpointer import FXCheckpointer
from fx_d2.testing.scripts import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _state():
    return {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "iteration": 4, "tags": ["a", 1]}


def test_accepts_zip_and_legacy_torch_files(tmp_path):
    torch.save(_state(), tmp_path / "zip.pth")
    torch.save(_state(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name in ("zip.pth", "legacy.pth"):
        loaded = load_checkpoint(str(tmp_path / name))
        assert torch.equal(loaded["model"]["w"], _state()["model"]["w"]) and loaded["tags"] == [
            "a",
            1,
        ]


@pytest.mark.parametrize(
    "content,pattern",
    [
        (b"", "empty file \\(0 bytes"),
        (b"hello, this is a text file\n", "not a PyTorch checkpoint or pickle \\(a text file"),
        (b"\x00\x01\x02binary", "not a PyTorch checkpoint or pickle \\(unknown"),
    ],
)
def test_not_a_checkpoint(tmp_path, content, pattern):
    (tmp_path / "x.pth").write_bytes(content)
    with pytest.raises(CheckpointLoadError, match="x.pth.*" + pattern):
        load_checkpoint(str(tmp_path / "x.pth"))
    with pytest.raises(CheckpointConversionError, match="x.pth.*" + pattern):
        convert_file(str(tmp_path / "x.pth"), str(tmp_path / "out.pth"))


def test_truncated_missing_folder_fifo_and_non_dict(tmp_path):
    torch.save(_state(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointLoadError, match="cut.pth.*truncated or corrupt") as err:
        load_checkpoint(str(tmp_path / "cut.pth"))
    assert err.value.__cause__ is not None
    with pytest.raises(CheckpointLoadError, match="gone.pth.*no such file"):
        load_checkpoint(str(tmp_path / "gone.pth"))
    with pytest.raises(CheckpointLoadError, match="not a regular file"):
        load_checkpoint(str(tmp_path))
    os.mkfifo(tmp_path / "fifo.pth")
    with pytest.raises(CheckpointLoadError, match="fifo.pth.*not a regular file"):
        load_checkpoint(str(tmp_path / "fifo.pth"))
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointLoadError, match="list.pth.*holds a list, expected a dict"):
        load_checkpoint(str(tmp_path / "list.pth"))
    torch.save({"model": 5, "iteration": 3}, tmp_path / "model_0000003.pth")
    with pytest.raises(CheckpointLoadError, match="'model' entry is a int, not a state dict"):
        FXCheckpointer(torch.nn.Linear(2, 2), str(tmp_path)).resume_or_load("", resume=True)


class Namespace:  # e.g. the argparse.Namespace research checkpoints carry
    def __init__(self):
        self.lr = 0.1


def test_objects_beyond_tensors_need_trust_and_the_message_names_them(tmp_path):
    torch.save({"model": {"w": torch.ones(1)}, "args": Namespace()}, tmp_path / "research.pth")
    with pytest.raises(CheckpointLoadError, match="research.pth.*Namespace.*--trust-pickle"):
        load_checkpoint(str(tmp_path / "research.pth"))
    assert load_checkpoint(str(tmp_path / "research.pth"), trust_pickle=True)["args"].lr == 0.1
    with open(tmp_path / "zoo.pkl", "wb") as f:
        pickle.dump({"blobs": {"conv1_w": [1.0]}}, f, protocol=2)
    with pytest.raises(CheckpointLoadError, match="zoo.pkl.*Python pickle.*MODEL.FX.TRUST_PICKLE"):
        load_checkpoint(str(tmp_path / "zoo.pkl"))
    trusted = load_checkpoint(str(tmp_path / "zoo.pkl"), trust_pickle=True)
    assert trusted["blobs"]["conv1_w"] == [1.0]


def test_converter_cli_message_for_an_empty_file(tmp_path, capsys):
    (tmp_path / "empty.pth").write_bytes(b"")
    tool = load_script(os.path.join(ROOT, "tools", "convert_checkpoint.py"), "h13_convert_tool")
    assert tool.main([str(tmp_path / "empty.pth"), str(tmp_path / "out.pth")]) == 1
    assert "empty.pth': empty file (0 bytes" in capsys.readouterr().err


def test_environment_report_is_complete():
    from fx_d2.engine.defaults import environment_info

    report = environment_info()
    assert "unavailable" not in report
    assert "PyTorch" in report and "numpy" in report and "detectron2" in report
