"""Summarise every layer's statistics: min, max, mean, std, percentiles and non-finite
counts of running_mean, running_var, weight and bias, for all layers at once.

Statistics are over the finite values, in float64 (`bnstat.layer_arrays` computes them per
layer with a few numpy calls whatever the number of layers); a quantity without a finite
value has None for each statistic.
"""

from __future__ import annotations

import numpy as np

from bnstat.layer_arrays import LayerStats, layer_stats
from bnstat.layer_batch import LayerBatch
from bnstat.report.inspection import ChannelValues, Distribution, LayerReport


def layer_reports(batch: LayerBatch) -> list[LayerReport]:
    """Per-layer summaries, computed for all layers at once."""
    negative = np.bincount(batch.ids, weights=batch.var < 0, minlength=batch.size).astype(int)
    mean, var, weight, bias = (
        _distributions(layer_stats(values, batch.offsets), negatives)
        for values, negatives in (
            (batch.mean, None), (batch.var, negative), (batch.weight, None), (batch.bias, None)
        )
    )  # fmt: skip
    channels = np.diff(batch.offsets).tolist()
    counts = [None if c != c else int(c) for c in batch.count.tolist()]  # NaN: not recorded
    return [
        LayerReport(
            name=name,
            channels=channels[i],
            dtype=batch.dtypes[i],
            num_batches_tracked=counts[i],
            affine=affine,
            kind=batch.kinds[i],
            eps=float(batch.eps[i]),
            eps_from_file=bool(batch.eps_from_file[i]),
            running_mean=mean[i],
            running_var=var[i],
            weight=weight[i] if affine else None,
            bias=bias[i] if affine else None,
            values=ChannelValues(
                batch.of_layer(batch.mean, i),
                batch.of_layer(batch.var, i),
                batch.of_layer(batch.weight, i) if affine else None,
                batch.of_layer(batch.bias, i) if affine else None,
            ),
        )
        for i, (name, affine) in enumerate(zip(batch.names, batch.affine.tolist(), strict=True))
    ]


def _distributions(stats: LayerStats, negative: np.ndarray | None) -> list[Distribution]:
    """One `Distribution` per layer; statistics without a finite value become None."""
    columns = [stats.min, stats.max, stats.mean, stats.std, *stats.quantiles.values()]
    rows = np.column_stack(columns).tolist()
    nonfinite = stats.nonfinite.tolist()
    negatives = negative.tolist() if negative is not None else [None] * len(rows)
    distributions = []
    for row, count, negative_count in zip(rows, nonfinite, negatives, strict=True):
        low, high, mean, std, p01, p50, p99 = (None if v != v else v for v in row)  # NaN -> None
        distributions.append(
            Distribution(low, high, mean, std, p01, p50, p99, count, negative_count)
        )
    return distributions
