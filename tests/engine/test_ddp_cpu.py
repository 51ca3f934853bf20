"""Two-process DDP on CPU (gloo) through fx_d2's launch: both ranks train the same stage at each
iteration, end with identical parameters and teachers, and locked modules do not move."""

import torch

from fx_d2.engine.launch import launch
from fx_d2.testing.trainer import ddp_check_main


def test_two_process_gloo_training(tmp_path):
    launch(ddp_check_main, 2, dist_url="auto", args=(str(tmp_path), ["SOLVER.FX.EMA_PERIOD", 3]))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["phases"] == ranks[1]["phases"] and len(ranks[0]["phases"]) == 13
    for name, p in ranks[0]["params"].items():
        assert torch.equal(p, ranks[1]["params"][name]), name
    for name, t in ranks[0]["teacher"].items():
        assert torch.equal(t, ranks[1]["teacher"][name]), name
    checks = ranks[0]["lock_checks"]
    assert [c["task"] for c in checks] == ["loc", "seg"]
    assert all(c["shared_unchanged"] and c["head_changed"] for c in checks), checks
    # the teacher moved away from the initial student copy (EMA updates ran)
    assert any(not torch.equal(t, ranks[0]["params"][n]) for n, t in ranks[0]["teacher"].items()
               if n in ranks[0]["params"])  # fmt: skip
