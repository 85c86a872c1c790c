"""`bnstat.diagnose`: the report of `bnstat check --data`, for a module and batches in memory.

The module runs once in eval mode with the statistics it holds, on the caller's batches
(as `bnstat.recalibrate` runs it: unwrapped, where it is, called the caller's way); what
every BatchNorm layer receives is compared with its statistics (rule BN014, the first
layer off, the per-layer data fit), beside the findings `bnstat.check(model)` gives.
Nothing is changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bnstat.api import arguments
from bnstat.api.check import FailOnName, PathArgument
from bnstat.api.on_data import CallFn, Data, Device, Opened, opened, progress_bar

if TYPE_CHECKING:
    from torch import nn

    from bnstat.execution.measure import Measurement
    from bnstat.report.inspection import Report
    from bnstat.stages.diagnose import OnData

FIX = "bnstat.recalibrate(model, data)"  # what a BN014 finding's fix names


def diagnose(
    model: nn.Module,
    data: Data,
    *,
    device: Device = None,
    call_fn: CallFn | None = None,
    input_key: str | None = None,
    max_samples: int | None = None,
    cache_mb: int | None = None,
    select: str | Sequence[str] | None = None,
    ignore: str | Sequence[str] | None = None,
    fail_on: FailOnName | None = None,
    thresholds: Mapping[str, float] | None = None,
    config: PathArgument | None = None,
    progress: bool = False,
) -> Report:
    """Which BatchNorm layers' statistics do not fit what they receive on `data`.

    Runs `model` once in eval mode on `data` with its own statistics and reports, like
    `bnstat check --data`: every layer in execution order with its data fit
    (`layer.data`: mean shift in stored standard deviations, variance ratio, channels
    off, the first layer off), rule BN014 where a layer's statistics do not fit beyond
    sampling noise (the first layer off is where the problem starts; later ones may only
    be downstream of it), and the findings `bnstat.check(model)` gives.

    `data`, `device`, `call_fn`, `input_key`, `max_samples` and `cache_mb` are read as
    `bnstat.recalibrate` reads them; `select`, `ignore`, `fail_on`, `thresholds` and
    `config` as `bnstat.check` does. Changes nothing, writes nothing, prints nothing
    unless `progress=True` asks for a bar on stderr. Raises `TypeError`/`ValueError` for
    wrong arguments.
    """
    from bnstat.analysis import analyze_checkpoint
    from bnstat.execution.measure import measure_model
    from bnstat.readers.in_memory import read_in_memory
    from bnstat.report.inspection import Report
    from bnstat.version import __version__

    settings = arguments.settings(select, ignore, fail_on, thresholds, None, config)
    run = opened(
        model, data, device=device, call_fn=call_fn, input_key=input_key,
        max_samples=max_samples, cache_mb=cache_mb,
    )  # fmt: skip
    with run as fed, progress_bar(progress) as bar:
        measurement = measure_model(fed.model, fed.data, bar)
    entries = analyze_checkpoint(read_in_memory(model), settings, _on_data(fed, measurement, data))
    return Report(tuple(entries), settings.fail_on, __version__)


def _on_data(fed: Opened, measurement: Measurement, data: object) -> OnData:
    """The measurement, its layers named as the module's state dict names them."""
    from dataclasses import replace

    from bnstat.stages.diagnose import OnData

    summary = fed.summary()
    described = replace(
        measurement,
        options=(("batch_size", summary.batch_size), ("max_samples", fed.data.max_samples)),
        input=summary.input,
    )

    def measure(_raw: object, state: object) -> Measurement:
        stripped = getattr(state, "stripped_prefix", "")

        def name(layer: str) -> str:
            full = fed.prefix + layer
            return full.removeprefix(stripped) if full.startswith(stripped) else full

        return described.renamed(name)

    return OnData(f"<{type(data).__name__}>", measure, lambda _checkpoint, _source: FIX)
