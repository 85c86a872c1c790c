"""Finding calibration files: images or tensor files, recursively, fast, loop-safe."""

from __future__ import annotations

import os
from pathlib import Path

from bnstat.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
TENSOR_EXTENSIONS = frozenset({".npy", ".pt", ".pth", ".safetensors"})
KNOWN_EXTENSIONS = IMAGE_EXTENSIONS | TENSOR_EXTENSIONS


def discover(root: Path) -> tuple[str, list[str]]:
    """Which kind of data the folder holds, and its files in sorted order."""
    if not root.is_dir():
        raise DataError(f"calibration data folder {root} does not exist or is not a folder")
    found = sorted(_walk(str(root)))
    if not found:
        known = ", ".join(sorted(KNOWN_EXTENSIONS))
        raise DataError(f"no calibration files under {root} (looked for {known})")
    images = [path for path in found if _extension(path) in IMAGE_EXTENSIONS]
    if images and len(images) < len(found):
        raise DataError(
            f"{root} mixes {len(images)} images and {len(found) - len(images)} tensor files; "
            "put calibration images and tensor files in separate folders"
        )
    return ("images", images) if images else ("tensors", found)


def _walk(root: str) -> list[str]:
    """Data files under `root`, following symlinked folders once each, skipping hidden ones."""
    found: list[str] = []
    visited: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            status = os.stat(folder)
            if (status.st_dev, status.st_ino) in visited:
                continue
            visited.add((status.st_dev, status.st_ino))
            with os.scandir(folder) as scan:
                entries = [entry for entry in scan if not entry.name.startswith(".")]
        except OSError:  # an unreadable folder or a broken link holds no data for us
            continue
        for entry in entries:
            if _is_folder(entry):
                pending.append(entry.path)
            elif _extension(entry.name) in KNOWN_EXTENSIONS:
                found.append(entry.path)
    return found


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # e.g. a symlink to itself
        return False


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower()
