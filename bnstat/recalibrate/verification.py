"""Verification: the sweep's measurements checked against the whole model, on a sample.

A segmented sweep computes each layer's input through pieces of the graph and a cache;
a mistake in cutting the graph (a missed in-place change, a wrong cached value) would
give wrong statistics without any error. The check: on every `EVERY`-th batch the sweep
also keeps the batch and the layer inputs it measured (`Witness`); after the sweep the
runner's probe, which runs the whole model as it is and never goes through the segments,
measures the same batches again with the final statistics, and each layer's two
measurements are compared (`estimator.mismatch`). They agree to float rounding when the
sweep is right; a segmentation mistake changes the inputs of every batch, so it shows on
any of them. Checking one batch in `EVERY` keeps the check to a small share of the run,
and the kept batches mean the data is never read twice (a shuffling `DataLoader` could
not give the same batches again).

Where the sweep measured nothing to compare with (the train-mode average), the probe's
measurement is compared with the statistics stored, as a measure of how far that method
is from eval-mode consistency on these batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bnstat.execution.batches import Batch, nbytes
from bnstat.execution.loop import DataLoop, Progress
from bnstat.execution.measure import LayerSums, measure
from bnstat.execution.model import Model, ModelRunner
from bnstat.execution.moments import Moments
from bnstat.report.recalibration import PassRecord

EVERY = 16  # one batch in this many is kept and measured again


class Witness:
    """The kept batches, and what the sweep measured on them."""

    def __init__(self, runner: ModelRunner) -> None:
        self._runner = runner
        self.kept: dict[int, Batch] = {}
        self.reference: LayerSums | None = None

    @staticmethod
    def chosen(index: int) -> bool:
        return index % EVERY == 0

    def restart(self) -> None:
        """A new sweep: what it measures replaces what the last one did."""
        runner = self._runner
        names = [layer.name for layer in runner.layers]
        self.reference = LayerSums(runner.layers, names, runner.accumulate_on)

    def keep(self, index: int, batch: Batch) -> None:
        if self.chosen(index):
            self.kept.setdefault(index, batch)

    def saw(self, index: int, found: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Layer inputs measured on batch `index` by the sweep."""
        if self.reference is not None and self.chosen(index):
            self.reference.add(found)

    @property
    def held_bytes(self) -> int:
        return sum(map(nbytes, self.kept.values()))


def mismatch(measured: Moments, stored: Moments, eps: float) -> float:
    """Largest channel error: mean in units of the channel's std, variance relative."""
    scale = torch.sqrt(stored.var + eps).clamp_min(1e-12)
    mean_error = ((measured.mean - stored.mean).abs() / scale).max()
    var_error = ((measured.var - stored.var).abs() / (stored.var + eps).clamp_min(1e-24)).max()
    return float(torch.maximum(mean_error, var_error))


def verify(
    model: Model, witness: Witness, progress: Progress
) -> tuple[dict[str, float], PassRecord]:
    """Per layer, the largest disagreement between the probe on the kept batches and what
    the sweep measured on them (or the stored statistics where it measured nothing)."""
    runner, store = model.runner, model.store
    names = [layer.name for layer in runner.layers]
    batches = [witness.kept[index] for index in sorted(witness.kept)]
    loop = DataLoop(batches, progress, runner.takes.exact_batch)
    sums, record = measure(runner, names, loop, "verify")
    measured = sums.compute()
    reference = witness.reference.compute() if witness.reference is not None else {}
    eps = {layer.name: layer.eps for layer in runner.layers}
    return {
        name: mismatch(measured[name], reference.get(name) or store.read(name), eps[name])
        for name in measured
    }, record
