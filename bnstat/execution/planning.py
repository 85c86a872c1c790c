"""Where an exact sweep keeps the values its segments pass on: planned before the first pass.

A segmented sweep runs each segment over all the data before the next, so every value
that crosses a cut is kept for every sample until its last reader has run. Measured on
the first batch (`profile`), each such value has a size per sample and a lifetime (the
stages from the segment that makes it to the last that reads it). Given the number of
samples, the plan puts each value, batch by batch, in one of these places:

- device memory (an accelerator's, when the run is on one): free to read;
- host memory: a copy each way on an accelerator, free on the CPU;
- a file in the temporary folder: written once, read back by every later reader, at the
  folder's measured speeds;
- nowhere: recomputed by every segment that reads it, from values that stay (`schedule`),
  at the measured speed of the segments that made it.

Memory fills first. Where the values alive at some stage exceed a memory, the value
that costs least per byte to move out, counted over the stages it relieves, moves out:
down to the next place, or to recomputing where that is cheaper (on an accelerator
compute is cheap and disks are slow; on a CPU with a fast disk, spilling wins). When the
disk cannot hold what memory cannot, values are recomputed instead where they can be;
when that is not enough either, the run is refused before it starts, saying what would
fit. The plan also gives its cost: compute, recompute, bytes written and read, and a
lower bound on the sweep's time (compute and transfers perfectly overlapped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bnstat.errors import NamesArguments
from bnstat.execution.profile import Profile
from bnstat.execution.resources import Budget, Device, Disk, accelerator, disk
from bnstat.execution.schedule import Plan, replan
from bnstat.wording import counted, megabytes

if TYPE_CHECKING:
    import torch

DISK_MARGIN = 0.9  # of the free space, the most a plan fills
RESERVE_FACTOR = 1  # a batch's working set (a segment's inputs and outputs), kept free
GB = 2**30


@dataclass(frozen=True)
class Resources:
    memory: Budget
    disk: Disk
    device: Device | None = None

    @classmethod
    def here(cls, memory: Budget, device: torch.device) -> Resources:
        """This machine's: `memory`, the temporary folder, and `device` if an accelerator."""
        return cls(memory, disk(), accelerator(device))


@dataclass(frozen=True)
class Placement:
    """Where one value's batches go: the first `device` on the device, the next `memory` in
    host memory, the rest on disk; `recompute`: none, it is remade where read."""

    device: int = 0
    memory: int = 0
    recompute: bool = False


@dataclass(frozen=True)
class CachePlan:
    """The placement of every cached value, what it will hold, and what it will cost."""

    plan: Plan
    placements: dict[int, Placement]
    samples: int
    memory_budget: Budget
    peak_memory: int  # host bytes of cached values at the fullest stage
    peak_device: int
    peak_disk: int
    written: int  # bytes to disk, and read back from it
    read: int
    compute_seconds: float  # the segments, once each, over every sample
    recompute_seconds: float
    transfer_seconds: float  # disk and host-device copies at the measured speeds
    disk_folder: str

    @property
    def lower_bound(self) -> float:
        """Seconds the sweep needs at least: compute and transfers perfectly overlapped."""
        return max(self.compute_seconds + self.recompute_seconds, self.transfer_seconds)

    def describe(self) -> str:
        """One line: where the cached values go and what that costs."""
        budget = self.memory_budget
        given = "as given" if budget.available is None else "half of what was available"
        parts = [f"{_size(self.peak_memory)} in memory of a {_size(budget.bytes)} budget ({given})"]
        if self.peak_device:
            parts.append(f"{_size(self.peak_device)} on the device")
        if self.written:
            parts.append(
                f"{_size(self.written)} written to {self.disk_folder} "
                f"({_size(self.peak_disk)} at once)"
            )
        if self.plan.recomputed:
            parts.append(f"{counted(len(self.plan.recomputed), 'value')} recomputed")
        return (
            f"cache plan for {self.samples} samples: {', '.join(parts)}; at least "
            f"{self.lower_bound:.1f} s at this machine's speeds"
        )


def _size(count: float) -> str:
    return f"{count / GB:.1f} GB" if count >= GB else megabytes(count)


class BudgetError(NamesArguments):
    """The sweep's cache fits neither the memory budget nor the temporary folder."""

    def __init__(
        self, needed: int, memory: int, disk: Disk, samples: int, fits: int, budget: int
    ) -> None:
        super().__init__(needed, memory, disk, samples, fits, budget)
        self.needed, self.memory, self.disk, self.samples = needed, memory, disk, samples
        self.fits, self.budget = fits, budget  # samples that would fit; memory that would

    def named(self, name: Callable[[str], str]) -> str:
        disk_needed = (self.needed - self.memory) / DISK_MARGIN
        return (
            f"the exact sweep needs {_size(self.needed)} for the values it keeps between "
            f"segments over {self.samples} samples, more than {name('cache_mb')} allows "
            f"plus the {_size(self.disk.free)} free in {self.disk.folder}: use "
            f"{name('max_samples')} {self.fits} or fewer, {name('cache_mb')} "
            f"{self.budget // 2**20 + 1} or more, or a TMPDIR with {_size(disk_needed)} free "
            "(nothing was run)"
        )


