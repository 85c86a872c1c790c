"""From file paths to a `Report`: read, find layers, summarise, run the rules.

This is the library entry point behind `bnstat inspect` and `bnstat check`. Each file is
analysed on its own; a file that cannot be read becomes an entry with an `error` and the
other files still run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bnstat import __version__
from bnstat.discovery import LayerRefs, models_in
from bnstat.errors import (
    BnstatError,
    CheckpointError,
    MissingDependencyError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
    UsageError,
    internal_error,
)
from bnstat.layer_batch import LayerBatch, read_layers
from bnstat.layout import StateDict
from bnstat.readers import RawCheckpoint, open_checkpoint
from bnstat.readers.base import printable
from bnstat.report.inspection import (
    ChannelValues,
    CheckpointReport,
    Distribution,
    ErrorKind,
    Finding,
    LayerReport,
    ReadError,
    Report,
)
from bnstat.rules import RULES
from bnstat.rules.base import RuleInput
from bnstat.segments import SegmentStats, segment_stats
from bnstat.settings import Settings

if TYPE_CHECKING:
    from bnstat.recalibrate.diagnosis import DataRequest
    from bnstat.recalibrate.passes import Progress

MAX_CHANNELS = 2**22  # in all layers of a file: ~10x the largest real models; ~500 MB of work

PARALLEL_FROM = 4  # files: fewer are analysed faster in one process than in a pool


def analyze(
    paths: Sequence[Path],
    settings: Settings,
    debug: bool = False,
    jobs: int | None = None,
    data: DataRequest | None = None,
    progress: Progress | None = None,
) -> Report:
    """Analyse every file; unreadable ones are reported, not raised (unless `debug`).

    With several files they are analysed in `jobs` processes (default: one per CPU from
    PARALLEL_FROM files on); the report keeps the order of `paths` either way. With
    `data`, every model is also run on the data (`recalibrate.diagnosis`), one file after
    the other in this process.
    """
    workers = 1 if data is not None else worker_count(jobs, len(paths))
    task = partial(_analyze_one, settings=settings, debug=debug, data=data, progress=progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(task, paths))
    else:
        results = [task(path) for path in paths]
    return Report(
        tuple(entry for result in results for entry in result), settings.fail_on, __version__
    )


def require_selected_layers(report: Report, settings: Settings) -> None:
    """A `UsageError` when a `--layers` glob selects no layer of the checkpoints read.

    A typo in the pattern would otherwise check nothing and pass.
    """
    read = [entry for entry in report.checkpoints if entry.error is None]
    names = [layer.name for entry in read for layer in entry.layers]
    missing = settings.globs_matching_none(names) if read else []
    if missing:
        raise UsageError(
            f"--layers {', '.join(map(repr, missing))} matches no layer of the {len(read)} "
            "checkpoint(s) read; pass --allow-empty if that is expected"
        )


def worker_count(jobs: int | None, files: int) -> int:
    if jobs is not None:
        return max(1, min(jobs, files))
    return min(os.cpu_count() or 1, files) if files >= PARALLEL_FROM else 1


def _analyze_one(
    path: Path,
    settings: Settings,
    debug: bool,
    data: DataRequest | None = None,
    progress: Progress | None = None,
) -> list[CheckpointReport]:
    try:
        return analyze_file(path, settings, data, progress)
    except Exception as err:  # a bad file, or a bug: either way the other files still run
        if debug:
            raise
        return [CheckpointReport(path=str(path), format=None, error=read_error(err))]


def read_error(err: Exception) -> ReadError:
    """Why a checkpoint could not be read, by the kind of the error; any exception that
    is not one of bnstat's own is a bug."""
    if not isinstance(err, BnstatError):
        return ReadError(ErrorKind.INTERNAL, printable(internal_error(err)))
    if isinstance(err, UnsafeCheckpointError):
        kind = ErrorKind.UNSAFE
    elif isinstance(err, UnsupportedCheckpointError | MissingDependencyError):
        kind = ErrorKind.UNSUPPORTED
    else:
        kind = ErrorKind.UNREADABLE
    return ReadError(kind, printable(str(err)))


def analyze_file(
    path: Path,
    settings: Settings,
    data: DataRequest | None = None,
    progress: Progress | None = None,
) -> list[CheckpointReport]:
    """One entry per model found in the file (e.g. `model` and `ema`).

    NaN and infinite statistics are findings (BN001), not numpy warnings on stderr.
    """
    with open_checkpoint(path) as raw, np.errstate(all="ignore"):
        models = models_in(raw)
        channels = sum(ref.channels for _, refs in models for ref in refs)
        if channels > MAX_CHANNELS:  # cheap to ask for with views of one storage: refuse
            raise CheckpointError(
                f"the file's normalization layers hold {channels} channels in all, over the "
                f"limit of {MAX_CHANNELS}"
            )
        several = sum(1 for _, refs in models if refs) > 1
        return [
            _analyze_model(raw, state, refs, settings, index == 0, _OnData(data, progress, several))
            for index, (state, refs) in enumerate(models)
        ]


@dataclass(frozen=True)
class _OnData:
    """With --data: the request, the progress display, whether the file has several models."""

    request: DataRequest | None
    progress: Progress | None
    several: bool


def _analyze_model(
    raw: RawCheckpoint,
    state: StateDict,
    refs: list[LayerRefs],
    settings: Settings,
    first: bool,
    on_data: _OnData,
) -> CheckpointReport:
    batch = read_layers(refs, settings.eps)
    layers = layer_reports(batch)
    facts, run = None, None
    wanted = on_data.request is not None and on_data.request.model.source in (None, state.name)
    if on_data.request is not None and refs and wanted:
        from bnstat.data_check import data_facts, data_run, with_layer_data
        from bnstat.recalibrate.diagnosis import diagnose

        request = on_data.request
        diagnosis = diagnose(raw, state.name, request, on_data.progress)
        source = state.name if on_data.several else None
        command = request.recalibrate_command(str(raw.path), source)
        facts = data_facts(batch, diagnosis, settings.thresholds, command)
        layers = with_layer_data(layers, batch, facts, diagnosis.samples)
        run = data_run(str(request.folder), diagnosis)
    refused = raw.refused_globals if first else ()
    rule_input = RuleInput(batch, settings.thresholds, refused, raw.format, facts)
    return CheckpointReport(
        path=str(raw.path),
        format=raw.format.value,
        source=state.name,
        layers=tuple(r for r in layers if settings.shows_layer(r.name)),
        findings=tuple(run_rules(rule_input, settings)),
        stripped_prefix=state.stripped_prefix,
        data=run,
    )


def run_rules(rule_input: RuleInput, settings: Settings) -> list[Finding]:
    """Every enabled rule's findings, ordered by layer (in execution order when a data
    pass gave it, else as stored) then rule code."""
    names = rule_input.layers.names
    order = rule_input.data.order if rule_input.data is not None else ()
    rank = {layer: position for position, layer in enumerate(order)}
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
                hit.fix or rule.doc.short_fix,
            )
            position = -1 if hit.layer is None else rank.get(hit.layer, len(rank) + hit.layer)
            keyed.append((position, rule.code, finding))
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
