"""Finding calibration files: images or tensor files, recursively, fast, loop-safe.

A folder that cannot be listed (permission denied, say) may hold data the run then goes
without: it is recorded with the reason, like a file that cannot be read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bnstat.errors import DataError
from bnstat.report.recalibration import Unreadable

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
TENSOR_EXTENSIONS = frozenset({".npy", ".pt", ".pth", ".safetensors"})
KNOWN_EXTENSIONS = IMAGE_EXTENSIONS | TENSOR_EXTENSIONS


@dataclass(frozen=True)
class Found:
    """The data files under a folder: their kind, their paths in sorted order, and the
    folders that could not be listed."""

    kind: str  # "images" or "tensors"
    files: list[str]
    unlisted: list[Unreadable]


def discover(root: Path) -> Found:
    """Which kind of data the folder holds, and its files in sorted order."""
    if not root.is_dir():
        raise DataError(f"calibration data folder {root} does not exist or is not a folder")
    unlisted: list[Unreadable] = []
    found = sorted(_walk(str(root), unlisted))
    if not found:
        known = ", ".join(sorted(KNOWN_EXTENSIONS))
        unsearched = f"; {unlisted[0].path}: {unlisted[0].reason}" if unlisted else ""
        raise DataError(f"no calibration files under {root} (looked for {known}){unsearched}")
    images = [path for path in found if _extension(path) in IMAGE_EXTENSIONS]
    if images and len(images) < len(found):
        raise DataError(
            f"{root} mixes {len(images)} images and {len(found) - len(images)} tensor files; "
            "put calibration images and tensor files in separate folders"
        )
    return Found("images", images, unlisted) if images else Found("tensors", found, unlisted)


def _walk(root: str, unlisted: list[Unreadable]) -> list[str]:
    """Data files under `root`, following symlinked folders once each, skipping hidden ones;
    folders that cannot be listed go to `unlisted`."""
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
        except OSError as err:
            reason = (err.strerror or str(err)).lower()
            unlisted.append(Unreadable(folder, f"folder not searched: {reason}"))
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
