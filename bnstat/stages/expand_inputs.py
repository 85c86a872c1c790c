"""Turn command-line arguments (files, directories, glob patterns) into checkpoints to read.

Every file is sniffed once (`readers.sniff`), here; what it sniffed as travels with its
path to `open_checkpoint`. Directories are searched recursively, in sorted order. A file
found there is a checkpoint when its content sniffs as one; it is also taken (and
reported as unreadable if it cannot be read) when it looks like one: a checkpoint
extension, or content that starts like a pickle, a zip archive or a safetensors file.
Everything else (text, images, JSON side files) is skipped and counted. Shards named by
a shard index (`*.safetensors.index.json`, `pytorch_model.bin.index.json`) are analysed
through their index, not one by one, and the external-data files of an ONNX model with
it, also when one is named on its own or matched by a pattern; a file named several ways
is read once. A URL is a file, or on an object store a folder or a pattern, listed there
(`remote.listing`) and chosen among the same way.

An argument that yields no checkpoint at all (an empty folder, a folder of other files,
a pattern matching nothing) is an error: a CI job pointed at the wrong place must not
pass. `allow_empty` is the explicit way to accept it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bnstat.errors import BnstatError, CheckpointError, UsageError
from bnstat.location import Location, first_bytes, parse_location
from bnstat.readers.shards import shard_names
from bnstat.readers.sniff import HEAD_BYTES, Container, looks_like_safetensors, sniff
from bnstat.remote.url import RemoteOptions, RemoteUrl, looks_like_url, safe_text
from bnstat.stages.exclude import Exclusion, relative_to_pattern

CHECKPOINT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pt2", ".onnx", ".tar"}
CHECKPOINT_SUFFIXES |= {".pkl", ".pickle"}  # pickles of protocol 0 and 1 have no magic bytes
CHECKPOINT_STARTS = (b"\x80", b"PK")  # a pickle, a zip archive


Sniffed = Container | CheckpointError  # what a file is, or why it is none bnstat reads


@dataclass(frozen=True)
class Input:
    """One checkpoint to read: its path (or URL), what its content sniffed as (None: not
    sniffed yet), and whether it was named (on the command line, not found by a folder
    scan or a pattern: a named file that holds no model is reported, not skipped)."""

    path: Location
    sniffed: Sniffed | None = None
    named: bool = True


@dataclass(frozen=True)
class Inputs:
    """The checkpoints to analyse, how many files the folder scans skipped, and the
    files each folder or pattern argument yielded (resolved)."""

    items: list[Input]
    skipped: int = 0
    scanned: tuple[tuple[str, frozenset[Location]], ...] = ()


def expand_inputs(
    arguments: Sequence[str],
    allow_empty: bool = False,
    exclude: Sequence[str] = (),
    remote: RemoteOptions | None = None,
) -> Inputs:
    """The checkpoints for the given arguments (paths, patterns or URLs, whose requests
    obey `remote`), duplicates removed, order kept, files matching an `exclude` glob left
    out (`stages.exclude`; counted as skipped).

    Raises `UsageError` for an argument that yields no checkpoint, unless `allow_empty`
    (or the argument names a file that is excluded: nothing to do is what was asked).
    """
    sniffer = _Sniffer()
    excluded = Exclusion(exclude)
    paths: list[Location] = []
    skipped = 0
    named: set[Location] = set()
    scanned: list[tuple[str, frozenset[Location]]] = []
    for argument in arguments:
        before = excluded.matched
        found, passed_over = _expand(argument, sniffer, excluded, remote)
        left_out = excluded.matched - before
        file = _is_file(argument)
        if not found and not allow_empty and not (left_out and file):
            raise UsageError(_nothing_found(argument, passed_over, left_out))
        resolved = frozenset(path.resolve() for path in found)
        if file or (looks_like_url(argument) and found == [parse_location(argument, remote)]):
            named |= resolved
        else:
            scanned.append((argument, resolved))
        paths += found
        skipped += passed_over
    first: dict[Location, Location] = {}  # one file named several ways (a shard and its index)
    for path in paths:
        first.setdefault(path.resolve(), path)
    items = [Input(path, sniffer(path), key in named) for key, path in first.items()]
    return Inputs(items, skipped, tuple(scanned))


class _Sniffer:
    """`sniff`, asked once per path."""

    def __init__(self) -> None:
        self._known: dict[Location, Sniffed] = {}

    def __call__(self, path: Location) -> Sniffed:
        if path not in self._known:
            try:
                self._known[path] = sniff(path)
            except CheckpointError as err:
                self._known[path] = err
        return self._known[path]

    def container(self, path: Location) -> Container | None:
        """What the file sniffs as, or None when it is no checkpoint (or unreadable)."""
        found = self(path)
        return None if isinstance(found, CheckpointError) else found


def _is_file(argument: str) -> bool:
    return not looks_like_url(argument) and Path(argument).is_file()


def _expand(
    argument: str, sniffer: _Sniffer, excluded: Exclusion, remote: RemoteOptions | None
) -> tuple[list[Location], int]:
    """(checkpoints, files skipped or excluded) for one argument."""
    path = parse_location(argument, remote)
    if isinstance(path, RemoteUrl):
        from bnstat.remote.listing import expand_url

        return expand_url(path, lambda found: _choose(found, sniffer))
    if path.is_dir():
        return _scan_directory(path, sniffer, excluded)
    if path.is_file():
        return ([], 1) if excluded(path) else ([_model_of(path, sniffer)], 0)
    if path.exists() or not glob.has_magic(argument):
        return [path], 0  # a missing file is reported by the reader, with the others
    found: list[Location] = []
    skipped = 0
    for match in sorted(glob.glob(argument, recursive=True)):
        if excluded(relative_to_pattern(match, argument)):
            skipped += 1
        elif Path(match).is_dir():
            in_folder, passed_over = _scan_directory(Path(match), sniffer, excluded)
            found, skipped = found + in_folder, skipped + passed_over
        else:
            found.append(_model_of(Path(match), sniffer))
    return found, skipped


def _nothing_found(argument: str, skipped: int, excluded: int) -> str:
    others = skipped - excluded
    what = [f"{others} other file{'' if others == 1 else 's'}"] * bool(others)
    what += [f"{excluded} excluded"] * bool(excluded)
    if looks_like_url(argument):
        where = f"at {safe_text(argument)}" + (f" ({', '.join(what)})" if what else "")
    elif Path(argument).is_dir():
        where = f"in {argument} ({', '.join(what) or 'empty'})"
    else:
        where = f"by {argument}: no file matches the pattern"
    return f"no checkpoints found {where}; pass --allow-empty if that is expected"


def _scan_directory(
    folder: Path, sniffer: _Sniffer, excluded: Exclusion
) -> tuple[list[Location], int]:
    found: list[Location] = []
    left_out = 0
    for root, dirs, files in os.walk(folder):
        here = Path(root).relative_to(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not excluded(here / d))
        names = [name for name in sorted(files) if not name.startswith(".")]
        taken_names = [name for name in names if not excluded(here / name)]
        found += (Path(root) / name for name in taken_names)
        left_out += len(names) - len(taken_names)
    taken, skipped = _choose(found, sniffer)
    return taken, skipped + left_out


def _choose(found: list[Location], sniffer: _Sniffer) -> tuple[list[Location], int]:
    """(checkpoints, files skipped) among the files of a folder (or a remote listing)."""
    kinds = {path: sniffer.container(path) for path in found}
    candidates = [p for p, kind in kinds.items() if kind or _looks_like_checkpoint(p)]
    parts = set(_shards(p for p, kind in kinds.items() if kind is Container.SHARD_INDEX))
    if any(kinds[p] is None for p in candidates):  # raw side files never sniff as checkpoints
        parts |= _onnx_side_files(p for p, kind in kinds.items() if kind is Container.ONNX)
    taken = [p for p in candidates if p not in parts and p.resolve() not in parts]
    kept = set(candidates) | {p for p in found if p in parts or p.resolve() in parts}
    skipped = [p for p in found if p not in kept]
    return taken, len(skipped)


def _model_of(path: Path, sniffer: _Sniffer) -> Path:
    """The checkpoint a file found on its own belongs to (pre-commit names the files that
    changed): the shard index beside a shard that it names, the ONNX model beside an
    external-data file; else the file itself."""
    if sniffer.container(path) is None:
        return _onnx_model_of(path, sniffer) or path
    for index in sorted(path.parent.glob("*.json")):
        if sniffer.container(index) is Container.SHARD_INDEX and path.resolve() in set(
            _shards([index])
        ):
            return index
    return path


def _onnx_model_of(path: Path, sniffer: _Sniffer) -> Path | None:
    """The ONNX model beside `path` that keeps its tensors in it."""
    for model in sorted(path.parent.glob("*.onnx")):
        if sniffer.container(model) is Container.ONNX and path.resolve() in _onnx_side_files(
            [model]
        ):
            return model
    return None


def _looks_like_checkpoint(path: Location) -> bool:
    """A file that does not sniff as a checkpoint but should be one: read it and report why
    it cannot be read, rather than skip it."""
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return True
    try:  # never opens a pipe or a device: that can block
        head = first_bytes(path, HEAD_BYTES)[0]
    except CheckpointError:
        return False
    return head.startswith(CHECKPOINT_STARTS) or looks_like_safetensors(head)


def _onnx_side_files(models: Iterable[Location]) -> set[Location]:
    """External-data files of these ONNX models: they are read with their model."""
    from bnstat.readers.onnx_model import external_data_files

    side: set[Location] = set()
    for path in models:
        side |= external_data_files(path)
    return side


def _shards(indexes: Iterable[Location]) -> Iterable[Location]:
    """The shard files named by shard indexes (the index itself is what gets analysed)."""
    for index in indexes:
        try:
            yield from ((index.parent / name).resolve() for name in set(shard_names(index)))
        except (BnstatError, OSError):
            continue  # the index itself is reported when analysed
