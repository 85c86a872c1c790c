"""`bnstat diff A B`: how the BatchNorm statistics of one checkpoint drifted from another's.

Typical pairs are a model before and after fine-tuning, weight averaging, pruning or
export, or an EMA against its raw model. Layers are matched by name; for each, the drift
of the running statistics (`bnstat.drift`) and the largest change of |gamma| relative to
the layer's largest |gamma|. Layers found in only one file, or with another channel count,
are listed as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnstat.analysis import analyze_file
from bnstat.drift import Drift, drift
from bnstat.errors import UsageError
from bnstat.report import CheckpointReport, LayerReport
from bnstat.settings import Settings


@dataclass(frozen=True)
class LayerDiff:
    name: str
    channels: tuple[int | None, int | None]  # in A and in B (None: not there)
    drift: Drift | None  # None unless the layer is in both with the same channels
    weight_change: float | None  # largest |gamma_B - gamma_A| / largest |gamma_A|

    @property
    def changed(self) -> bool:
        return self.drift is None or self.drift.changed > 0 or bool(self.weight_change)


@dataclass(frozen=True)
class DiffReport:
    a: CheckpointReport
    b: CheckpointReport
    layers: tuple[LayerDiff, ...]

    @property
    def changed(self) -> tuple[LayerDiff, ...]:
        return tuple(layer for layer in self.layers if layer.changed)


def _model(path: Path, settings: Settings, source: str | None) -> CheckpointReport:
    entries = analyze_file(path, settings)
    if source is None:
        return entries[0]
    chosen = [entry for entry in entries if (entry.source or "") == source]
    if not chosen:
        names = ", ".join(repr(entry.source or "") for entry in entries)
        raise UsageError(f"--source {source!r}: {path} holds {names}")
    return chosen[0]


def _weight_change(old: LayerReport, new: LayerReport) -> float | None:
    a, b = old.values.weight, new.values.weight
    if a is None or b is None:
        return None
    largest = float(np.max(np.abs(a), initial=0.0))
    return float(np.max(np.abs(b - a), initial=0.0)) / largest if largest > 0 else None


def _layer(name: str, old: LayerReport | None, new: LayerReport | None) -> LayerDiff:
    channels = (old.channels if old else None, new.channels if new else None)
    if old is None or new is None or old.channels != new.channels:
        return LayerDiff(name, channels, None, None)
    moved = drift(
        old.values.running_mean, old.values.running_var,
        new.values.running_mean, new.values.running_var, new.eps,
    )  # fmt: skip
    return LayerDiff(name, channels, moved, _weight_change(old, new))


def diff_checkpoints(a: Path, b: Path, settings: Settings, source: str | None = None) -> DiffReport:
    """Per-layer drift from checkpoint `a` to checkpoint `b` (both read as `inspect` reads)."""
    old, new = _model(a, settings, source), _model(b, settings, source)
    old_layers = {layer.name: layer for layer in old.layers}
    new_layers = {layer.name: layer for layer in new.layers}
    names = list(dict.fromkeys([*old_layers, *new_layers]))
    return DiffReport(
        old, new, tuple(_layer(n, old_layers.get(n), new_layers.get(n)) for n in names)
    )
