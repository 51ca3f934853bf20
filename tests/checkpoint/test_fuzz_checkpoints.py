"""Fuzz: ``load_checkpoint`` and resume over byte mutations of an fx_d2 training checkpoint (zip
format), a legacy-format torch file, and two planted files whose unpickling would run code (a torch
file and a ``.pkl``). Every probe ends in a dict or a ``CheckpointLoadError`` naming the file, no
probe hangs, and the marker file the planted payload writes never appears. Derandomized
(tests/conftest.py); ``PROBES`` per seed.
"""

import os
import pickle
import shutil
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from fx_d2.checkpoint import CheckpointLoadError, load_checkpoint
from fx_d2.checkpoint.fx_checkpointer import FXCheckpointer

PROBES = 200
WORK = tempfile.mkdtemp(prefix="fx_fuzz_ckpt_")
MARKER = os.path.join(WORK, "MARKER")


class Payload:
    def __reduce__(self):
        return exec, (f"open({MARKER!r}, 'w').write('pwned')",)


def _seeds():
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    FXCheckpointer(model, WORK, optimizer=opt).save("model_0000001", iteration=1)
    torch.save({"model": model.state_dict()}, os.path.join(WORK, "legacy.pth"),
               _use_new_zipfile_serialization=False)  # fmt: skip
    torch.save({"model": model.state_dict(), "x": Payload()}, os.path.join(WORK, "evil.pth"))
    with open(os.path.join(WORK, "evil.pkl"), "wb") as f:
        pickle.dump({"model": {}, "x": Payload()}, f)
    names = ("model_0000001.pth", "legacy.pth", "evil.pth", "evil.pkl")
    return {name: open(os.path.join(WORK, name), "rb").read() for name in names}


SEEDS = _seeds()


@st.composite
def mutated(draw, name):
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "set":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            del data[pos:]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_checkpoint_loading_survives_byte_mutations(name, no_hang):
    @settings(max_examples=PROBES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=mutated(name))
    def probe(data):
        folder = tempfile.mkdtemp(prefix="fx_fuzz_", dir=WORK)
        try:
            path = os.path.join(folder, "model_0000009.pth" if name.endswith(".pth") else name)
            with open(path, "wb") as f:
                f.write(data)
            with no_hang(30):
                try:
                    assert isinstance(load_checkpoint(path), dict)
                except CheckpointLoadError as err:
                    assert os.path.basename(path) in str(err)
                if path.endswith(".pth"):  # resume: the only checkpoint here, loads or is named
                    try:
                        FXCheckpointer(nn.Linear(3, 2), folder).resume_or_load("", resume=True)
                    except CheckpointLoadError as err:
                        assert "model_0000009.pth" in str(err)
            assert not os.path.exists(MARKER), "code from a checkpoint ran"
        finally:
            shutil.rmtree(folder)

    probe()
