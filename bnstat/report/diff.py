"""The drift between two checkpoints, layer by layer (`bnstat diff`), and how their layers
were paired."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bnstat.drift import Drift
from bnstat.report.verdict import Verdict


class Matching(str, enum.Enum):
    """How the layers of A and B were paired; the values are the JSON report's."""

    NAME = "name"
    MODULE_PATH = "module-path"  # ONNX node names read as the module paths they carry
    ORDER = "order"  # same channel counts in the same order

    @property
    def description(self) -> str:
        return {
            Matching.NAME: "layers matched by name",
            Matching.MODULE_PATH: "layers matched by the module paths in ONNX node names",
            Matching.ORDER: "layers matched by order and channel count (their names differ)",
        }[self]


@dataclass(frozen=True)
class LayerDiff:
    name: str  # A's name (B's for a layer only in B)
    channels: tuple[int | None, int | None]  # in A and in B (None: not there)
    drift: Drift | None  # None unless the layer is in both with the same channels
    weight_change: float | None  # largest |gamma_B - gamma_A| / largest |gamma_A|
    name_b: str | None = None  # B's name for the layer, where it differs from A's

    @property
    def changed(self) -> bool:
        return self.drift is None or self.drift.changed > 0 or bool(self.weight_change)


@dataclass(frozen=True)
class DiffSide:
    """One of the two checkpoints: its path, its model inside the file, its format."""

    path: str
    source: str | None
    format: str


@dataclass(frozen=True)
class DiffReport:
    a: DiffSide
    b: DiffSide
    layers: tuple[LayerDiff, ...]
    matching: Matching = Matching.NAME
    fail_on_change: bool = False  # the run is a gate that any change fails

    @property
    def changed(self) -> tuple[LayerDiff, ...]:
        return tuple(layer for layer in self.layers if layer.changed)

    @property
    def verdict(self) -> Verdict:
        return Verdict.FAILED if self.fail_on_change and self.changed else Verdict.PASSED
