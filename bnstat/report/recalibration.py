"""What a recalibration did: per layer, how far the statistics moved and how exact they
are, and how the run went (passes, activation cache, skipped files).

Plain records, importable without torch; `bnstat.recalibrate.reporting` fills them in from
an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from bnstat.report.verdict import Verdict


@dataclass(frozen=True)
class Unreadable:
    """A data file (or a folder) that was skipped, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class PassRecord:
    """One pass over the calibration data (a segmented sweep counts as one)."""

    label: str
    seconds: float
    samples: int
    batches: int
    skipped: int = 0  # samples in batches of a size the model cannot run


@dataclass(frozen=True)
class CacheUse:
    """How much the cache held: its largest moment, and what went to disk and came back."""

    peak_bytes: int
    spilled_bytes: int
    budget_bytes: int
    read_bytes: int = 0


@dataclass(frozen=True)
class PlanRecord:
    """How a segmented sweep planned its cache before the first pass, and its cost."""

    samples: int
    budget_bytes: int
    available_bytes: int | None  # the budget is a share of this (None: the user gave it)
    memory_bytes: int  # the most host memory the cached values take at once
    device_bytes: int  # ... device memory
    disk_bytes: int  # ... disk
    written_bytes: int
    read_bytes: int
    recomputed: int  # values recomputed where read instead of kept
    compute_seconds: float  # the lower bound's parts, at this machine's measured speeds
    recompute_seconds: float
    transfer_seconds: float
    lower_bound_seconds: float
    folder: str  # where values spill
    description: str  # all of it in one line


@dataclass(frozen=True)
class LayerChange:
    name: str
    channels: int
    mean_shift: (
        float  # largest |new - old| / sqrt(new var + eps); inf if the old mean was not finite
    )
    var_ratio_low: float  # smallest new/old variance
    var_ratio_high: float
    changed: int  # channels that moved by more than 1%
    consistency: float | None  # largest eval-mode mismatch afterwards (None: not verified)


@dataclass(frozen=True)
class RecalibrationReport:
    checkpoint: str
    output: str | None  # None on the processes of a distributed run that do not write
    source: str | None
    model: str  # torchscript, arch or pickled module
    method: str
    device: str
    batch_size: int
    data_kind: str
    samples: int
    batches: int
    skipped: int  # samples left out: not a whole batch of the size the model was exported for
    unreadable: tuple[Unreadable, ...]
    passes: tuple[PassRecord, ...]
    sweep_changes: tuple[float, ...]
    layers: tuple[LayerChange, ...]
    unreached: tuple[str, ...]
    seconds: float
    input: str  # what the model was fed: file contents, conversions, sample shape
    input_shape: tuple[int, ...] | None  # one sample
    strategy: str  # how the exact statistics were computed, in words
    cache: CacheUse | None  # the activation cache of a segmented sweep
    processes: int  # under torchrun: how many shared the data
    plan: PlanRecord | None = None  # the cache's plan, where the sweep was segmented
    warnings: tuple[str, ...] = ()  # about the data used, one line each
    notes: tuple[str, ...] = ()  # what the run did besides: leftovers of killed runs removed

    @property
    def consistency(self) -> float | None:
        values = [layer.consistency for layer in self.layers if layer.consistency is not None]
        return max(values) if values else None

    @property
    def verdict(self) -> Verdict:
        """A recalibration that ran to the end passed; what stops one is an error."""
        return Verdict.PASSED
