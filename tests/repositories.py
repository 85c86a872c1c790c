"""Model repositories laid out the way the hub libraries and trainers write them.

Sharded checkpoints as `save_pretrained(max_shard_size=...)` writes them (tensors in state
dict order, a new shard when the next tensor would overflow the size, `NAME-0000k-of-0000n`
files and an index dumped with `indent=2, sort_keys=True`), a trainer's
`checkpoint-N/` folder (weights, optimizer, scheduler, RNG states, training arguments,
trainer state, config), and the Git LFS pointer a checkout without LFS leaves in a
file's place. Everything is written with torch and safetensors, nothing downloaded.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from zoo import SAMPLES

SPLITS_A_LAYER = 34_000  # bytes per shard that put block2.bn1 of the healthy model in two
SHARD_FILES = {"bin": ("pytorch_model", ".bin"), "safetensors": ("model", ".safetensors")}


def healthy_state_dict() -> dict[str, torch.Tensor]:
    """The trained sample model's state dict: seven BatchNorm layers, no finding."""
    return dict(torch.load(SAMPLES / "healthy.pt", weights_only=True))


def split_into_shards(
    state_dict: dict[str, torch.Tensor], max_bytes: int
) -> list[dict[str, torch.Tensor]]:
    """Greedy, in state dict order: a new shard when the next tensor would not fit."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state_dict.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    return shards


def write_sharded(
    folder: Path, state_dict: dict[str, torch.Tensor], max_bytes: int, kind: str = "bin"
) -> Path:
    """Shards and their index in `folder` (`kind`: "bin" or "safetensors"); the index."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = SHARD_FILES[kind]
    shards = split_into_shards(state_dict, max_bytes)
    weight_map = {}
    for number, shard in enumerate(shards, 1):
        name = f"{stem}-{number:05d}-of-{len(shards):05d}{suffix}"
        if kind == "bin":
            torch.save(shard, folder / name)
        else:
            save_file(
                {k: v.contiguous() for k, v in shard.items()}, folder / name, {"format": "pt"}
            )
        weight_map |= dict.fromkeys(shard, name)
    total = sum(t.numel() * t.element_size() for t in state_dict.values())
    index = {"metadata": {"total_parameters": total // 4, "total_size": total}}
    index["weight_map"] = weight_map
    path = folder / f"{stem}{suffix}.index.json"
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return path


def split_layers(index: Path) -> set[str]:
    """The layers whose tensors the index puts in more than one shard."""
    weight_map = json.loads(index.read_text())["weight_map"]
    shards: dict[str, set[str]] = {}
    for key, shard in weight_map.items():
        shards.setdefault(key.rpartition(".")[0], set()).add(shard)
    return {layer for layer, names in shards.items() if len(names) > 1}


class IntervalStrategy(enum.Enum):
    """Pickled by value, as a trainer's argument enums are."""

    STEPS = "steps"
    EPOCH = "epoch"


@dataclasses.dataclass
class TrainingArguments:
    """What a trainer pickles into `training_args.bin`: a dataclass of its options."""

    output_dir: str = "out"
    learning_rate: float = 5e-5
    save_strategy: IntervalStrategy = IntervalStrategy.STEPS
    seed: int = 42


def write_trainer_checkpoint(folder: Path, step: int = 500) -> Path:
    """`checkpoint-STEP/` as a trainer saves it mid-run; the folder."""
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    state_dict = healthy_state_dict()
    save_file(state_dict, checkpoint / "model.safetensors", {"format": "pt"})
    parameters = [t.float().requires_grad_() for t in state_dict.values() if t.is_floating_point()]
    optimizer = torch.optim.AdamW(parameters, lr=5e-5)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, total_iters=1000)
    sum(p.sum() for p in parameters).backward()  # type: ignore[union-attr]
    optimizer.step()
    scheduler.step()
    torch.save(optimizer.state_dict(), checkpoint / "optimizer.pt")
    torch.save(scheduler.state_dict(), checkpoint / "scheduler.pt")
    rng = {"python": random.getstate(), "numpy": np.random.get_state()}
    torch.save(rng | {"cpu": torch.random.get_rng_state()}, checkpoint / "rng_state.pth")
    torch.save(TrainingArguments(), checkpoint / "training_args.bin")
    trainer_state = {"global_step": step, "log_history": [{"loss": 0.5, "step": step}]}
    (checkpoint / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "digits"}, indent=2))
    return checkpoint


def lfs_pointer(path: Path) -> bytes:
    """The pointer file Git LFS checks out in `path`'s place when its object is not fetched
    (the spec's three lines: version, the content's sha256, its size)."""
    data = path.read_bytes()
    return (
        "version https://git-lfs.github.com/spec/v1\n"
        f"oid sha256:{hashlib.sha256(data).hexdigest()}\n"
        f"size {len(data)}\n"
    ).encode()
