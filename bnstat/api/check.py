"""`bnstat.check`: what `bnstat check` finds, for a path, paths, a module or a state dict.

Paths go through the command line's own pipeline (folders searched, globs expanded,
checkpoints sniffed by content, each read without running code from it). A module or a
state dict in memory is read like a file (`readers.in_memory`): no pickling, no file,
and each layer's real eps and momentum come from the module.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union

from bnstat.api import arguments
from bnstat.errors import ArgumentError, BnstatWarning

if TYPE_CHECKING:
    from torch import nn

    from bnstat.report.inspection import CheckpointReport, Report
    from bnstat.settings import Settings

PathArgument = Union[str, "os.PathLike[str]"]
Target = Union[PathArgument, Sequence[PathArgument], "nn.Module", Mapping[str, Any]]
FailOnName = Literal["error", "warning", "info", "never"]


def check(
    target: Target,
    *,
    select: str | Sequence[str] | None = None,
    ignore: str | Sequence[str] | None = None,
    fail_on: FailOnName | None = None,
    thresholds: Mapping[str, float] | None = None,
    eps: float | None = None,
    config: PathArgument | None = None,
) -> Report:
    """The findings on the BatchNorm statistics of `target`, as `bnstat check` reports them.

    `target` is a checkpoint path (`str` or `os.PathLike`; a folder is searched, a glob
    expanded), a list of paths, an `nn.Module` (read in memory, with each layer's real
    eps) or a state dict (any mapping of tensors, nested as in checkpoint files).
    `select`/`ignore` take rule codes or prefixes (`"BN00"`, `["BN004", "BN010"]`);
    `fail_on` is the lowest severity that fails `report.verdict` (default: the config
    file's, else `"error"`); `thresholds` override the defaults by name (`bnstat rules`
    lists them); `eps` is assumed where a file records none; `config` is a settings file
    (`pyproject.toml` with `[tool.bnstat]`, or a TOML file of the same keys), and without
    it the built-in defaults apply.

    Returns the report the command line renders: `report.findings` (each with `rule`,
    `layer`, `channels`, `severity`, `message`, `fix`), `report.checkpoints` (one entry
    per model found), `report.verdict` at `fail_on`. One checkpoint that cannot be read
    raises its error (`bnstat.errors.CheckpointError`); among several, an unreadable one
    is an entry with `error` set (and a `BnstatWarning`) and the others are still read.

    Raises `TypeError` for an argument of the wrong type and `ValueError`
    (`bnstat.errors.ArgumentError`) for a value it cannot take: an unknown rule code or
    threshold, a path that yields no checkpoint. Prints nothing.
    """
    settings = arguments.settings(select, ignore, fail_on, thresholds, eps, config)
    if _in_memory(target):
        return _report(_from_memory(target, settings), settings)
    inputs = _inputs(_paths(target))
    entries = _from_files(inputs.items, settings)
    return _report(entries, settings, inputs.skipped)


def _in_memory(target: Any) -> bool:
    torch = sys.modules.get("torch")
    is_module = torch is not None and isinstance(target, torch.nn.Module)
    return is_module or isinstance(target, Mapping)


def _paths(target: Any) -> list[str]:
    expected = "a path (str or os.PathLike), a list of paths, an nn.Module or a state dict"
    items = [target] if isinstance(target, str | os.PathLike) else target
    if not isinstance(items, Sequence) or not all(isinstance(i, str | os.PathLike) for i in items):
        raise TypeError(f"target must be {expected}, not {type(target).__name__}")
    if not items:
        raise ArgumentError("target", "is an empty list")
    return [os.fspath(item) for item in items]


def _inputs(paths: list[str]) -> Any:
    """The checkpoints the paths name; one that names none is a wrong argument."""
    from bnstat.stages.expand_inputs import Inputs, expand_inputs

    found, skipped = [], 0
    for path in paths:
        inputs = expand_inputs([path], allow_empty=True)
        if not inputs.items:
            raise ArgumentError("target", f"{path!r} holds no checkpoint")
        found += inputs.items
        skipped += inputs.skipped
    return Inputs(list(dict.fromkeys(found)), skipped)


def _from_memory(target: Any, settings: Settings) -> list[CheckpointReport]:
    from bnstat.analysis import analyze_checkpoint
    from bnstat.readers.in_memory import read_in_memory

    return analyze_checkpoint(read_in_memory(target), settings)


def _from_files(items: list[Any], settings: Settings) -> list[CheckpointReport]:
    from bnstat.analysis import analyze, analyze_file
    from bnstat.report.inspection import SkippedFile

    if len(items) == 1:
        found = analyze_file(items[0], settings)
        if isinstance(found, SkippedFile):  # a folder of one file, and that no model
            raise ArgumentError("target", f"{found.path!r} holds no model: {found.contents}")
        return found
    entries = list(analyze(items, settings, jobs=1).checkpoints)
    for entry in entries:
        if entry.error is not None:
            warnings.warn(f"{entry.path}: {entry.error.message}", BnstatWarning, stacklevel=4)
    return entries


def _report(entries: list[CheckpointReport], settings: Settings, skipped: int = 0) -> Report:
    from bnstat.report.inspection import Report
    from bnstat.version import __version__

    return Report(tuple(entries), settings.fail_on, __version__, skipped)
