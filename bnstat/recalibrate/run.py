"""`recalibrate()`: checkpoint + data in, recalibrated checkpoint and a report out.

The library entry point behind `bnstat recalibrate`: open the checkpoint, open the
runtime its format calls for (`runtimes.open_runtime`), load the calibration data the
way the model takes it, estimate the statistics, write them back atomically (only the
first process of a distributed run writes) and summarise what changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bnstat.location import Location
from bnstat.recalibrate import distributed
from bnstat.recalibrate.data import CalibrationData, DataOptions
from bnstat.recalibrate.estimator import Method, estimate
from bnstat.recalibrate.model_source import ModelRequest, ModelSpec
from bnstat.recalibrate.passes import Progress
from bnstat.recalibrate.runtime import fitted_options
from bnstat.recalibrate.runtimes import open_runtime
from bnstat.recalibrate.summary import summarize
from bnstat.recalibrate.target import check_target
from bnstat.report.recalibration import RecalibrationReport
from bnstat.stages.open_checkpoint import open_checkpoint


@dataclass(frozen=True)
class Request:
    checkpoint: Location  # a URL is read from a local copy (`remote.download`)
    data: Path
    output: Path
    model: ModelSpec = field(default_factory=ModelSpec)
    data_options: DataOptions = field(default_factory=DataOptions)
    channels: int | None = None  # None: as many as the model takes
    method: Method = Method.EXACT
    passes: int = 1
    verify: bool = True
    device: str = "auto"
    input_key: str | None = None
    in_place: bool = False


def recalibrate(request: Request, progress: Progress | None = None) -> RecalibrationReport:
    """Recalibrate `request.checkpoint` on `request.data` and write `request.output`."""
    start = time.perf_counter()
    with distributed.world() as (rank, world_size), open_checkpoint(request.checkpoint) as raw:
        check_target(raw, request.output, request.in_place)
        runtime = open_runtime(raw, ModelRequest(request.model, request.device, request.input_key))
        options = fitted_options(runtime, request.data_options, request.channels)
        data = CalibrationData(request.data, options, rank, world_size)
        result = estimate(
            runtime, data, request.method, request.passes, request.verify, progress,
            cache_bytes=options.cache_bytes,
        )  # fmt: skip
        writes = distributed.is_writer()
        if writes:
            runtime.write(request.output, request.in_place)
    return summarize(
        result, data, {layer.name: layer.eps for layer in runtime.layers},
        checkpoint=str(request.checkpoint), output=str(request.output) if writes else None,
        source=runtime.source, model=runtime.origin, device=runtime.device,
        seconds=time.perf_counter() - start, processes=world_size,
    )  # fmt: skip
