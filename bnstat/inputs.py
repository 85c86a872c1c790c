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
    candidates = [p for p in found if _is_candidate(p)]
    parts = set(_shards_named_by_indexes(p for p in candidates if p.name.endswith(".json")))
    parts |= _onnx_side_files(candidates)
    return [p for p in candidates if p not in parts and p.resolve() not in parts]


def _is_candidate(path: Path) -> bool:
    try:
        sniff(path)
        return True
    except BnstatError:
        return path.suffix.lower() in CHECKPOINT_SUFFIXES


def _onnx_side_files(candidates: Iterable[Path]) -> set[Path]:
    """External-data files of the ONNX models among the candidates: read with their model."""
    side: set[Path] = set()
    for path in candidates:
        try:
            if sniff(path) is Container.ONNX:
                side |= external_data_files(path)
        except BnstatError:
            continue
    return side


def _shards_named_by_indexes(indexes: Iterable[Path]) -> Iterable[Path]:
    for index in indexes:
        try:
            if sniff(index) is not Container.SHARD_INDEX:
                continue
            yield from (index.parent / name for name in set(shard_names(index)))
        except (BnstatError, OSError):
            continue  # the index itself is reported when analysed
