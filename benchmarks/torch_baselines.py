"""The baselines of the recalibration benchmark: what a user writes with plain torch.

`update_bn`: load the state dict, build the model, load the calibration samples,
re-estimate the statistics with `torch.optim.swa_utils.update_bn` (training mode,
`momentum=None`, one pass) in batches of `--batch-size`, save the result: the obvious
way to recalibrate. `eval`: the same load, then one eval-mode pass over the samples under
`torch.inference_mode()`: the least a data diagnosis (`bnstat check --data`) can cost.
`photos`: `update_bn` on a folder of JPEG photos as an ImageNet user feeds it: a
`DataLoader` with Pillow in `--workers` processes, shorter side resized to 256, centre
crop 224, ImageNet mean and std; then `torch.save`. Run as whole processes by
`bench_recalibrate.py`, like `bnstat` itself.

Usage: python benchmarks/torch_baselines.py {update_bn,eval,photos} CHECKPOINT DATA OUTPUT
       [--batch-size 32] [--workers 2] [--arch-kwargs JSON]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from resnet_model import build_resnet
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import update_bn

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Photos(torch.utils.data.Dataset[torch.Tensor]):
    """The JPEGs under a folder, decoded as torchvision's ImageNet transforms do."""

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(folder.rglob("*.jpg"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            picture = image.convert("RGB")
        width, height = picture.size
        scale = 256 / min(width, height)
        picture = picture.resize((round(width * scale), round(height * scale)))
        left, top = (picture.width - 224) // 2, (picture.height - 224) // 2
        picture = picture.crop((left, top, left + 224, top + 224))
        pixels = torch.from_numpy(np.asarray(picture, np.float32) / 255).permute(2, 0, 1)
        return (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("mode", choices=["update_bn", "eval", "photos"])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--arch-kwargs", default="{}")
    args = parser.parse_args()
    model = build_resnet(**json.loads(args.arch_kwargs))
    model.load_state_dict(load_file(args.checkpoint))
    if args.mode == "photos":
        loader = torch.utils.data.DataLoader(
            Photos(args.data), batch_size=args.batch_size, num_workers=args.workers
        )
        update_bn(loader, model)
        torch.save(model.state_dict(), args.output)
        return
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
