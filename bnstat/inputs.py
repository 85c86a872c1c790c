"""Turn command-line arguments (files, directories, glob patterns) into checkpoint paths.

Directories are searched recursively, in sorted order. A file found there is a
checkpoint when its content sniffs as one, or when its extension says it should be (so a
corrupt `model.pt` in a model zoo is reported, not silently skipped). Shards named by a
`*.safetensors.index.json` are analysed through their index, not one by one.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from bnstat.errors import BnstatError, UsageError
from bnstat.readers.onnx_model import external_data_files
from bnstat.readers.safetensors_file import shard_names
from bnstat.readers.sniff import Container, sniff

CHECKPOINT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pt2", ".onnx", ".tar"}


def expand_inputs(arguments: Sequence[str]) -> list[Path]:
    """Checkpoint paths for the given arguments, duplicates removed, order kept."""
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            paths += _scan_directory(path)
        elif not path.exists() and glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise UsageError(f"{argument}: no file matches this pattern")
            paths += [Path(m) for m in matches if not Path(m).is_dir()]
        else:
            paths.append(path)  # a missing file is reported by the reader, with the others
    return list(dict.fromkeys(paths))


def _scan_directory(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += (Path(root) / name for name in sorted(files) if not name.startswith("."))
    kinds = {path: _container(path) for path in found}
    candidates = [p for p, kind in kinds.items() if kind or p.suffix.lower() in CHECKPOINT_SUFFIXES]
    parts = set(_shards(p for p, kind in kinds.items() if kind is Container.SHARD_INDEX))
    if any(kinds[p] is None for p in candidates):  # raw side files never sniff as checkpoints
        parts |= _onnx_side_files(p for p, kind in kinds.items() if kind is Container.ONNX)
    return [p for p in candidates if p not in parts and p.resolve() not in parts]


def _container(path: Path) -> Container | None:
    """What the file sniffs as, or None when it is no checkpoint (or unreadable)."""
    try:
        return sniff(path)
    except BnstatError:
        return None


def _onnx_side_files(models: Iterable[Path]) -> set[Path]:
    """External-data files of these ONNX models: they are read with their model."""
    side: set[Path] = set()
    for path in models:
        side |= external_data_files(path)
    return side


def _shards(indexes: Iterable[Path]) -> Iterable[Path]:
    """The shard files named by shard indexes (the index itself is what gets analysed)."""
    for index in indexes:
        try:
            yield from (index.parent / name for name in set(shard_names(index)))
        except (BnstatError, OSError):
            continue  # the index itself is reported when analysed
