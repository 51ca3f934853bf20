"""Joining the process group of an external launcher (torchrun, SLURM, Kubernetes) via ``env://``.

Such a launcher starts every process itself and describes it in the environment: ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. :func:`join_external_group`
initialises the process group from them (NCCL with CUDA, else gloo), selects the GPU
``LOCAL_RANK``, builds Detectron2's local (per-host) process group and runs the main function.

TorchElastic (``torchrun --max-restarts N``) restarts the whole worker group when a worker
fails. Two things then need care:

* torchrun's agent keeps one TCP store for all attempts (``TORCHELASTIC_USE_AGENT_STORE``), so
  keys written by the dead group (peer addresses, NCCL ids) are still there and a plain
  ``init_process_group("env://")`` of the new group reads them and fails or hangs. The ranks
  therefore agree on a fresh key prefix first (:func:`_attempt_prefix`), whose proof of
  freshness is a random token from every live rank.
* ``TORCHELASTIC_RESTART_COUNT`` is kept per agent, so on other machines it can still be 0 after a
  restart. :func:`elastic_restart_count` is the maximum over all ranks once the group is joined.
"""

import logging
import os
import socket
import time
import uuid
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
from detectron2.utils import comm

__all__ = ["external_launcher_env", "elastic_restart_count", "join_external_group"]

logger = logging.getLogger(__name__)

_KEY = "fx_d2/join"
_group_restart_count: Optional[int] = None  # max over the ranks, set once the group is joined


def external_launcher_env() -> Optional[Dict[str, int]]:
    """``{"rank", "world_size", "local_rank"}`` when an external launcher started this process
    (``RANK`` and ``WORLD_SIZE`` set), else None. ``local_rank`` is -1 when ``LOCAL_RANK`` is
    unset.

    Raises:
        ValueError: a variable is not an integer, or ``RANK`` is not below ``WORLD_SIZE``.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        env = {
            "rank": int(os.environ["RANK"]),
            "world_size": int(os.environ["WORLD_SIZE"]),
            "local_rank": int(os.environ.get("LOCAL_RANK", -1)),
        }
    except ValueError as e:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({e})") from e
    if not 0 <= env["rank"] < env["world_size"]:
        raise ValueError(f"RANK {env['rank']} is not in [0, WORLD_SIZE {env['world_size']})")
    return env


def elastic_restart_count() -> int:
    """How often TorchElastic restarted the worker group: the largest
    ``TORCHELASTIC_RESTART_COUNT`` of all ranks after :func:`join_external_group`, this process's
    own value before (0 on a first attempt and outside torchrun)."""
    if _group_restart_count is not None:
        return _group_restart_count
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def _attempt_prefix(store: dist.Store, rank: int, world_size: int, timeout: timedelta) -> str:
    """A store-key prefix that only the ranks of this attempt share.

    Every rank > 0 posts a fresh random token; rank 0 answers each token it reads with its own
    fresh token, and finishes once every rank acknowledged that answer. An answer to a token of a
    dead process is never awaited, so keys left by an earlier attempt cannot be mistaken for
    this one's.
    """
    token = uuid.uuid4().hex
    if rank > 0:
        store.set(f"{_KEY}/hello/{rank}", token)
        reply = f"{_KEY}/reply/{rank}/{token}"
        store.wait([reply], timeout)
        prefix = store.get(reply).decode()
        store.set(f"{_KEY}/ack/{prefix}/{rank}", b"1")
        return prefix
    answered: Dict[int, bytes] = {}
    pending = set(range(1, world_size))
    deadline = time.monotonic() + timeout.total_seconds()
    while pending:
        for r in sorted(pending):
            if store.check([f"{_KEY}/ack/{token}/{r}"]):
                pending.discard(r)
            elif store.check([f"{_KEY}/hello/{r}"]):
                hello = store.get(f"{_KEY}/hello/{r}")
                if answered.get(r) != hello:
                    store.set(f"{_KEY}/reply/{r}/{hello.decode()}", token)
                    answered[r] = hello
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"ranks {sorted(pending)} did not join within {timeout}")
        time.sleep(0.02 if pending else 0)
    return token


def _set_local_process_group(local_rank: int) -> int:
    """Detectron2's local process group = the ranks on this host (every rank creates every group,
    in the same order); returns the maximum restart count over all ranks."""
    info = (socket.gethostname(), local_rank, elastic_restart_count())
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, info)
    mine = info[0]
    for name in dict.fromkeys(host for host, _, _ in gathered):
        ranks = [r for r, (host, _, _) in enumerate(gathered) if host == name]
        group = dist.new_group(ranks)
        if name != mine:
            continue
        comm._LOCAL_PROCESS_GROUP = group
        # the trainer and DDP take comm.get_local_rank() (position among the host's ranks) as
        # the GPU index, which must be the launcher's LOCAL_RANK
        given = [gathered[r][1] for r in ranks]
        if local_rank >= 0 and given != list(range(len(ranks))):
            raise RuntimeError(
                f"LOCAL_RANK must be 0..{len(ranks) - 1} in RANK order on each host; host {name} "
                f"has ranks {ranks} with LOCAL_RANK {given}"
            )
    return max(count for _, _, count in gathered)


def join_external_group(
    main_func: Callable[..., Any],
    env: Dict[str, int],
    args: Sequence[Any],
    timeout: timedelta,
) -> None:
    """Initialise the process group from the environment (``env`` from
    :func:`external_launcher_env`), run ``main_func(*args)``, destroy the group.

    Raises:
        RuntimeError: ``MASTER_ADDR`` / ``MASTER_PORT`` (or, with CUDA, ``LOCAL_RANK``) missing,
            or the initialisation failed (the message names rank, world size and master).
    """
    global _group_restart_count
    if env["world_size"] == 1:
        main_func(*args)
        return
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"RANK and WORLD_SIZE are set but not {' / '.join(missing)}: the launcher must give "
            "the address of rank 0 (MASTER_ADDR, MASTER_PORT) for env:// initialisation"
        )
    has_gpu = torch.cuda.is_available()
    if has_gpu:
        if env["local_rank"] < 0:
            raise RuntimeError("LOCAL_RANK is not set: it selects the GPU of each process")
        torch.cuda.set_device(env["local_rank"])
    master = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    rank, world_size = env["rank"], env["world_size"]
    try:
        store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
        prefix = _attempt_prefix(store, rank, world_size, timeout)
        dist.init_process_group(
            backend="nccl" if has_gpu else "gloo",
            store=dist.PrefixStore(f"{_KEY}/{prefix}", store),
            rank=rank,
            world_size=world_size,
            timeout=timeout,
        )
    except Exception as e:
        raise RuntimeError(
            f"process group initialisation failed (env://, rank {rank} of {world_size}, "
            f"master {master})"
        ) from e
    _group_restart_count = _set_local_process_group(env["local_rank"])
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()
