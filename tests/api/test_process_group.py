"""`bnstat.recalibrate` inside a caller's own process group: two processes started by
torch.multiprocessing (no launcher), gloo on the CPU, each with its DistributedSampler
shard and a DDP-wrapped model; both end with the statistics of one process on all data."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sweep_models import small_resnet, with_reset_statistics
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import bnstat

SAMPLES = 96  # divisible by the world size: a DistributedSampler pads shards by repeating


def dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(SAMPLES, 3, 12, 12, generator=generator) * 2 + 0.5)


def statistics(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] in BUFFERS}


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def rank_main(rank: int, world: int, port: int, folder: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        model = with_reset_statistics(small_resnet())
        shard = DistributedSampler(dataset(), num_replicas=world, rank=rank, seed=1)
        loader = DataLoader(dataset(), batch_size=8, sampler=shard)
        result = bnstat.recalibrate(DistributedDataParallel(model), loader)
        torch.save(statistics(model), Path(folder) / f"rank{rank}.pt")
        summary = {"samples": result.samples, "processes": result.processes}
        summary["strategy"] = result.strategy
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(summary))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow  # two fresh interpreters importing torch: about a minute on 2 cores
def test_every_rank_ends_with_the_statistics_of_one_process_on_all_the_data(tmp_path):
    mp.spawn(rank_main, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    single = copy.deepcopy(with_reset_statistics(small_resnet()))
    bnstat.recalibrate(single, DataLoader(dataset(), batch_size=8))
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name, value in statistics(single).items():
        assert torch.equal(first[name], second[name]), name  # identical on every rank
        torch.testing.assert_close(first[name], value, rtol=1e-5, atol=1e-7, msg=name)
    for rank in (0, 1):
        summary = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert summary["samples"] == SAMPLES and summary["processes"] == 2
        assert summary["strategy"].startswith("segmented")