@dataclass
class _Value:
    """One cached value while planning: its total bytes, lifetime and where they are."""

    number: int
    size: float  # bytes over all samples
    first: int
    last: int
    reads: int
    pinned: bool
    remake: float | None  # seconds to recompute it once for every sample; None: it cannot be
    sources: tuple[int, ...] = ()  # the cached values it is recomputed from
    placed: list[float] = field(default_factory=list)  # bytes per place: memories, then disk
    recompute: bool = False

    def live(self, stage: int) -> bool:
        return self.first <= stage <= self.last and not self.recompute

    def recompute_cost(self) -> float | None:
        """Seconds of recomputing it for every reader, None where it cannot be."""
        return None if self.remake is None else self.reads * self.remake


Move = Callable[[_Value], float]  # seconds per byte of keeping a value one place down


def plan_cache(
    plan: Plan, profile: Profile, samples: int, batch_size: int, resources: Resources,
    held: int = 0,
) -> CachePlan:  # fmt: skip
    """Place every cached value of `plan` (see the module docstring); `held` bytes of
    decoded data share the host memory budget."""
    memories = _memories(resources, profile, batch_size, held)
    values = _values(plan, profile, samples, len(memories))
    stages = len(plan.segments)
    for level, capacity in enumerate(memories):
        _relieve(values, level, capacity, stages, _move(resources, level))
    room = int(resources.disk.free * DISK_MARGIN)
    disk = len(memories)
    _fit_disk(values, disk, room, stages)
    if _peak(values.values(), disk, stages) > room:
        raise _refusal(list(values.values()), memories[-1], resources, samples, stages)
    recompute = frozenset(v.number for v in values.values() if v.recompute)
    final = replan(plan, recompute) if recompute else plan
    return _summary(final, values, profile, samples, batch_size, resources, memories)


def _memories(resources: Resources, profile: Profile, batch_size: int, held: int) -> list[int]:
    """Bytes for cached values in each memory: the device's (if any), then the host's; a
    few batches' working set stays free in each."""
    reserve = int(RESERVE_FACTOR * profile.working_bytes * batch_size)
    host = max(0, resources.memory.bytes - held - reserve)
    device = resources.device
    return [max(0, device.memory - reserve), host] if device is not None else [host]


def _values(plan: Plan, profile: Profile, samples: int, memories: int) -> dict[int, _Value]:
    last = {value: stage for stage, released in plan.release.items() for value in released}
    values = {}
    for number, cached in plan.cached.items():
        size = profile.value_bytes.get(number, 0.0) * samples
        remake = None
        if cached.closure is not None:  # the share of its stage's time that its ops take
            spec = plan.segments[cached.stage]
            share = len(cached.closure.ops) / max(len(spec.ops), 1)
            remake = profile.segment_seconds[cached.stage] * min(share, 1.0) * samples
        placed = [size] + [0.0] * memories
        sources = cached.closure.inputs if cached.closure is not None else ()
        values[number] = _Value(
            number, size, cached.stage, last.get(number, cached.stage), len(cached.reads),
            number in plan.pinned, remake, sources, placed,
        )  # fmt: skip
    return values


def _move(resources: Resources, level: int) -> Move:
    """The cost of keeping a value one place below memory `level`: on the host rather than
    the device (a copy out and one back per reader), or on disk rather than in memory."""
    device, disk = resources.device, resources.disk
    if device is not None and level == 0:
        return lambda value: (1 + value.reads) / device.copy_speed
    return lambda value: 1 / disk.write_speed + value.reads / disk.read_speed


def _usage(values: Iterable[_Value], level: int, stage: int) -> float:
    """Bytes in place `level` at `stage`."""
    return sum(v.placed[level] for v in values if v.live(stage))


def _peak(values: Iterable[_Value], level: int, stages: int) -> int:
    """The most bytes place `level` holds at any stage."""
    every = list(values)
    return int(max((_usage(every, level, s) for s in range(stages)), default=0.0))


