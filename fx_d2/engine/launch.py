"""Multi-process launcher that also works without GPUs (gloo), on Detectron2 0.6 and main.

Detectron2 0.6's ``launch`` asserts CUDA; this one starts ``num_gpus_per_machine`` processes per
machine with ``torch.multiprocessing`` and initialises the process group with NCCL when CUDA is
available, else gloo (then "GPUs" means CPU processes). Detectron2's ``comm`` helpers (rank, local
rank, local process group) work inside ``main_func`` as with Detectron2's own launcher.

A process started by another launcher (torchrun, a SLURM or Kubernetes job that sets ``RANK`` /
``WORLD_SIZE`` / ...) spawns nothing and joins that launcher's process group (env_launch.py).
"""

import logging
import socket
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm

from .env_launch import external_launcher_env, join_external_group

__all__ = ["launch", "DEFAULT_TIMEOUT"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes, or, when
    an external launcher started this process (``RANK`` and ``WORLD_SIZE`` set), in this process
    as one rank of that launcher's process group (the machine arguments are then ignored).

    Args:
        main_func: a picklable (module-level) function.
        num_gpus_per_machine: processes on this machine (GPUs, or CPU processes without CUDA).
        num_machines, machine_rank: multi-machine setup.
        dist_url: ``tcp://host:port``, ``file://...`` or ``"auto"`` (a free local port; single
            machine only).
        args: arguments of ``main_func``.
        timeout: process-group timeout.
    """
    external = external_launcher_env()
    if external is not None:
        if num_gpus_per_machine > 1 or num_machines > 1:
            logger.warning(
                "RANK / WORLD_SIZE are set (torchrun, SLURM, ...): --num-gpus %d and "
                "--num-machines %d are ignored, this process joins the launcher's %d processes",
                num_gpus_per_machine,
                num_machines,
                external["world_size"],
            )
        join_external_group(main_func, external, tuple(args), timeout)
        return
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url='auto' only works on one machine; pass --dist-url tcp://...")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// init may be unreliable across machines; prefer tcp://")
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(
            main_func,
            world_size,
            num_gpus_per_machine,
            machine_rank,
            dist_url,
            tuple(args),
            timeout,
        ),
        daemon=False,
        start_method="spawn",
    )


def _set_local_process_group(num_per_machine: int, num_machines: int, machine_rank: int) -> None:
    if hasattr(comm, "create_local_process_group"):  # Detectron2 main
        comm.create_local_process_group(num_per_machine)
        return
    for i in range(num_machines):  # Detectron2 0.6: every rank creates every group
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
    timeout: timedelta,
) -> None:
    has_gpu = torch.cuda.is_available()
    if has_gpu and num_gpus_per_machine > torch.cuda.device_count():
        raise RuntimeError(
            f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} GPU(s) visible"
        )
    rank = machine_rank * num_gpus_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="nccl" if has_gpu else "gloo",
            init_method=dist_url,
            world_size=world_size,
            rank=rank,
            timeout=timeout,
        )
    except Exception as e:
        raise RuntimeError(f"process group initialisation failed at {dist_url}") from e
    _set_local_process_group(num_gpus_per_machine, world_size // num_gpus_per_machine, machine_rank)
    if has_gpu:
        torch.cuda.set_device(local_rank)
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()
