"""From checkpoints to a `Report`: the inspect pipeline, stage by stage, over many files.

This is the library entry point behind `bnstat inspect` and `bnstat check`. Per file, the
stages of `bnstat.stages` run in order: open the checkpoint, find its state dicts, find
their BatchNorm layers, read them, summarise them, (with --data) diagnose them on data,
run the rules; the last stage, here, puts one `CheckpointReport` per model together. A
file that cannot be read becomes an entry with an error of its kind, and the other files
still run, in a process pool when there are several.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import numpy as np

from bnstat.errors import (
    BnstatError,
    MissingDependencyError,
    NoModelError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
    UsageError,
    internal_error,
)
from bnstat.location import Location, cost_of
from bnstat.readers.base import RawCheckpoint, printable
from bnstat.readers.model_config import config_eps
from bnstat.remote.url import looks_like_url
from bnstat.report.inspection import (
    CheckpointReport,
    ErrorKind,
    FetchCost,
    ReadError,
    Report,
    SkippedFile,
)
from bnstat.rules.base import RuleInput
from bnstat.settings import Settings
from bnstat.stages.expand_inputs import Input
from bnstat.stages.fetch_ahead import fetch_ahead
from bnstat.stages.find_layers import LayerRefs, models_to_read
from bnstat.stages.find_state_dicts import StateDict
from bnstat.stages.open_checkpoint import open_checkpoint
from bnstat.stages.read_layers import read_layers
from bnstat.stages.run_rules import run_rules
from bnstat.stages.summarise import layer_reports
from bnstat.version import __version__
from bnstat.wording import counted

if TYPE_CHECKING:
    from bnstat.execution.loop import Progress
    from bnstat.stages.diagnose import DataRequest, OnData

PARALLEL_FROM = 4  # files: fewer are analysed faster in one process than in a pool


def analyze(
    inputs: Sequence[Location | Input],
    settings: Settings,
    debug: bool = False,
    jobs: int | None = None,
    data: DataRequest | None = None,
    progress: Progress | None = None,
) -> Report:
    """Analyse every file (a path, a URL, or an `Input` already sniffed); unreadable ones
    are reported, not raised (unless `debug`).

    With several files they are analysed in `jobs` processes (default: one per CPU from
    PARALLEL_FROM files on); the report keeps the order of `inputs` either way. With
    `data`, every model is also run on the data (`stages.diagnose`), one file after the
    other in this process.
    """
    items = [item if isinstance(item, Input) else Input(item, None) for item in inputs]
    workers = 1 if data is not None else worker_count(jobs, len(items))
    task = partial(_analyze_one, settings=settings, debug=debug, data=data, progress=progress)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor  # loaded only for a pool

        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(task, items))
    else:
        results = [task(item) for item in items]
    entries = tuple(entry for result in results if isinstance(result, list) for entry in result)
    skipped = tuple(result for result in results if isinstance(result, SkippedFile))
    return Report(entries, settings.fail_on, __version__, no_model=skipped)


def require_selected_layers(report: Report, settings: Settings) -> None:
    """A `UsageError` when a `--layers` glob selects no layer of the checkpoints read.

    A typo in the pattern would otherwise check nothing and pass.
    """
    read = [entry for entry in report.checkpoints if entry.error is None]
    names = [layer.name for entry in read for layer in entry.layers]
    missing = settings.globs_matching_none(names) if read else []
    if missing:
        raise UsageError(
            f"--layers {', '.join(map(repr, missing))} matches no layer of the "
            f"{counted(len(read), 'checkpoint')} read; pass --allow-empty if that is expected"
        )


def require_models(report: Report, scanned: Sequence[tuple[str, frozenset[Location]]]) -> None:
    """A `UsageError` when a folder or pattern yields files that all hold no model (a
    trainer folder whose weights are missing): a gate pointed there must not pass."""
    skipped = {_resolved(side.path): side for side in report.no_model}
    for argument, found in scanned:
        keys = {str(path.resolve()) for path in found}
        if keys and keys <= skipped.keys():
            names = ", ".join(sorted(PurePath(skipped[key].path).name for key in keys))
            raise UsageError(
                f"no model found in {argument}: {counted(len(found), 'file')} holding none "
                f"({names}); pass --allow-empty if that is expected"
            )


def _resolved(shown: str) -> str:
    """A path as reported, made absolute (a URL as it is), to match the scanned files."""
    return shown if looks_like_url(shown) else str(Path(shown).resolve())


def worker_count(jobs: int | None, files: int) -> int:
    if jobs is not None:
        return max(1, min(jobs, files))
    return min(os.cpu_count() or 1, files) if files >= PARALLEL_FROM else 1


def _analyze_one(
    item: Input,
    settings: Settings,
    debug: bool,
    data: DataRequest | None = None,
    progress: Progress | None = None,
) -> list[CheckpointReport] | SkippedFile:
    try:
        return analyze_file(item, settings, data, progress)
    except Exception as err:  # a bad file, or a bug: either way the other files still run
        if debug:
            raise
        return [
            CheckpointReport(
                path=str(item.path), format=None, error=read_error(err), cost=_cost(item.path)
            )
        ]


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
    item: Location | Input,
    settings: Settings,
    data: DataRequest | None = None,
    progress: Progress | None = None,
) -> list[CheckpointReport] | SkippedFile:
    """One entry per model found in the file (e.g. `model` and `ema`), with what reading
    it cost when it is a URL; with `data`, each is also run on the data folder.

    A file that holds no model is one entry with a BN013 note saying what it holds, or,
    found by a folder scan or a pattern, a `SkippedFile`. Layers whose file records no
    eps take the one a `config.json` beside it states, else the settings' (`--eps`).
    """
    item = item if isinstance(item, Input) else Input(item)
    eps_config = config_eps(item.path)
    if eps_config is not None:
        settings = replace(settings, eps=eps_config.eps)
    with open_checkpoint(item.path, item.sniffed) as raw:
        on_data = None
        if data is not None:
            from bnstat.stages.diagnose import on_folder

            on_data = on_folder(data, progress)
        try:
            reports = analyze_checkpoint(raw, settings, on_data)
        except NoModelError as err:
            if not item.named:
                return SkippedFile(str(item.path), str(err))
            reports = [_report(raw, StateDict(None), [], settings, True, None, False, str(err))]
    cost = _cost(item.path)
    return [replace(report, eps_config=eps_config, cost=cost) for report in reports]


def analyze_checkpoint(
    raw: RawCheckpoint, settings: Settings, on_data: OnData | None = None
) -> list[CheckpointReport]:
    """One entry per model of an open checkpoint (a file, or an object in memory); a
    `NoModelError` for one that holds none.

    NaN and infinite statistics are findings (BN001), not numpy warnings on stderr.
    """
    with np.errstate(all="ignore"):
        models = models_to_read(raw)
        fetch_ahead(raw, models)
        several = sum(1 for _, refs in models if refs) > 1
        return [
            _report(raw, state, refs, settings, index == 0, on_data, several)
            for index, (state, refs) in enumerate(models)
        ]


def _cost(location: Location) -> FetchCost | None:
    found = cost_of(location)
    return None if found is None else FetchCost(*found)


def _report(
    raw: RawCheckpoint,
    state: StateDict,
    refs: list[LayerRefs],
    settings: Settings,
    first: bool,
    on_data: OnData | None,
    several: bool,
    no_model: str | None = None,
) -> CheckpointReport:
    """The report stage: one model's layers and findings (and data run) together; or,
    with `no_model`, a file that holds none, and what it holds instead."""
    batch = read_layers(refs, settings.eps)
    layers = layer_reports(batch)
    facts, run = None, None
    if on_data is not None and refs and on_data.source in (None, state.name):
        from bnstat.stages.diagnose import diagnose_model

        diagnosed = diagnose_model(raw, state, several, batch, layers, settings.thresholds, on_data)
        facts, layers, run = diagnosed.facts, diagnosed.layers, diagnosed.run
    refused = raw.refused_globals if first else ()
    rule_input = RuleInput(batch, settings.thresholds, refused, raw.format, facts, no_model)
    return CheckpointReport(
        path=str(raw.path),
        format=raw.format.value,
        source=state.name,
        layers=tuple(r for r in layers if settings.shows_layer(r.name)),
        findings=tuple(run_rules(rule_input, settings)),
        stripped_prefix=state.stripped_prefix,
        data=run,
    )
