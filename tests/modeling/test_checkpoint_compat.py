"""A checkpoint written before the task-branch refactor (commit e4fe707) still loads: the demo
model's state_dict keys and shapes are a frozen list (tests/fixtures), and a checkpoint with exactly
those tensors loads into today's model with nothing missing, unexpected or mis-shaped."""

import json
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from fx_d2.config import add_fx_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FROZEN = os.path.join(ROOT, "tests", "fixtures", "fx_demo_state_dict_e4fe707.json")


def _demo_model():
    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(os.path.join(ROOT, "configs", "demo", "fx_demo.yaml"))
    return build_model(cfg)


def test_state_dict_layout_is_frozen():
    with open(FROZEN) as f:
        frozen = json.load(f)["keys"]
    model = _demo_model()
    now = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(now) == list(frozen)  # same names, same order
    assert now == frozen


def test_checkpoint_with_the_frozen_layout_loads_completely(tmp_path):
    with open(FROZEN) as f:
        frozen = json.load(f)["keys"]
    gen = torch.Generator().manual_seed(0)
    model = _demo_model()
    own = model.state_dict()
    state = {}
    for name, shape in frozen.items():
        like = own[name]
        if like.is_floating_point():
            state[name] = torch.randn(shape, generator=gen, dtype=like.dtype)
        else:
            state[name] = torch.randint(0, 5, shape, generator=gen, dtype=like.dtype)
    path = str(tmp_path / "model_e4fe707.pth")
    torch.save({"model": state, "iteration": 99}, path)
    incompatible = DetectionCheckpointer(model).load(path)
    assert incompatible["iteration"] == 99
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
