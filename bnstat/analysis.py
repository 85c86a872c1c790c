"""From file paths to a `Report`: read, find layers, summarise, run the rules.

This is the library entry point behind `bnstat inspect` and `bnstat check`. Each file is
analysed on its own; a file that cannot be read becomes an entry with an `error` and the
other files still run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bnstat import __version__
from bnstat.discovery import LayerRefs, models_in
from bnstat.errors import BnstatError
from bnstat.layer_batch import LayerBatch, read_layers
from bnstat.layout import StateDict
from bnstat.readers import RawCheckpoint, open_checkpoint
from bnstat.report import (
    ChannelValues,
    CheckpointReport,
    Distribution,
    Finding,
    LayerReport,
    Report,
)
from bnstat.rules import RULES
from bnstat.rules.base import RuleInput
from bnstat.segments import SegmentStats, segment_stats
from bnstat.settings import Settings


def analyze(paths: Sequence[Path], settings: Settings, debug: bool = False) -> Report:
    """Analyse every file; unreadable ones are reported, not raised (unless `debug`)."""
    entries: list[CheckpointReport] = []
    for path in paths:
        try:
            entries.extend(analyze_file(path, settings))
        except BnstatError as err:
            if debug:
                raise
            entries.append(CheckpointReport(path=str(path), format=None, error=str(err)))
        except Exception as err:  # a bug or an input nobody foresaw: report it, keep going
            if debug:
                raise
            message = f"unexpected {type(err).__name__}: {err} (rerun with --debug for details)"
            entries.append(CheckpointReport(path=str(path), format=None, error=message))
    return Report(tuple(entries), settings.fail_on, __version__)


def analyze_file(path: Path, settings: Settings) -> list[CheckpointReport]:
    """One entry per model found in the file (e.g. `model` and `ema`)."""
    with open_checkpoint(path) as raw:
        models = models_in(raw)
        return [
            _analyze_model(raw, state, refs, settings, first=index == 0)
            for index, (state, refs) in enumerate(models)
        ]


def _analyze_model(
    raw: RawCheckpoint, state: StateDict, refs: list[LayerRefs], settings: Settings, first: bool
) -> CheckpointReport:
    batch = read_layers(refs, settings.eps)
    rule_input = RuleInput(batch, settings.thresholds, raw.refused_globals if first else ())
    return CheckpointReport(
        path=str(raw.path),
        format=raw.format.value,
        source=state.name,
        layers=tuple(r for r in layer_reports(batch) if settings.shows_layer(r.name)),
        findings=tuple(run_rules(rule_input, settings)),
        stripped_prefix=state.stripped_prefix,
    )


def run_rules(rule_input: RuleInput, settings: Settings) -> list[Finding]:
    """Every enabled rule's findings, ordered by layer then rule code."""
    names = rule_input.layers.names
    keyed: list[tuple[int, str, Finding]] = []
    for rule in RULES:
        if not settings.rule_enabled(rule.code):
            continue
        for hit in rule.check(rule_input):
            layer = names[hit.layer] if hit.layer is not None else None
            if settings.ignored_at(rule.code, layer) or not settings.shows_layer(layer):
                continue
            finding = Finding(
                rule.code,
                rule.name,
                rule.severity,
                layer,
                hit.channels,
                hit.message,
                rule.doc.short_fix,
            )
            keyed.append((-1 if hit.layer is None else hit.layer, rule.code, finding))
    keyed.sort(key=lambda item: item[:2])
    return [finding for *_, finding in keyed]


def layer_reports(batch: LayerBatch) -> list[LayerReport]:
    """Per-layer summaries, computed for all layers at once."""
    negative = np.bincount(batch.ids, weights=batch.var < 0, minlength=batch.size).astype(int)
    mean, var, weight, bias = (
        _distributions(segment_stats(values, batch.offsets), negatives)
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


def _distributions(stats: SegmentStats, negative: np.ndarray | None) -> list[Distribution]:
    """One `Distribution` per segment; statistics without a finite value become None."""
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
