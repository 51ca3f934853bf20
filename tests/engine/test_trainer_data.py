"""Training streams: deterministic, restartable at a batch, independent of workers; rank sharding;
unreadable images skipped and reported; few-shot subsets."""

import itertools

import numpy as np
import pytest
import torch

from fx_d2.engine.train_data import (
    SKIP_KEY,
    FXTrainStream,
    build_stream_loader,
    few_shot_subset,
    stage_dicts,
)

DICTS = [{"file_name": f"img{i}.png", "image_id": str(i), "cls_labels": [1.0]} for i in range(10)]


def jitter_mapper(d):
    """Returns (id, augmentation draw); None for an unreadable file."""
    if d["file_name"] == "img3.png":
        return None
    return {"id": d["image_id"], "aug": float(np.random.uniform())}


def _batches(stream, n, num_workers=0):
    loader = build_stream_loader(stream, num_workers)
    return [
        [(x["id"], x["aug"], tuple(x[SKIP_KEY])) for x in b] for b in itertools.islice(loader, n)
    ]


def _stream(**kw):
    args = dict(total_batch_size=4, seed=11, rank=0, world_size=1)
    args.update(kw)
    return FXTrainStream(DICTS, jitter_mapper, **args)


def test_restart_at_a_batch_matches_continuation():
    full = _batches(_stream(), 8)
    assert _batches(_stream(), 8) == full  # deterministic
    assert _batches(_stream(start_batch=5), 3) == full[5:]
    ids = [x[0] for b in full for x in b]
    assert "3" not in ids and len(set(ids)) == 9  # shuffled epochs, img3 replaced
    before = np.random.get_state()[1].copy(), torch.get_rng_state()
    np.random.seed(123)  # the global RNG does not change the batches ...
    assert _batches(_stream(), 2) == full[:2]
    state = np.random.get_state()[1].copy()
    _batches(_stream(), 2)
    assert (np.random.get_state()[1] == state).all()  # ... and they do not consume it
    np.random.set_state(("MT19937", before[0], 0, 0, 0.0))
    torch.set_rng_state(before[1])


def test_worker_count_does_not_change_batches():
    assert _batches(_stream(), 5, num_workers=2) == _batches(_stream(), 5, num_workers=0)


def test_ranks_split_each_global_batch():
    full = [FXTrainStream(DICTS, jitter_mapper, total_batch_size=4, seed=2, rank=0, world_size=1)]
    ranks = [FXTrainStream(DICTS, jitter_mapper, total_batch_size=4, seed=2, rank=r, world_size=2)
             for r in range(2)]  # fmt: skip
    for batch in range(4):
        whole = {full[0].index_at(p) for p in full[0].positions_of_batch(batch)}
        parts = [{r.index_at(p) for p in r.positions_of_batch(batch)} for r in ranks]
        assert parts[0] | parts[1] == whole and not parts[0] & parts[1]
    with pytest.raises(ValueError, match="multiple"):
        FXTrainStream(DICTS, jitter_mapper, total_batch_size=3, seed=0, rank=0, world_size=2)


def test_unreadable_image_skipped_and_reported():
    stream = _stream(shuffle=False)
    sample = stream.sample(3)  # position 3 is img3 in sequential order
    assert sample["id"] == "4" and sample[SKIP_KEY] == ["img3.png"]
    assert stream.sample(2)[SKIP_KEY] == []
    bad = FXTrainStream(DICTS[3:4], jitter_mapper, total_batch_size=1, seed=0, rank=0,
                        world_size=1, name="x:cls")  # fmt: skip
    with pytest.raises(RuntimeError, match="x:cls"):
        bad.sample(0)


def test_few_shot_subset_is_deterministic_and_order_free():
    a = few_shot_subset(DICTS, 4, seed=1)
    b = few_shot_subset(list(reversed(DICTS)), 4, seed=1)
    assert len(a) == 4 and {d["image_id"] for d in a} == {d["image_id"] for d in b}
    assert {d["image_id"] for d in few_shot_subset(DICTS, 4, seed=2)} != {d["image_id"] for d in a}
    assert few_shot_subset(DICTS, 0, seed=1) == DICTS


def test_stage_dicts_filters_by_task():
    dicts = [{"cls_labels": [1.0]}, {"annotations": []}, {"cls_labels": [], "annotations": [{}]}]
    assert stage_dicts(dicts, "cls") == dicts[:1]
    assert stage_dicts(dicts, "seg") == dicts[1:]
    with pytest.raises(ValueError, match="loc labels"):
        stage_dicts(dicts[:1], "loc", "fx_a_train")
