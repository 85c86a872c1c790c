"""Big calibration files cost what the samples used cost, measured in a real process.

A 1 GiB `.npy` read for 64 samples, and 12000x12000 JPEGs resized to 8x8, through a real
`bnstat recalibrate` whose peak RSS `os.wait4` measures (`hardening_helpers.measure`).
When tensor files were read whole (twice) the first peaked at 2.3 GB; when images were
decoded at full size and converted before resizing the second peaked at 0.94 GB.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hardening_helpers import SAMPLES, measure
from PIL import Image

pytest.importorskip("torch")

ARCH = f"{SAMPLES / 'digits_model.py'}:build_model"


def _recalibrate(folder: Path, tmp_path: Path, *extra: str) -> list[str | os.PathLike[str]]:
    checkpoint = tmp_path / "healthy.pt"
    shutil.copy(SAMPLES / "healthy.pt", checkpoint)
    return [
        "recalibrate", checkpoint, "--arch", ARCH, "--data", folder, "--no-verify",
        "--workers", "0", "--output", tmp_path / "fixed.pt", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_1_gib_npy_costs_what_its_chosen_samples_cost(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    count = (2**30 + 2**20) // (8 * 8 * 4)  # just over 1 GiB of 1x8x8 float32 samples
    array = np.lib.format.open_memmap(folder / "big.npy", "w+", np.float32, (count, 1, 8, 8))
    rng = np.random.default_rng(0)
    for start in range(0, count, 2**20):
        stop = min(start + 2**20, count)
        array[start:stop] = rng.random((stop - start, 1, 8, 8), dtype=np.float32)
    array.flush()
    del array
    assert (folder / "big.npy").stat().st_size > 2**30
    result = measure(_recalibrate(folder, tmp_path, "--max-samples", "64"), tmp_path, 600)
    assert result.exit_code == 0, result.stderr
    assert "64 samples" in result.stdout
    assert result.peak_mib < 600, result.peak_mib


@pytest.mark.slow
def test_huge_jpegs_are_decoded_reduced(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    ramp = np.linspace(0, 255, 12000, dtype=np.float32).astype(np.uint8)
    pixels = np.empty((12000, 12000, 3), np.uint8)
    pixels[...] = ramp[:, None, None]
    Image.fromarray(pixels).save(folder / "a.jpg", quality=90)
    del pixels
    os.link(folder / "a.jpg", folder / "b.jpg")  # two samples: a BatchNorm1d needs two
    result = measure(_recalibrate(folder, tmp_path, "--image-size", "8"), tmp_path, 600)
    assert result.exit_code == 0, result.stderr
    assert "Warning" not in result.stderr  # Pillow's decompression-bomb warning, say
    assert "images (2 RGB) converted to L" in result.stdout
    assert result.peak_mib < 450, result.peak_mib
