"""Shared fixtures: real torch models and checkpoints written by torch and safetensors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from bnstat.cli import app

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


@pytest.fixture(scope="session")
def model() -> nn.Module:
    torch.manual_seed(0)
    return trained(ManyNorms())


@pytest.fixture(scope="session")
def state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def write_pt(tmp_path: Path) -> Callable[..., Path]:
    """torch.save an object to a new file (zip format unless legacy=True)."""

    def write(obj: object, name: str = "model.pt", legacy: bool = False) -> Path:
        path = tmp_path / name
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        return path

    return write


@pytest.fixture
def write_st(tmp_path: Path) -> Callable[..., Path]:
    """safetensors.torch.save_file a flat dict of tensors to a new file."""

    def write(
        tensors: dict[str, torch.Tensor],
        name: str = "model.safetensors",
        metadata: dict[str, str] | None = None,
    ) -> Path:
        path = tmp_path / name
        save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata)
        return path

    return write


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run the real CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: object) -> object:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


def report_json(result: object) -> dict:
    return json.loads(result.stdout)  # type: ignore[attr-defined]


def findings_of(report: dict, path_suffix: str = "") -> list[tuple[str, str | None]]:
    return [
        (f["rule"], f["layer"])
        for c in report["checkpoints"]
        if c["path"].endswith(path_suffix)
        for f in c["findings"]
    ]
