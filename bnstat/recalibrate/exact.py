"""The exact method's sweeps: segmented and planned where the graph allows, else by front.

Where the runner captures a graph that can be cut at BatchNorm fronts (`schedule.plan`),
one sweep runs each segment once over all the data. Before it starts, the segments run
once on the first batch (`profile`) and the values they pass on are placed in memory, on
disk or recomputed within the resources of the machine (`planning.plan_cache`); a plan
that cannot fit is refused here, before any pass. Where the number of samples is not
known beforehand (a plain iterable), the cache keeps values in memory up to the budget
and spills the rest, and the report says the plan was made as the data came.

Where the graph cannot be cut, the sweep falls back to one probe pass per front, and the
report says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from bnstat.execution.batches import Batch, batch_size, nbytes
from bnstat.execution.loop import DataLoop, Progress
from bnstat.execution.model import Model
from bnstat.execution.moments import Moments
from bnstat.execution.planning import CachePlan, Resources, plan_cache
from bnstat.execution.profile import profile
from bnstat.execution.schedule import Plan, Unsegmentable, fronts, plan
from bnstat.recalibrate.sweep import SweepResult, by_front, segmented
from bnstat.recalibrate.verification import EVERY, Witness, mismatch
from bnstat.report.recalibration import CacheUse, PassRecord, PlanRecord
from bnstat.wording import counted

LONG_RUN_SECONDS = 30.0  # a plan expected to take at least this long is announced


@dataclass
class ExactSweeps:
    """Sweeps of the exact method; `segment` off sweeps by front even where the graph
    could be cut (to compare the two)."""

    model: Model
    loop: DataLoop
    first: Batch  # the first batch, to profile the segments on
    resources: Resources
    witness: Witness | None = None
    segment: bool = True
    progress: Progress | None = None

    def __post_init__(self) -> None:
        capture = self.model.runner.capture()
        self.plan: Plan | None = None
        self.cache_plan: CachePlan | None = None
        try:
            if not self.segment:
                raise Unsegmentable("segments turned off")
            if capture.refused is not None:
                raise Unsegmentable(capture.refused)
            self.plan = plan(capture.ops)
        except Unsegmentable as why:
            names = [layer.name for layer in self.model.runner.layers]
            self.groups = fronts(capture.ops) if capture.ops else [[name] for name in names]
            self.strategy = (
                f"by front: {len(self.groups)} passes, each stopped after its front "
                f"(the model cannot be run in segments: {why})"
            )
            return
        self.cache_plan = self._planned(self.plan)
        segments = len(self.plan.segments)
        how = f"segmented: {counted(segments, 'segment')} of the {capture.how} graph, one pass"
        recomputed = len(self.cache_plan.plan.recomputed) if self.cache_plan else 0
        self.strategy = how + (f", {recomputed} values recomputed" if recomputed else "")

    def _planned(self, base: Plan) -> CachePlan | None:
        """The cache's plan, where the number of samples is known; announced if long."""
        samples = self.loop.expected_samples(self.first)
        if samples is None:
            return None
        measured = profile(self.model.runner, base, self.first)
        held = self._held(samples)
        size = batch_size(self.first)
        result = plan_cache(base, measured, samples, size, self.resources, held)
        if self.progress is not None and result.lower_bound >= LONG_RUN_SECONDS:
            self.progress.note(result.describe())
        return result

    def _held(self, samples: int) -> int:
        """Memory the data will take: a source that keeps its decoded batches between
        passes (`held_bytes`) keeps them, as they are stored (`kept_sample_bytes`: uint8
        images, say), while they fit in the budget; the verification keeps one batch in
        `EVERY` as the model takes it."""
        sample_bytes = nbytes(self.first) // max(batch_size(self.first), 1)
        kept = samples * sample_bytes // EVERY if self.witness is not None else 0
        if not hasattr(self.loop.data, "held_bytes"):
            return kept
        stored = getattr(self.loop.data, "kept_sample_bytes", None) or sample_bytes
        return min(samples * stored, self.resources.memory.bytes) + kept

    def sweep(self, label: str) -> SweepResult:
        if self.witness is not None:
            self.witness.restart()
        if self.plan is not None:
            return segmented(
                self.model, self.plan, self.cache_plan, self.loop, label,
                self.resources.memory.bytes, self.witness,
            )  # fmt: skip
        return by_front(self.model, self.groups, self.loop, label, self.witness)

    def sweeps(self, count: int) -> tuple[list[PassRecord], list[float], CacheUse | None]:
        """`count` sweeps: their passes, the change made by each after the first, the cache."""
        records, changes, cache = [], [], None
        previous = None  # the statistics after the sweep before, kept only to compare
        for number in range(1, count + 1):
            result = self.sweep(f"sweep {number}")
            records.append(result.record)
            cache = cache or result.cache
            current = current_statistics(self.model) if count > 1 else None
            if previous is not None and current is not None:
                changes.append(_largest_change(previous, current))
            previous = current
        return records, changes, cache

    @property
    def plan_record(self) -> PlanRecord | None:
        found = self.cache_plan
        if found is None:
            return None
        return PlanRecord(
            samples=found.samples,
            budget_bytes=found.memory_budget.bytes,
            available_bytes=found.memory_budget.available,
            memory_bytes=found.peak_memory,
            device_bytes=found.peak_device,
            disk_bytes=found.peak_disk,
            written_bytes=found.written,
            read_bytes=found.read,
            recomputed=len(found.plan.recomputed),
            compute_seconds=found.compute_seconds,
            recompute_seconds=found.recompute_seconds,
            transfer_seconds=found.transfer_seconds,
            lower_bound_seconds=found.lower_bound,
            folder=found.disk_folder,
            description=found.describe(),
        )


def current_statistics(model: Model) -> dict[str, Moments]:
    return {layer.name: model.store.read(layer.name) for layer in model.runner.layers}


def _largest_change(before: dict[str, Moments], after: dict[str, Moments]) -> float:
    return max((mismatch(after[name], old, 0.0) for name, old in before.items()), default=0.0)
