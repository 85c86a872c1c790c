"""The baseline of the recalibration speed benchmark: what a user writes with `update_bn`.

Load the state dict, build the model, load the calibration samples, re-estimate the
statistics with `torch.optim.swa_utils.update_bn` (training mode, `momentum=None`, one
pass) in batches of `--batch-size`, save the result. Run as a whole process by
`bench_recalibrate.py`, like `bnstat recalibrate`.

Usage: python benchmarks/update_bn_baseline.py CHECKPOINT DATA.npy OUTPUT [--batch-size 32]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from resnet_model import build_resnet
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import update_bn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    model = build_resnet()
    model.load_state_dict(load_file(args.checkpoint))
    samples = torch.from_numpy(np.load(args.data))
    update_bn(samples.split(args.batch_size), model)
    state = {k: v.contiguous() for k, v in model.eval().state_dict().items()}
    save_file(state, args.output)


if __name__ == "__main__":
    main()
