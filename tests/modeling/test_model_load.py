"""Loading a (synthetic) converted Foundation X checkpoint: report counts, loaded values, and
Detectron2's DetectionCheckpointer on the same file."""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from fx_d2.checkpoint.model_weights import load_foundation_x_weights
from fx_d2.testing.model import synthetic_metadata, tiny_cfg

KEY, CLS = "h5load_all", "h5load_cls"
CONVERTED_PREFIXES = ("backbone.", "cls_heads.", "seg_decoder.", "seg_heads.")


@pytest.fixture(scope="module", autouse=True)
def metadata():
    with (
        synthetic_metadata(KEY, ("cls", "loc", "seg"), ("a", "b"), ("a",), ("a", "b")),
        synthetic_metadata(CLS, ("cls",), ("x", "y", "z")),
    ):
        yield


def _model(seed):
    torch.manual_seed(seed)
    return build_model(tiny_cfg([KEY, CLS]))


def _converted(model):
    """What the converter writes for an FX checkpoint: trunk, cls heads, UperNet, seg heads."""
    state = {
        k: v.clone() for k, v in model.state_dict().items() if k.startswith(CONVERTED_PREFIXES)
    }
    state[f"cls_heads.{CLS}.weight"] = torch.zeros(1, state[f"cls_heads.{CLS}.weight"].shape[1])
    state[f"cls_heads.{CLS}.bias"] = torch.zeros(1)  # FX head with another class count
    state["cls_heads.node21.weight"] = torch.zeros(1, 4)  # a dataset this model does not have
    state["cls_heads.node21.bias"] = torch.zeros(1)
    state["seg_heads.jsrt.weight"] = torch.zeros(3, 32, 3, 3)
    return state


def test_load_report_counts_and_values(tmp_path):
    source, target = _model(0), _model(1)
    state = _converted(source)
    path = tmp_path / "fx_converted.pth"
    torch.save({"model": state, "__author__": "fx_d2", "matching_heuristics": False}, path)
    report = load_foundation_x_weights(target, str(path))
    own = target.state_dict()
    loc_keys = [k for k in own if k.startswith(("loc_encoder.", "loc_decoders."))]
    assert report["num_missing"] == len(loc_keys) and set(report["missing"]) == set(loc_keys)
    assert report["missing_by_group"] == {
        "loc_decoders." + KEY: sum(k.startswith("loc_decoders.") for k in loc_keys),
        "loc_encoder": sum(k.startswith("loc_encoder.") for k in loc_keys),
    }
    assert report["num_unexpected"] == 3
    assert report["unexpected_by_group"] == {"cls_heads.node21": 2, "seg_heads.jsrt": 1}
    assert report["num_shape_mismatch"] == 2
    assert {m[0] for m in report["shape_mismatch"]} == {
        f"cls_heads.{CLS}.weight",
        f"cls_heads.{CLS}.bias",
    }
    assert report["num_loaded"] == len(state) - 5
    for name in report["loaded"]:
        assert torch.equal(own[name], state[name]), name
    assert own[f"cls_heads.{CLS}.weight"].shape == (3, 32 * 8)  # mismatched head kept
    assert not torch.equal(own[loc_keys[0]], source.state_dict()[loc_keys[0]])


def test_detection_checkpointer_reads_the_converted_file(tmp_path):
    source, target = _model(0), _model(2)
    path = tmp_path / "fx_converted.pth"
    torch.save(
        {"model": _converted(source), "__author__": "fx_d2", "matching_heuristics": False}, path
    )
    DetectionCheckpointer(target).load(str(path))
    name = "backbone.patch_embed.proj.weight"
    assert torch.equal(target.state_dict()[name], source.state_dict()[name])
    assert torch.equal(
        target.state_dict()["seg_decoder.fusion.conv.weight"],
        source.state_dict()["seg_decoder.fusion.conv.weight"],
    )


def test_batchnorm_upernet_into_groupnorm_model_is_flagged():
    torch.manual_seed(0)
    bn_model = build_model(tiny_cfg([KEY], ["MODEL.FX.UPERNET.NORM", "BN"]))
    state = {k: v for k, v in bn_model.state_dict().items() if k.startswith("seg_decoder.")}
    report = load_foundation_x_weights(_model(0), state)
    assert report["warnings"] and "UPERNET.NORM" in report["warnings"][0]
    assert report["unexpected_by_group"] == {"seg_decoder": len(state) - report["num_loaded"]}
    assert load_foundation_x_weights(bn_model, state)["warnings"] == []


def test_bad_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "not_a_checkpoint.pth"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not_a_checkpoint.pth"):
        load_foundation_x_weights(_model(0), str(path))
    with pytest.raises(ValueError, match="no tensors"):
        load_foundation_x_weights(_model(0), {"model": {"a": 1}})
