"""Joining an external launcher's group: environment parsing, clear errors, and the per-attempt
store prefix that keeps a restarted group away from the keys of the dead one."""

import threading
from datetime import timedelta

import pytest
import torch.distributed as dist

from fx_d2.engine import env_launch
from fx_d2.engine.env_launch import (
    _attempt_prefix,
    elastic_restart_count,
    external_launcher_env,
    join_external_group,
)


def test_environment_parsing(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RESTART_COUNT"):
        monkeypatch.delenv(key, raising=False)
    assert external_launcher_env() is None and elastic_restart_count() == 0
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert external_launcher_env() == {"rank": 3, "world_size": 8, "local_rank": -1}
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert external_launcher_env()["local_rank"] == 1
    monkeypatch.setenv("RANK", "8")
    with pytest.raises(ValueError, match="RANK 8"):
        external_launcher_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="integers"):
        external_launcher_env()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    assert elastic_restart_count() == 2
    monkeypatch.setattr(env_launch, "_group_restart_count", 3)  # the group's maximum wins
    assert elastic_restart_count() == 3


def test_missing_master_address_is_named(monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("MASTER_PORT", "29500")
    env = {"rank": 0, "world_size": 2, "local_rank": 0}
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        join_external_group(lambda: None, env, (), timedelta(seconds=5))


def _join(store, world_size, timeout=timedelta(seconds=20)):
    prefixes = [None] * world_size

    def run(rank):
        prefixes[rank] = _attempt_prefix(store, rank, world_size, timeout)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return prefixes


def test_attempt_prefix_is_fresh_and_shared_despite_stale_keys():
    store = dist.HashStore()
    first = _join(store, 3)
    assert first[0] is not None and len(set(first)) == 1
    # an attempt in which rank 0 died after rank 2 had posted its token: stale hello and replies
    store.set("fx_d2/join/hello/2", "dead-token")
    store.set("fx_d2/join/reply/2/dead-token", "dead-prefix")
    second = _join(store, 3)
    assert len(set(second)) == 1 and second[0] not in (first[0], "dead-prefix")


def test_attempt_prefix_times_out_naming_missing_ranks():
    with pytest.raises(RuntimeError, match=r"ranks \[1\] did not join"):
        _attempt_prefix(dist.HashStore(), 0, 2, timedelta(seconds=0.3))
