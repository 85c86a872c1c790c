"""The estimators: exact eval-consistent statistics (default) and the train-mode average.

Default (`exact`): for every BatchNorm layer, the mean and unbiased variance of its input
over the whole calibration set when the model runs in eval mode with the new statistics.
A layer's input depends only on the layers upstream of it, so a sweep in front order is
exact (`exact.ExactSweeps`): segmented through the model's graph where it can be
captured, with its cache planned within the machine's resources, else one probe pass per
front. Extra sweeps (`sweeps > 1`) re-measure everything and report the largest change,
which is float rounding unless the model calls a layer on values that depend on its own
output.

`train-average` is the classic procedure (`momentum=None` in training mode, as
`torch.optim.swa_utils.update_bn`, with dropout and the rest in eval mode): the average
over batches of each batch's mean and unbiased variance, upstream layers normalising by
batch statistics. It depends on the batch size and is offered for comparison.

`verify` checks the result on a sample of the batches through the runner's probe, which
never goes through the sweep's segments (`verification`). The model is left as it was
found unless everything succeeded (`StatisticsStore.kept`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from bnstat.errors import ArgumentError, ModelError
from bnstat.execution import distributed
from bnstat.execution.batches import Batch
from bnstat.execution.loop import DataLoop, Progress, Silent
from bnstat.execution.model import Model
from bnstat.execution.moments import Moments
from bnstat.execution.planning import Resources
from bnstat.execution.resources import memory_budget
from bnstat.recalibrate.exact import ExactSweeps, current_statistics
from bnstat.recalibrate.train_average import train_average
from bnstat.recalibrate.verification import Witness
from bnstat.recalibrate.verification import verify as verified
from bnstat.report.recalibration import CacheUse, PassRecord, PlanRecord


class Method(str, enum.Enum):
    EXACT = "exact"
    TRAIN_AVERAGE = "train-average"


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    before: Moments  # the statistics the model had (count: its num_batches_tracked)
    after: Moments


@dataclass(frozen=True)
class Estimate:
    method: Method
    layers: tuple[LayerEstimate, ...]
    unreached: tuple[str, ...]  # BatchNorm layers the forward pass never calls
    batches: int
    samples: int
    passes: tuple[PassRecord, ...]
    sweep_changes: tuple[float, ...]  # largest relative change made by sweeps 2, 3, ...
    consistency: dict[str, float] | None  # per layer: largest eval-mode mismatch after
    strategy: str  # how the statistics were computed, in words
    cache: CacheUse | None = None  # the activation cache of a segmented sweep
    plan: PlanRecord | None = None  # how that cache was planned


def estimate(
    model: Model,
    data: Iterable[Batch],
    method: Method = Method.EXACT,
    sweeps: int = 1,
    verify: bool = True,
    progress: Progress | None = None,
    cache_bytes: int | None = None,
    segment: bool = True,
    resources: Resources | None = None,
) -> Estimate:
    """Recalibrate the model's BatchNorm statistics on `data` (see the module docstring).

    `cache_bytes` is the memory budget for the values a segmented sweep keeps and the data
    held (None: half of the memory available); `resources` replaces what the machine
    offers (memory, the temporary folder, an accelerator) as a whole. `segment` off sweeps
    by front even where the graph could be cut (to compare the two).
    """
    if sweeps < 1:
        raise ArgumentError("sweeps", "must be at least 1")
    runner = model.runner
    shown = progress or Silent()
    loop = DataLoop(data, shown, runner.takes.exact_batch)
    with runner.evaluating(), model.store.kept() as outcome:
        first = loop.first_batch()
        runner.prepare(first)
        if not runner.layers:
            raise ModelError("the model has no BatchNorm layers with running statistics")
        before = current_statistics(model)
        witness = Witness(runner) if verify else None
        changes: list[float] = []
        cache, planned = None, None
        if method is Method.TRAIN_AVERAGE:
            records = [train_average(model, loop, witness)]
            strategy = "train-mode average, one pass"
        else:
            found = resources or Resources.here(memory_budget(cache_bytes), runner.accumulate_on)
            exact = ExactSweeps(model, loop, first, found, witness, segment, shown)
            records, changes, cache = exact.sweeps(sweeps)
            strategy, planned = exact.strategy, exact.plan_record
        consistency = None
        if witness is not None:
            consistency, record = verified(model, witness, shown)
            records.append(record)
        outcome.succeeded = True
    after = current_statistics(model)
    return Estimate(
        method=method,
        layers=tuple(LayerEstimate(name, before[name], after[name]) for name in before),
        unreached=runner.unreached,
        batches=distributed.total(records[0].batches),
        samples=distributed.total(records[0].samples),
        passes=tuple(records),
        sweep_changes=tuple(changes),
        consistency=consistency,
        strategy=strategy,
        cache=cache,
        plan=planned,
    )
