"""`recalibrate_file()`: checkpoint + data in, recalibrated checkpoint and a report out.

What `bnstat recalibrate` runs: open the checkpoint, check that the output can be
written, remove what killed runs left in the output folder and the temporary folder
(`leftovers`), open the model its format calls for (`execution.runtimes.open_model`),
load the calibration data the way the model takes it, estimate the statistics, write
them back atomically (only the first process of a distributed run writes) and report
what changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from bnstat.execution import distributed
from bnstat.execution.data import FolderData
from bnstat.execution.loop import Progress
from bnstat.execution.model import fitted_options
from bnstat.execution.model_options import RunRequest
from bnstat.execution.planning import Resources
from bnstat.execution.resources import memory_budget, temporary_folder
from bnstat.execution.runtimes import open_model
from bnstat.leftovers import removal_notes, remove_stale
from bnstat.location import Location
from bnstat.phases import reached
from bnstat.recalibrate.estimator import Method, estimate
from bnstat.recalibrate.reporting import DataSummary, recalibration_report
from bnstat.report.recalibration import RecalibrationReport
from bnstat.stages.open_checkpoint import open_checkpoint
from bnstat.writers.target import check_target


@dataclass(frozen=True)
class Request:
    """Recalibrate `checkpoint` with the model and data of `run`; write `output`."""

    checkpoint: Location  # a URL is read from a local copy (`remote.download`)
    output: Path
    run: RunRequest
    method: Method = Method.EXACT
    sweeps: int = 1
    verify: bool = True
    in_place: bool = False


def recalibrate_file(request: Request, progress: Progress | None = None) -> RecalibrationReport:
    """Recalibrate `request.checkpoint` on the data and write `request.output`."""
    start = time.perf_counter()
    with distributed.world() as (rank, world_size), open_checkpoint(request.checkpoint) as raw:
        check_target(raw, request.output, request.in_place)
        removed = [*remove_stale(request.output.parent), *remove_stale(temporary_folder())]
        reached("start")
        run = request.run
        model = open_model(raw, run.model)
        budget = memory_budget(run.options.cache_bytes)
        options = fitted_options(model.runner.takes, run.options, run.channels)
        data = FolderData(
            run.data, replace(options, cache_bytes=budget.bytes), rank, world_size,
            model.runner.accumulate_on,
        )  # fmt: skip
        result = estimate(
            model, data, request.method, request.sweeps, request.verify, progress,
            resources=Resources.here(budget, model.runner.accumulate_on),
        )  # fmt: skip
        writes = distributed.is_writer()
        if writes:
            model.store.write(request.output, request.in_place)
    eps = {layer.name: layer.eps for layer in model.runner.layers}
    return recalibration_report(
        result, DataSummary.of_folder(data), eps,
        checkpoint=str(request.checkpoint), output=str(request.output) if writes else None,
        origin=model.runner.origin, seconds=time.perf_counter() - start, processes=world_size,
        notes=removal_notes(removed),
    )  # fmt: skip
