"""What several rules ask of the same layers, answered once.

A rule module holds one rule; a question that two rules share (which channels are dead,
whether an exporter folded the statistics away, what the stored quantities are called)
lives here, so that rule modules never import each other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bnstat.layer_arrays import layer_median
from bnstat.layer_batch import LayerBatch
from bnstat.readers.base import CheckpointFormat
from bnstat.rules.base import RuleInput

QUANTITIES = ("mean", "var", "weight", "bias")
FIELD_NAMES = {"mean": "running_mean", "var": "running_var", "weight": "weight", "bias": "bias"}


def dead_channel_mask(layers: LayerBatch, thresholds: Mapping[str, float]) -> np.ndarray:
    """Channels whose |weight| is negligible in absolute terms or next to their layer."""
    magnitude = np.abs(layers.weight)
    median = layer_median(magnitude, layers.offsets)[layers.ids]
    dead: np.ndarray = (magnitude <= thresholds["dead-weight-abs"]) | (
        magnitude < thresholds["dead-weight-rel"] * median
    )
    dead &= layers.affine[layers.ids]
    return dead


def statistics_folded(data: RuleInput) -> bool:
    """An ONNX model whose every layer reads mean 0 and variance 1 beside trained scales.

    ONNX stores no batch count, so nothing else tells these from reset statistics; in a
    torch file, reset statistics beside trained weights are a defect (BN003).
    """
    layers = data.layers
    return (
        data.format is CheckpointFormat.ONNX
        and layers.size > 0
        and bool(np.all(layers.mean == 0) and np.all(layers.var == 1))
        and bool(np.any(layers.weight != 1))
    )
