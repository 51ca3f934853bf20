"""``MODEL.FX.COMPILE``: the trainer's model with its backbone stages under ``torch.compile``
trains like the eager one (same losses and weights within float tolerance), in one graph, and
keeps its parameter names; eval mode stays eager.

The CPU test uses the ``aot_eager`` backend (Dynamo capture + AOTAutograd's forward/backward
graphs, run by eager kernels): Inductor's C++ code generation also works on this machine but
takes minutes for even this tiny Swin on 2 cores; ``benchmarks/gpu.py`` runs Inductor on CUDA.
"""

import torch
from torch._dynamo.utils import counters

from fx_d2.engine.optimizer import build_fx_optimizer
from fx_d2.engine.trainer import LockReleaseTrainer
from fx_d2.testing.model import synthetic_batch, synthetic_metadata, tiny_cfg

KEY = "compile_test"


def _train(model, cfg, batches):
    optimizer = build_fx_optimizer(cfg, model)
    losses = []
    for batch in batches:
        torch.manual_seed(0)  # RPN / ROI sampling and dropout draw the same numbers
        loss_dict = model(batch)
        loss = sum(loss_dict.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_compiled_backbone_trains_like_eager():
    opts = ["MODEL.SWIN.DROP_PATH_RATE", 0.0, "SOLVER.BASE_LR", 1e-3]
    with synthetic_metadata(KEY, ("cls", "loc", "seg"), ["a", "b"], ["x"], ["m"]):
        torch.manual_seed(0)
        eager = LockReleaseTrainer.build_model(tiny_cfg([KEY], opts)).train()
        cfg = tiny_cfg(
            [KEY], opts + ["MODEL.FX.COMPILE", True, "MODEL.FX.COMPILE_BACKEND", "aot_eager"]
        )
        compiled = LockReleaseTrainer.build_model(cfg).train()
        assert compiled.state_dict().keys() == eager.state_dict().keys()
        compiled.load_state_dict(eager.state_dict())
        batches = [
            synthetic_batch(KEY, task, 2, (64, 64), 2, 1, 1, seed=i)
            for i, task in enumerate(("cls", "loc", "seg", "cls"))
        ]
        counters.clear()
        got = _train(compiled, cfg, batches)
        assert counters["stats"]["unique_graphs"] == 1  # all stages, every task: one graph
        assert not counters["graph_break"], dict(counters["graph_break"])
        want = _train(eager, cfg, batches)
    assert torch.allclose(torch.tensor(got), torch.tensor(want), rtol=1e-4, atol=1e-5), (got, want)
    assert len(set(want)) == 4  # the steps changed the model
    for (name, p), q in zip(compiled.named_parameters(), eager.parameters()):
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-5), name
    # eval mode (locked phases, teacher, inference) runs eagerly: no new graph
    compiled.eval()
    with torch.no_grad():
        compiled.backbone.forward_stages(torch.zeros(1, 3, 96, 96))
    assert counters["stats"]["unique_graphs"] == 1
