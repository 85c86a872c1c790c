"""Write the inputs of the recalibration benchmark at the user's scale (`bench_recalibrate.py
--part scale`).

What a user recalibrates for real: a full-width ResNet-50-shaped network (`resnet_model.py`
at width 64, 1000 classes, 53 BatchNorm2d, statistics reset) as a state dict
(`resnet50.safetensors`), and a folder of JPEG photos of ImageNet's sizes (333 to 500
pixels a side, quality 90) spread over ten class folders. The photos are generated:
smooth colour fields at a few scales plus sensor-like noise, which compress and decode
like camera pictures, from a fixed seed. The folders of 256, 1024 and 4096 photos hold hard
links to the first files of one generated set, so the larger runs extend the smaller ones.

Usage: python benchmarks/scale_inputs.py FOLDER --photos 256,1024,4096
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, CLASSES = 64, 1000  # ResNet-50's own width and head
ARCH_KWARGS = '{"width": 64, "num_classes": 1000}'


def write_model(folder: Path) -> None:
    import torch
    from resnet_model import build_resnet
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build_resnet(width=WIDTH, num_classes=CLASSES)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, folder / "resnet50.safetensors")


def photo(rng: np.random.Generator) -> Image.Image:
    """One photo-like picture: colour fields at three scales and fine noise."""
    height, width = (int(side) for side in rng.integers(333, 501, size=2))
    picture = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((3, 90.0), (12, 40.0), (48, 15.0)):
        field = rng.standard_normal((cells, cells, 3)).astype(np.float32)
        coarse = Image.fromarray(np.uint8(np.clip(field * 40 + 128, 0, 255)))
        smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float32)
        picture += (smooth - 128) * weight / 40
    picture += rng.normal(0, 6, picture.shape).astype(np.float32) + 120
    return Image.fromarray(np.uint8(np.clip(picture, 0, 255)))


def write_photos(folder: Path, counts: list[int]) -> None:
    """`folder/photos-N` for every N in `counts`: links to the first N generated photos."""
    every = folder / "generated"
    rng = np.random.default_rng(7)
    names = []
    for index in range(max(counts)):
        name = Path(f"class{index % 10}") / f"img{index:05d}.jpg"
        picture = photo(rng)  # drawn for every index: the sequence does not depend on counts
        if not (every / name).exists():
            (every / name).parent.mkdir(parents=True, exist_ok=True)
            picture.save(every / name, quality=90)
        names.append(name)
    for count in counts:
        for name in names[:count]:
            link = folder / f"photos-{count}" / name
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.hardlink_to(every / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--photos", default="256,1024,4096", help="comma-separated counts")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    if not (args.folder / "resnet50.safetensors").exists():
        write_model(args.folder)
    write_photos(args.folder, [int(text) for text in args.photos.split(",")])


if __name__ == "__main__":
    main()
