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

Each side goes through the inspect pipeline's stages up to reading its layers
(`bnstat.stages`); no summary is made and no rule runs. Where a file does not record
eps, a `config.json` beside it gives it, else the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bnstat.drift import drift
from bnstat.errors import UsageError
from bnstat.layer_batch import LayerBatch
from bnstat.location import Location
from bnstat.readers.base import CheckpointFormat
from bnstat.readers.model_config import config_eps
from bnstat.report.diff import DiffReport, DiffSide, LayerDiff, Matching
from bnstat.settings import Settings
from bnstat.stages.fetch_ahead import fetch_ahead
from bnstat.stages.find_layers import models_to_read
from bnstat.stages.open_checkpoint import open_checkpoint
from bnstat.stages.read_layers import read_layers


@dataclass(frozen=True, eq=False)
class _Layer:
    """What the drift of one layer needs: its statistics, |gamma| and eps."""

    name: str
    mean: np.ndarray
    var: np.ndarray
    weight: np.ndarray | None  # None when the layer is not affine
    eps: float

    @property
    def channels(self) -> int:
        return len(self.mean)


def _layers(batch: LayerBatch) -> list[_Layer]:
    layers = []
    for i, name in enumerate(batch.names):
        weight = batch.of_layer(batch.weight, i) if batch.affine[i] else None
        mean, var = batch.of_layer(batch.mean, i), batch.of_layer(batch.var, i)
        layers.append(_Layer(name, mean, var, weight, float(batch.eps[i])))
    return layers


def _side(path: Location, settings: Settings, source: str | None) -> tuple[DiffSide, list[_Layer]]:
    """One side: the model `source` of the file (the first one when None) and its layers."""
    with open_checkpoint(path) as raw, np.errstate(all="ignore"):
        models = models_to_read(raw)
        chosen = models[0]
        if source is not None:
            found = [model for model in models if (model[0].name or "") == source]
            if not found:
                names = ", ".join(repr(state.name or "") for state, _ in models)
                raise UsageError(f"{path} holds no model {source!r} (it holds {names})")
            chosen = found[0]
        state, refs = chosen
        fetch_ahead(raw, [chosen])
        config = config_eps(path)  # the model's config.json, as for inspect
        batch = read_layers(refs, config.eps if config is not None else settings.eps)
        return DiffSide(str(raw.path), state.name, raw.format.value), _layers(batch)


def _weight_change(old: _Layer, new: _Layer) -> float | None:
    a, b = old.weight, new.weight
    if a is None or b is None:
        return None
    largest = float(np.max(np.abs(a), initial=0.0))
    return float(np.max(np.abs(b - a), initial=0.0)) / largest if largest > 0 else None


def _layer(old: _Layer | None, new: _Layer | None) -> LayerDiff:
    name = old.name if old is not None else new.name if new is not None else ""
    name_b = new.name if old is not None and new is not None and new.name != old.name else None
    channels = (old.channels if old else None, new.channels if new else None)
    if old is None or new is None or old.channels != new.channels:
        return LayerDiff(name, channels, None, None, name_b)
    moved = drift(old.mean, old.var, new.mean, new.var, new.eps)
    return LayerDiff(name, channels, moved, _weight_change(old, new), name_b)


def module_path(name: str) -> str:
    """An ONNX node name as the module path it carries: `/a/b/BatchNormalization` -> `a.b`."""
    parts = [part for part in name.split("/") if part]
    if len(parts) > 1 and parts[-1].split("#")[0] == "BatchNormalization":
        parts = parts[:-1]
    return ".".join(parts)


Pairs = list[tuple[_Layer | None, _Layer | None]]


def _by_key(
    old: Sequence[_Layer], new: Sequence[_Layer], key_a: Callable[[str], str],
    key_b: Callable[[str], str],
) -> Pairs:  # fmt: skip
    """Pairs of layers with equal keys, A's order first, then what is only in B."""
    by_key = {key_b(layer.name): layer for layer in new}
    pairs: Pairs = [(layer, by_key.pop(key_a(layer.name), None)) for layer in old]
    return pairs + [(None, layer) for layer in by_key.values()]


def _matched(pairs: Pairs) -> int:
    return sum(1 for a, b in pairs if a is not None and b is not None)


Side = tuple[DiffSide, list[_Layer]]


def _pairs(old: Side, new: Side) -> tuple[Pairs, Matching]:
    """The pairing that matches the most layers, by name first."""

    def same(name: str) -> str:
        return name

    def keys(side: DiffSide) -> Callable[[str], str]:
        return module_path if side.format == CheckpointFormat.ONNX.value else same

    (side_a, layers_a), (side_b, layers_b) = old, new
    candidates = [(_by_key(layers_a, layers_b, same, same), Matching.NAME)]
    if CheckpointFormat.ONNX.value in (side_a.format, side_b.format):
        by_path = _by_key(layers_a, layers_b, keys(side_a), keys(side_b))
        candidates.append((by_path, Matching.MODULE_PATH))
    if [layer.channels for layer in layers_a] == [layer.channels for layer in layers_b]:
        in_order: Pairs = list(zip(layers_a, layers_b, strict=True))
        candidates.append((in_order, Matching.ORDER))
    return max(candidates, key=lambda candidate: _matched(candidate[0]))


def diff_checkpoints(
    a: Location,
    b: Location,
    settings: Settings,
    source_a: str | None = None,
    source_b: str | None = None,
    fail_on_change: bool = False,
) -> DiffReport:
    """Per-layer drift from checkpoint `a` to checkpoint `b` (files or URLs), `source_a`
    and `source_b` choosing the model of a file that holds several; `fail_on_change` makes
    any change fail the run."""
    old, new = _side(a, settings, source_a), _side(b, settings, source_b)
    pairs, matching = _pairs(old, new)
    layers = tuple(_layer(x, y) for x, y in pairs)
    return DiffReport(old[0], new[0], layers, matching, fail_on_change)
