"""The findings model of `inspect` and `check`: immutable records every format renders.

Analysis produces a `Report`; formats turn it into text; the CLI writes the text and
turns the report's `verdict` into an exit code. A checkpoint that could not be read
carries a `ReadError`, whose kind tells a bad file from a bug. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bnstat.report.recalibration import Unreadable
from bnstat.report.severity import FailOn, Severity
from bnstat.report.verdict import Verdict

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Distribution:
    """Summary of one per-channel quantity over its finite values (None: no finite value)."""

    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    p01: float | None
    p50: float | None
    p99: float | None
    nonfinite: int
    negative: int | None = None  # reported for running_var only


@dataclass(frozen=True, eq=False)
class ChannelValues:
    """The per-channel values of a layer in float64 (weight/bias None when not affine)."""

    running_mean: np.ndarray
    running_var: np.ndarray
    weight: np.ndarray | None
    bias: np.ndarray | None


@dataclass(frozen=True)
class LayerData:
    """What the layer received on a data set, against its stored statistics (`data_fit`)."""

    samples: int
    mean_shift_max: float | None  # in stored standard deviations; None: nothing finite
    mean_shift_median: float | None
    var_ratio_max: float | None  # (measured var + eps) / (stored var + eps)
    var_ratio_min: float | None
    channels_off: int
    first_divergent: bool  # the first layer, in execution order, whose statistics are off


@dataclass(frozen=True)
class DataRun:
    """The data a checkpoint was run on, and how (`inspect --data`)."""

    folder: str
    samples: int
    model: str  # where the model came from: arch, torchscript, torch.export, onnx ...
    options: tuple[tuple[str, Any], ...]  # the data options used, by name
    input: str = ""  # what the model was fed, in words
    unreadable: tuple[Unreadable, ...] = ()  # data files and folders skipped, and why
    warnings: tuple[str, ...] = ()  # what was used but deserves a word, one line each


@dataclass(frozen=True)
class EpsConfig:
    """The eps a model's configuration file states for its BatchNorm layers."""

    path: str
    key: str  # "batch_norm_eps", or an architecture's own key
    eps: float


@dataclass(frozen=True, eq=False)
class LayerReport:
    """One normalization layer: what it is and how its statistics are distributed."""

    name: str
    channels: int
    dtype: str
    num_batches_tracked: int | None
    affine: bool
    kind: str | None  # module class when the file records it ("BatchNorm2d", ...)
    eps: float
    eps_from_file: bool
    running_mean: Distribution
    running_var: Distribution
    weight: Distribution | None
    bias: Distribution | None
    values: ChannelValues
    data: LayerData | None = None  # with --data: how the statistics fit the data


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one layer (or on the whole checkpoint when `layer` is None)."""

    rule: str
    name: str
    severity: Severity
    layer: str | None
    channels: tuple[int, ...]
    message: str
    fix: str


class ErrorKind(str, enum.Enum):
    """Why a checkpoint could not be read."""

    UNREADABLE = "unreadable"  # missing, empty, truncated, corrupt, over a safety limit
    UNSAFE = "unsafe"  # its content can only be had by running code from it
    UNSUPPORTED = "unsupported"  # a format (or a part of one) bnstat does not read here
    INTERNAL = "internal"  # a bug in bnstat: an exception nobody foresaw


@dataclass(frozen=True)
class ReadError:
    """What went wrong with one checkpoint, in one line."""

    kind: ErrorKind
    message: str


@dataclass(frozen=True)
class FetchCost:
    """What reading a checkpoint over the network cost: requests and bytes, against the
    file's size (None when the server never said it)."""

    size: int | None
    fetched: int
    requests: int


@dataclass(frozen=True)
class CheckpointReport:
    """One model found in one file; a file holding `model` and `ema` gives two of these."""

    path: str
    format: str | None
    source: str | None = None  # where the state dict sits in the file ("ema", "state_dict")
    error: ReadError | None = None
    layers: tuple[LayerReport, ...] = ()
    findings: tuple[Finding, ...] = ()
    stripped_prefix: str = ""
    data: DataRun | None = None  # with --data: what the model was run on
    cost: FetchCost | None = None  # for a URL: what reading it cost
    eps_config: EpsConfig | None = None  # the eps of layers whose file does not record it


@dataclass(frozen=True)
class SkippedFile:
    """A file a folder scan found that reads fine but holds no model (an optimizer state,
    training arguments), and what it holds instead."""

    path: str
    contents: str


@dataclass(frozen=True)
class Summary:
    checkpoints: int
    layers: int
    error: int
    warning: int
    info: int
    unreadable: int
    skipped: int = 0  # files in the folders searched that are not checkpoints, or no model
    data_unreadable: int = 0  # data files (and folders) skipped by the runs on data


@dataclass(frozen=True)
class Report:
    """Everything one run found, in the order the inputs were given."""

    checkpoints: tuple[CheckpointReport, ...]
    fail_on: FailOn = FailOn.ERROR
    tool_version: str = field(default="")
    skipped: int = 0  # files in the folders searched that are not checkpoints
    no_model: tuple[SkippedFile, ...] = ()  # files the folder scans found holding no model

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for c in self.checkpoints for f in c.findings)

    @property
    def summary(self) -> Summary:
        counts = {s: 0 for s in Severity}
        for finding in self.findings:
            counts[finding.severity] += 1
        return Summary(
            checkpoints=len(self.checkpoints),
            layers=sum(len(c.layers) for c in self.checkpoints),
            error=counts[Severity.ERROR],
            warning=counts[Severity.WARNING],
            info=counts[Severity.INFO],
            unreadable=sum(1 for c in self.checkpoints if c.error is not None),
            skipped=self.skipped + len(self.no_model),
            data_unreadable=len(
                {u.path for c in self.checkpoints if c.data for u in c.data.unreadable}
            ),
        )

    @property
    def verdict(self) -> Verdict:
        """UNREADABLE if an input could not be read, FAILED if a finding reaches
        --fail-on, else PASSED."""
        if any(c.error is not None for c in self.checkpoints):
            return Verdict.UNREADABLE
        if any(self.fail_on.fails(f.severity) for f in self.findings):
            return Verdict.FAILED
        return Verdict.PASSED
