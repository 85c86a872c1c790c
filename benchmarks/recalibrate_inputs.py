"""Write the inputs of the recalibration speed benchmark (run by `bench_recalibrate.py`).

The ResNet-50-shaped model of `resnet_model.py`, freshly initialised, so every BatchNorm
layer holds reset statistics (mean 0, variance 1), saved as a state dict
(`resnet.safetensors`, for `--arch`) and as the four runnable archives a user would have:
`torch.jit.script` and `torch.jit.trace` (`scripted.pt`, `traced.pt`), `torch.export`
with a dynamic batch (`resnet.pt2`) and ONNX with its BatchNormalization nodes kept
(`resnet.onnx`). The calibration data is `--samples` normal samples of 3x64x64 in one
`.npy` file per data folder (`data/`, and `half/` with the first half).

Usage: python benchmarks/recalibrate_inputs.py FOLDER [--samples 512]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from resnet_model import build_resnet
from safetensors.torch import save_file

SIZE = 64


def write_models(folder: Path) -> None:
    torch.manual_seed(0)
    model = build_resnet().eval()
    example = torch.randn(2, 3, SIZE, SIZE)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, folder / "resnet.safetensors"
    )
    torch.jit.save(torch.jit.script(model), folder / "scripted.pt")
    torch.jit.save(torch.jit.trace(model, example), folder / "traced.pt")
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, folder / "resnet.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation
        torch.onnx.export(
            model, (example,), folder / "resnet.onnx", input_names=["x"],
            dynamic_axes={"x": {0: "batch"}}, dynamo=False, do_constant_folding=False,
            opset_version=17,
        )  # fmt: skip


def write_data(folder: Path, samples: int) -> None:
    values = np.random.default_rng(1).standard_normal((samples, 3, SIZE, SIZE), np.float32)
    for name, count in (("data", samples), ("half", samples // 2)):
        (folder / name).mkdir(exist_ok=True)
        np.save(folder / name / "calibration.npy", values[:count])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    write_models(args.folder)
    write_data(args.folder, args.samples)


if __name__ == "__main__":
    main()
