"""`bnstat diff A B`: how the BatchNorm statistics of one checkpoint drifted from another's.

Typical pairs are a model before and after fine-tuning, weight averaging, pruning or
export, or an EMA against its raw model (each side may choose its model of a file with
several). For each layer found in both, the drift of the running statistics
(`bnstat.drift`) and the largest change of |gamma| relative to the layer's largest
|gamma|. Layers found in only one file, or with another channel count, are listed.

Layers are matched by name when the names agree. A torch checkpoint and its ONNX export
do not: the exporter names a BatchNormalization node after its module path
(`/layer1/bn1/BatchNormalization` for `layer1.bn1`), so ONNX names are also tried as
module paths; failing both, two files with the same layers in the same order (same
channel counts) are matched by order. The report says which matching was used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bnstat.analysis import analyze_file
from bnstat.drift import drift
from bnstat.errors import UsageError
from bnstat.readers.base import CheckpointFormat
from bnstat.report.diff import DiffReport, DiffSide, LayerDiff, Matching
from bnstat.report.inspection import CheckpointReport, LayerReport
from bnstat.settings import Settings


def _model(path: Path, settings: Settings, source: str | None) -> CheckpointReport:
    entries = analyze_file(path, settings)
    if source is None:
        return entries[0]
    chosen = [entry for entry in entries if (entry.source or "") == source]
    if not chosen:
        names = ", ".join(repr(entry.source or "") for entry in entries)
        raise UsageError(f"{path} holds no model {source!r} (it holds {names})")
    return chosen[0]


def _weight_change(old: LayerReport, new: LayerReport) -> float | None:
    a, b = old.values.weight, new.values.weight
    if a is None or b is None:
        return None
    largest = float(np.max(np.abs(a), initial=0.0))
    return float(np.max(np.abs(b - a), initial=0.0)) / largest if largest > 0 else None


def _layer(old: LayerReport | None, new: LayerReport | None) -> LayerDiff:
    name = old.name if old is not None else new.name if new is not None else ""
    name_b = new.name if old is not None and new is not None and new.name != old.name else None
    channels = (old.channels if old else None, new.channels if new else None)
    if old is None or new is None or old.channels != new.channels:
        return LayerDiff(name, channels, None, None, name_b)
    moved = drift(
        old.values.running_mean, old.values.running_var,
        new.values.running_mean, new.values.running_var, new.eps,
    )  # fmt: skip
    return LayerDiff(name, channels, moved, _weight_change(old, new), name_b)


def module_path(name: str) -> str:
    """An ONNX node name as the module path it carries: `/a/b/BatchNormalization` -> `a.b`."""
    parts = [part for part in name.split("/") if part]
    if len(parts) > 1 and parts[-1].split("#")[0] == "BatchNormalization":
        parts = parts[:-1]
    return ".".join(parts)


Pairs = list[tuple[LayerReport | None, LayerReport | None]]


def _by_key(
    old: Sequence[LayerReport], new: Sequence[LayerReport], key_a: Callable[[str], str],
    key_b: Callable[[str], str],
) -> Pairs:  # fmt: skip
    """Pairs of layers with equal keys, A's order first, then what is only in B."""
    by_key = {key_b(layer.name): layer for layer in new}
    pairs: Pairs = [(layer, by_key.pop(key_a(layer.name), None)) for layer in old]
    return pairs + [(None, layer) for layer in by_key.values()]


def _matched(pairs: Pairs) -> int:
    return sum(1 for a, b in pairs if a is not None and b is not None)


def _pairs(old: CheckpointReport, new: CheckpointReport) -> tuple[Pairs, Matching]:
    """The pairing that matches the most layers, by name first."""

    def same(name: str) -> str:
        return name

    def keys(entry: CheckpointReport) -> Callable[[str], str]:
        return module_path if entry.format == CheckpointFormat.ONNX.value else same

    candidates = [(_by_key(old.layers, new.layers, same, same), Matching.NAME)]
    if CheckpointFormat.ONNX.value in (old.format, new.format):
        by_path = _by_key(old.layers, new.layers, keys(old), keys(new))
        candidates.append((by_path, Matching.MODULE_PATH))
    if [layer.channels for layer in old.layers] == [layer.channels for layer in new.layers]:
        in_order: Pairs = list(zip(old.layers, new.layers, strict=True))
        candidates.append((in_order, Matching.ORDER))
    return max(candidates, key=lambda candidate: _matched(candidate[0]))


def diff_checkpoints(
    a: Path,
    b: Path,
    settings: Settings,
    source_a: str | None = None,
    source_b: str | None = None,
    fail_on_change: bool = False,
) -> DiffReport:
    """Per-layer drift from checkpoint `a` to checkpoint `b` (both read as `inspect` reads),
    `source_a` and `source_b` choosing the model of a file that holds several."""
    old, new = _model(a, settings, source_a), _model(b, settings, source_b)
    pairs, matching = _pairs(old, new)
    side_a, side_b = (DiffSide(side.path, side.source, side.format or "") for side in (old, new))
    layers = tuple(_layer(x, y) for x, y in pairs)
    return DiffReport(side_a, side_b, layers, matching, fail_on_change)
