"""Scale-out: which process this is, and summing tensors across processes.

When `torchrun` starts several processes (WORLD_SIZE > 1 in the environment), each one
takes every WORLD_SIZE-th calibration sample and the per-channel sums are added up over
the gloo backend (small CPU tensors, whatever device the model runs on). A library
caller's own process group (`bnstat.recalibrate` inside an initialised
`torch.distributed` job) is used as it is: small CPU tensors too, unless it has only
NCCL, whose collectives take the current CUDA device's tensors. Everything else in bnstat
is unaware of distribution.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


@contextmanager
def world() -> Iterator[tuple[int, int]]:
    """(rank, world size) for the block, joining the process group torchrun describes.

    A group created here is destroyed when the block ends (a live gloo group aborts the
    interpreter at exit); one the caller created is left alone.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 0, 1
        return
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        if created:
            dist.destroy_process_group()


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def processes() -> int:
    """How many processes share the work (1 outside a distributed run)."""
    return dist.get_world_size() if is_active() else 1


def _collective_device() -> torch.device:
    """Where the group's collectives take their tensors: the CPU, unless it is NCCL only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_from_first(tensor: torch.Tensor) -> torch.Tensor:
    result = tensor.detach().to(_collective_device(), torch.float64).clone()
    dist.broadcast(result, src=0)
    return result.cpu()


def sum_across_processes(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    device = _collective_device()
    results = [t.detach().to(device, torch.float64).clone() for t in tensors]
    for result in results:
        dist.all_reduce(result, op=dist.ReduceOp.SUM)
    return [result.cpu() for result in results]


def total(count: int) -> int:
    """A count summed over every process (itself when there is only one)."""
    if not is_active():
        return count
    return int(sum_across_processes([torch.tensor([float(count)])])[0].item())


def batch_weighted_mean(values: torch.Tensor, batches: int) -> torch.Tensor:
    """Average of each process's per-batch average, weighted by its number of batches."""
    if not is_active():
        return values
    weighted, count = sum_across_processes([values * batches, torch.tensor([float(batches)])])
    return weighted / count


def is_writer() -> bool:
    """Only the first process writes files."""
    return not is_active() or dist.get_rank() == 0
