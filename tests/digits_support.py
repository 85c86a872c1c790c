"""The sample digits model, its images, and an independent check of eval-mode statistics."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

SAMPLES = Path(__file__).resolve().parents[1] / "sample_checkpoints"
ARCH = f"{SAMPLES / 'digits_model.py'}:build_model"
DIGITS_DIR = SAMPLES / "digits"
sys.path.insert(0, str(SAMPLES))

from digits_model import build_model  # noqa: E402


def digits_tensor() -> torch.Tensor:
    """The 300 sample PNGs as the model sees them, decoded here without bnstat."""
    paths = sorted((SAMPLES / "digits").rglob("*.png"))
    pixels = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in paths])
    return torch.from_numpy(pixels / 255.0).unsqueeze(1)


def accuracy_on_digits(model: nn.Module, images: torch.Tensor) -> float:
    """Top-1 accuracy on the 300 sample digits (labels are their folder names)."""
    labels = torch.tensor([int(p.parent.name) for p in sorted(DIGITS_DIR.rglob("*.png"))])
    with torch.no_grad():
        return float((model.eval()(images).argmax(1) == labels).float().mean())


def digits_model(checkpoint: str | Path = "healthy.safetensors") -> nn.Module:
    model = build_model()
    path = Path(checkpoint) if Path(checkpoint).is_absolute() else SAMPLES / checkpoint
    state = (
        load_file(path)
        if str(path).endswith(".safetensors")
        else torch.load(path, weights_only=True)
    )
    model.load_state_dict(state)
    return model.eval()


class InMemory:
    """A calibration source replaying fixed batches, as `FolderData` does."""

    def __init__(self, values: torch.Tensor, batch_size: int) -> None:
        self.values, self.batch_size = values, batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.values.split(self.batch_size))


def eval_input_moments(
    model: nn.Module, data: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per BatchNorm layer: mean and unbiased variance (float64) of its input, eval mode."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = [
        module.register_forward_pre_hook(
            lambda _m, inputs, name=name: seen.setdefault(name, []).append(inputs[0])
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    model.eval()
    with torch.no_grad():
        model(data)
    for handle in handles:
        handle.remove()
    result = {}
    for name, chunks in seen.items():
        values = torch.cat(chunks).double()
        flat = values.transpose(0, 1).reshape(values.shape[1], -1)
        result[name] = (flat.mean(dim=1), flat.var(dim=1))
    return result


def consistency_violations(model: nn.Module, data: torch.Tensor, atol: float = 1e-6) -> list[str]:
    """Layers whose stored statistics differ from their eval-mode input statistics by more
    than 1e-4 relative (plus `atol`, for values near zero)."""
    measured = eval_input_moments(model, data)
    assert measured, "no BatchNorm layer was measured (hooks do not reach TorchScript modules)"
    bad = []
    for name, module in model.named_modules():
        if name in measured:
            for stored, actual, what in (
                (module.running_mean.double(), measured[name][0], "mean"),
                (module.running_var.double(), measured[name][1], "var"),
            ):
                if not torch.allclose(stored, actual, rtol=1e-4, atol=atol):
                    worst = ((stored - actual).abs() / actual.abs().clamp_min(1e-3)).max().item()
                    bad.append(f"{name}.{what} off by {worst:.1e}")
    return bad
