"""`stages.find_layers` against torch: the layers found in a state dict are the modules
torch keeps running statistics for, with their channels and their optional tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zoo import FrozenBatchNorm2d, ManyNorms

from bnstat.errors import CheckpointError
from bnstat.stages.find_layers import MAX_CHANNELS, find_layers, models_in, models_to_read
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint


class EveryKind(nn.Module):
    """Norm layers with and without running statistics, affine or not, nested."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
        self.plain = nn.BatchNorm1d(5, affine=False)
        self.untracked = nn.BatchNorm2d(6, track_running_stats=False)  # no running stats
        self.volume = nn.BatchNorm3d(7, momentum=None)
        self.sync = nn.SyncBatchNorm(8)
        self.instance = nn.InstanceNorm1d(9, track_running_stats=True)
        self.layer_norm = nn.LayerNorm(10)  # weight and bias, no statistics
        self.frozen = FrozenBatchNorm2d(11)
        self.blocks = nn.ModuleList([nn.Sequential(nn.BatchNorm2d(2 + i)) for i in range(3)])


def torch_layers(model: nn.Module) -> dict[str, tuple[int, bool, bool]]:
    """name -> (channels, affine, counts batches), from the modules themselves."""
    found = {}
    for name, module in model.named_modules():
        mean = getattr(module, "running_mean", None)
        if isinstance(mean, torch.Tensor):
            weight = getattr(module, "weight", None)
            counts = isinstance(getattr(module, "num_batches_tracked", None), torch.Tensor)
            found[name] = (mean.numel(), isinstance(weight, torch.Tensor), counts)
    return found


@pytest.mark.parametrize("model", [EveryKind(), ManyNorms()], ids=["every-kind", "many-norms"])
def test_the_layers_are_the_modules_with_running_statistics(model, write_pt):
    with open_checkpoint(write_pt(model.state_dict())) as raw:
        (state,) = find_state_dicts(raw)
        layers = find_layers(state)
    got = {
        ref.name: (ref.channels, ref.weight is not None, ref.num_batches_tracked is not None)
        for ref in layers
    }
    assert got == torch_layers(model)
    assert [ref.name for ref in layers] == list(torch_layers(model))  # the state dict's order
    for ref in layers:
        assert (ref.weight is None) == (ref.bias is None)


def test_a_layer_whose_statistics_differ_in_size_is_an_error(write_pt):
    path = write_pt({"bn.running_mean": torch.zeros(3), "bn.running_var": torch.ones(4)})
    with open_checkpoint(path) as raw, pytest.raises(CheckpointError, match="3 values"):
        find_layers(find_state_dicts(raw)[0])


def test_tensors_of_another_size_do_not_join_a_layer(write_pt):
    """A `weight` of another shape (a conv's, say) belongs to something else."""
    path = write_pt(
        {
            "bn.running_mean": torch.zeros(3),
            "bn.running_var": torch.ones(3),
            "bn.weight": torch.ones(3, 3),
            "bn.num_batches_tracked": torch.tensor([1, 2]),
        }
    )
    with open_checkpoint(path) as raw:
        (ref,) = find_layers(find_state_dicts(raw)[0])
    assert (ref.weight, ref.num_batches_tracked, ref.channels) == (None, None, 3)


def test_models_are_the_state_dicts_with_layers_else_the_largest(write_pt):
    model = EveryKind().state_dict()
    with open_checkpoint(write_pt({"model": model, "optimizer": {"x": torch.ones(1)}})) as raw:
        assert [state.name for state, _ in models_in(raw)] == ["model"]
    plain = {"fc.weight": torch.ones(2, 2)}
    with open_checkpoint(write_pt({"a": plain, "b": {**plain, "fc.bias": torch.ones(2)}})) as raw:
        assert [(state.name, refs) for state, refs in models_in(raw)] == [("b", [])]


def test_too_many_channels_in_all_are_refused_before_reading(write_pt):
    """A million-channel view of one small storage, many times over."""
    view = torch.zeros(1).expand(2**20)
    tensors = {}
    for i in range(MAX_CHANNELS // 2**20 + 1):
        tensors |= {f"bn{i}.running_mean": view, f"bn{i}.running_var": view}
    with open_checkpoint(write_pt(tensors)) as raw:
        assert sum(ref.channels for _, refs in models_in(raw) for ref in refs) > MAX_CHANNELS
        with pytest.raises(CheckpointError, match="over the limit"):
            models_to_read(raw)
