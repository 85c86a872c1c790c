"""Scale-out under `torchrun`: which process this is, and summing tensors across processes.

When `torchrun` starts several processes (WORLD_SIZE > 1 in the environment), each one
takes every WORLD_SIZE-th calibration sample and the per-channel sums are added up over
the gloo backend (small CPU tensors, whatever device the model runs on). Everything else
in bnstat is unaware of distribution.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size), joining the process group that torchrun describes if needed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_from_first(tensor: torch.Tensor) -> torch.Tensor:
    result = tensor.detach().to("cpu", torch.float64).clone()
    dist.broadcast(result, src=0)
    return result


def sum_across_processes(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    results = [t.detach().to("cpu", torch.float64).clone() for t in tensors]
    for result in results:
        dist.all_reduce(result, op=dist.ReduceOp.SUM)
    return results


def is_writer() -> bool:
    """Only the first process writes files."""
    return not is_active() or dist.get_rank() == 0
