"""The baselines of the recalibration benchmark: what a user writes with plain torch.

`update_bn`: load the state dict, build the model, load the calibration samples,
re-estimate the statistics with `torch.optim.swa_utils.update_bn` (training mode,
`momentum=None`, one pass) in batches of `--batch-size`, save the result: the obvious
way to recalibrate. `eval`: the same load, then one eval-mode pass over the samples under
`torch.inference_mode()`: the least a data diagnosis (`bnstat check --data`) can cost.
Run as whole processes by `bench_recalibrate.py`, like `bnstat` itself.

Usage: python benchmarks/torch_baselines.py {update_bn,eval} CHECKPOINT DATA.npy OUTPUT
       [--batch-size 32]
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
    parser.add_argument("mode", choices=["update_bn", "eval"])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    model = build_resnet()
    model.load_state_dict(load_file(args.checkpoint))
    batches = torch.from_numpy(np.load(args.data)).split(args.batch_size)
    if args.mode == "eval":
        with torch.inference_mode():
            for batch in batches:
                model.eval()(batch)
        return
    update_bn(batches, model)
    state = {k: v.contiguous() for k, v in model.eval().state_dict().items()}
    save_file(state, args.output)


if __name__ == "__main__":
    main()
