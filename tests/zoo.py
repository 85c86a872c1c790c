"""Models and paths shared by the tests (in a module of their own so pickles can find them)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_checkpoints"


class FrozenBatchNorm2d(nn.Module):
    """torchvision's FrozenBatchNorm2d layout: four buffers, no num_batches_tracked."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))


class ManyNorms(nn.Module):
    """Every kind of normalization layer with running statistics, in one model."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn2d = nn.BatchNorm2d(8)
        self.frozen = FrozenBatchNorm2d(8)
        self.inorm = nn.InstanceNorm2d(8, track_running_stats=True, affine=True)
        self.conv3d = nn.Conv3d(8, 4, 1)
        self.bn3d = nn.BatchNorm3d(4, eps=1e-3)
        self.fc = nn.Linear(4, 6)
        self.bn1d = nn.BatchNorm1d(6, affine=False, momentum=None)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn2d(self.stem(x)))
        x = self.inorm(self.frozen_apply(x))
        x = torch.relu(self.bn3d(self.conv3d(x.unsqueeze(2))))
        x = x.mean(dim=(2, 3, 4))
        return self.head(torch.relu(self.bn1d(self.fc(x))))

    def frozen_apply(self, x: torch.Tensor) -> torch.Tensor:
        f = self.frozen
        scale = f.weight / torch.sqrt(f.running_var + 1e-5)
        return (
            x * scale[None, :, None, None] + (f.bias - f.running_mean * scale)[None, :, None, None]
        )


def trained(model: nn.Module, steps: int = 8, seed: int = 0) -> nn.Module:
    """Run a few training-mode forward passes so every running statistic moves."""
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(8, 3, 6, 6, generator=generator) * 2 + 0.5)
        if isinstance(model, ManyNorms):  # frozen buffers never train: give them real values
            model.frozen.running_mean.copy_(torch.rand(8, generator=generator))
            model.frozen.running_var.copy_(torch.rand(8, generator=generator) + 0.5)
            model.frozen.weight.copy_(torch.rand(8, generator=generator) + 0.5)
    return model.eval()


class Bundle:
    """An object a project pickles whole (`pickle.dump`): a model beside other data."""

    def __init__(self, model: nn.Module, note: str) -> None:
        self.model = model
        self.note = note


class StreamCall:
    """Pickles as `torch.storage._load_from_bytes(stream)`, whatever `stream` holds."""

    def __init__(self, stream: bytes) -> None:
        self.stream = stream

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        return torch.storage._load_from_bytes, (self.stream,)


def onnx_with_nan(source: Path, target: Path) -> None:
    """An ONNX export with a NaN in its first layer's running variance (BN001)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    first = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    (stored,) = [t for t in model.graph.initializer if t.name == first.input[4]]
    values = numpy_helper.to_array(stored).copy()
    values[0] = float("nan")
    stored.CopyFrom(numpy_helper.from_array(values, stored.name))
    onnx.save(model, str(target))