def _relieve(values: dict[int, _Value], level: int, capacity: int, stages: int, move: Move) -> None:
    """Move bytes out of memory `level` until no stage holds more than `capacity`: each
    time the value cheapest to move, per byte and per stage it relieves."""
    every = list(values.values())
    while True:
        overflow, stage = max((_usage(every, level, s) - capacity, s) for s in range(stages))
        if overflow <= 0:
            return
        movable = [v for v in every if v.live(stage) and v.placed[level] > 0 and not v.pinned]
        if not movable:
            return  # pinned values stay where they are made
        chosen = min(movable, key=lambda v: _per_byte(v, move) / (v.last - v.first + 1))
        amount = min(chosen.placed[level], overflow)
        cost = chosen.recompute_cost()
        if cost is not None and cost < amount * move(chosen):  # cheaper than moving enough
            _recompute(values, chosen)
            continue
        chosen.placed[level] -= amount
        chosen.placed[level + 1] += amount


def _per_byte(value: _Value, move: Move) -> float:
    """Seconds per byte of the cheaper way out of memory: moving down, or recomputing."""
    cost = value.recompute_cost()
    moving = move(value)
    return moving if cost is None or value.size <= 0 else min(moving, cost / value.size)


def _recompute(values: dict[int, _Value], value: _Value) -> None:
    """Remake `value` where read: it leaves every place, and what it is remade from stays
    until its last reader."""
    value.recompute = True
    value.placed = [0.0] * len(value.placed)
    _outlive(values, value.sources, value.last, value.reads)


def _outlive(values: dict[int, _Value], sources: tuple[int, ...], stage: int, reads: int) -> None:
    """What a recomputed value is remade from stays until `stage`, and is read by its
    `reads` readers as well."""
    for number in sources:
        source = values[number]
        if source.recompute:  # itself remade, from what it is made of
            _outlive(values, source.sources, stage, reads)
        else:
            source.last = max(source.last, stage)
            source.reads += reads


def _fit_disk(values: dict[int, _Value], disk: int, room: int, stages: int) -> None:
    """Where the disk is short, recompute what is on it, cheapest per byte first."""
    candidates = [v for v in values.values() if v.remake is not None and v.placed[disk] > 0]
    candidates.sort(key=lambda v: (v.recompute_cost() or 0.0) / max(v.placed[disk], 1.0))
    for value in candidates:
        if _peak(values.values(), disk, stages) <= room:
            return
        _recompute(values, value)


def _refusal(
    values: list[_Value], memory: int, resources: Resources, samples: int, stages: int
) -> BudgetError:
    """How far the plan is over, and what would fit: fewer samples, or more memory."""
    needed = max(sum(sum(v.placed) for v in values if v.live(s)) for s in range(stages))
    room = resources.disk.free * DISK_MARGIN
    per_sample = needed / max(samples, 1)
    fits = int((memory + room) / per_sample) if per_sample else samples
    budget = resources.memory.bytes + int(needed - memory - room)
    return BudgetError(int(needed), memory, resources.disk, samples, max(fits, 1), budget)


def _summary(
    plan: Plan, values: dict[int, _Value], profile: Profile, samples: int, batch_size: int,
    resources: Resources, memories: list[int],
) -> CachePlan:  # fmt: skip
    disk, device = len(memories), resources.device
    every = list(values.values())
    written = sum(v.placed[disk] for v in every)
    read = sum(v.placed[disk] * v.reads for v in every)
    transfer = 0.0
    if written:  # the disk's speeds are measured only for a plan that uses it
        transfer = written / resources.disk.write_speed + read / resources.disk.read_speed
    if device is not None:
        off_device = sum(sum(v.placed[1:]) * (1 + v.reads) for v in every)
        transfer += off_device / device.copy_speed
    stages = len(plan.segments)
    return CachePlan(
        plan=plan,
        placements=dict(_placements(every, profile, batch_size, disk)),
        samples=samples,
        memory_budget=resources.memory,
        peak_memory=_peak(every, disk - 1, stages),
        peak_device=_peak(every, 0, stages) if device is not None else 0,
        peak_disk=_peak(every, disk, stages),
        written=int(written),
        read=int(read),
        compute_seconds=profile.forward_seconds * samples,
        recompute_seconds=sum(v.recompute_cost() or 0.0 for v in every if v.recompute),
        transfer_seconds=transfer,
        disk_folder=str(resources.disk.folder),
    )


ALL = 2**62  # batches: every one of them


def _placements(
    values: list[_Value], profile: Profile, batch_size: int, disk: int
) -> Iterator[tuple[int, Placement]]:
    """Bytes per place as whole batches: each memory gets the batches that fit its share,
    the last memory all of them where nothing goes to disk."""
    for value in values:
        if value.recompute:
            yield value.number, Placement(recompute=True)
            continue
        per_batch = profile.value_bytes.get(value.number, 0.0) * batch_size
        counts = [int(value.placed[k] // per_batch) if per_batch else ALL for k in range(disk)]
        if value.placed[disk] <= 0:
            counts[-1] = ALL
        device = counts[0] if disk == 2 else 0
        yield value.number, Placement(device, counts[-1])
