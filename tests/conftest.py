"""Shared fixtures: real torch models and checkpoints written by torch and safetensors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from digits_support import digits_tensor
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner
from zoo import ManyNorms, trained

from bnstat.cli import app


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
    """Run the real CLI in-process; returns click's Result (exit_code, stdout, stderr).

    Tables are 120 columns wide whatever terminal the tests run in."""
    runner = CliRunner(env={"COLUMNS": "120"})

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


@pytest.fixture(scope="session")
def digits() -> torch.Tensor:
    """The bundled digit images as one float tensor, for the recalibration tests."""
    return digits_tensor()
