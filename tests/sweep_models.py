"""Small models that exercise the segmented sweep: branches, reuse, dicts, dynamic code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from resnet_model import build_resnet  # noqa: E402


def small_resnet() -> nn.Module:
    """Bottleneck blocks with ReLU(inplace=True), `out += identity` and projection shortcuts."""
    torch.manual_seed(0)
    return build_resnet(blocks=(1, 2), width=8).eval()


class Siamese(nn.Module):
    """One BatchNorm called on two branches that depend on the same upstream layers."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.left, self.right = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.shared = nn.BatchNorm2d(8)
        self.head = nn.Sequential(nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.shared(self.left(x)) + self.shared(self.right(x)))  # type: ignore[no-any-return]


class Keyed(nn.Module):
    """A forward that takes a dict, as detection and multimodal models do."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = small_resnet()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner(batch["image"])  # type: ignore[no-any-return]


class ShapeLoop(nn.Module):
    """Python control flow on a shape: torch.fx cannot trace it, torch.export can."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, 3, 1) for _ in range(3))
        self.bns = nn.ModuleList(nn.BatchNorm2d(3) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(x.shape[1]):
            x = torch.relu(self.bns[index](self.convs[index](x)))
        return x


class DataDependent(nn.Module):
    """Control flow on tensor values: no graph capture works, only the fallback sweep.

    The two branches of each block are independent, so the fallback still measures both
    layers of a front in one pass.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a1, self.b1 = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 3, padding=1)
        self.bn_a1, self.bn_b1 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
        self.mix = nn.Conv2d(4, 4, 3, padding=1)
        self.bn_mix = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.detach().mean()) > 1e9:  # never taken, but only running the model can tell
            x = x * 0
        y = torch.relu(self.bn_a1(self.a1(x))) + torch.relu(self.bn_b1(self.b1(x)))
        return self.bn_mix(self.mix(y))  # type: ignore[no-any-return]


def with_reset_statistics(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    return model.eval()


def images(count: int = 96, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, size, size, generator=generator) * 2 + 0.5


class Masked(nn.Module):
    """A forward with a keyword input and a flag, as many real models have."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.mix, self.bn2 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.head, self.bn3 = nn.Linear(8, 4), nn.BatchNorm1d(4)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, flip: bool = False
    ) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv(x)))
        if mask is not None:
            y = y * mask
        if flip:
            y = y.flip(-1)
        y = self.bn2(self.mix(y)) + y
        return self.bn3(self.head(y.mean((2, 3))))  # type: ignore[no-any-return]


class PerChannelLoop(Masked):
    """Python control flow on a shape: torch.fx cannot trace it, torch.export can."""

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, flip: bool = False
    ) -> torch.Tensor:
        for _ in range(x.shape[1] - 2):
            x = x * 1.5
        return super().forward(x, mask, flip)


def dict_batches(count: int = 5, size: int = 8) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.rand(size, 3, 6, 6, generator=generator) * 3 + 1,
            "mask": (torch.rand(size, 1, 6, 6, generator=generator) > 0.3).float(),
            "label": torch.randint(0, 4, (size,), generator=generator),
        }
        for _ in range(count)
    ]


def keyword_call(model: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
    return model(batch["image"], mask=batch["mask"], flip=True)
