"""Small text helpers shared by the human-readable formats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Protocol

from bnstat.report.inspection import (
    CheckpointReport,
    DataRun,
    Distribution,
    FetchCost,
    Finding,
    LayerReport,
    Report,
)
from bnstat.report.recalibration import Unreadable
from bnstat.report.severity import Severity
from bnstat.report.verdict import Verdict
from bnstat.wording import counted, plural, span


def number(value: float | None) -> str:
    """3 significant digits; `-` for a missing value."""
    return "-" if value is None else f"{value:.3g}"


def value_range(dist: Distribution | None) -> str:
    if dist is None:
        return "-"
    text = span(number(dist.min), number(dist.max), " .. ")
    return f"{text} ({dist.nonfinite} non-finite)" if dist.nonfinite else text


class Located(Protocol):
    """A model in a file: a checkpoint report, or one side of a diff."""

    @property
    def path(self) -> str: ...

    @property
    def source(self) -> str | None: ...


def checkpoint_title(entry: Located) -> str:
    """`path` or `path [ema]` when the file holds several models."""
    return f"{entry.path} [{entry.source}]" if entry.source else entry.path


def fetch_cost(cost: FetchCost) -> str:
    """`fetched 212 KiB of 2.00 GiB (0.01%) in 57 requests`."""
    whole = ""
    if cost.size:
        whole = f" of {byte_size(cost.size)} ({percent(cost.fetched / cost.size)})"
    return f"fetched {byte_size(cost.fetched)}{whole} in {counted(cost.requests, 'request')}"


def byte_size(count: int) -> str:
    """Bytes in binary units, three significant digits: `212 KiB`, `2.00 GiB`."""
    value, unit = float(count), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1000:
            break
        value, unit = value / 1024, bigger
    if unit == "B":
        return f"{count} B"
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{digits}f} {unit}"


def percent(fraction: float) -> str:
    """`0.0098%`, `2.5%`, `100%`: two significant digits below 10%."""
    value = fraction * 100
    return f"{value:.0f}%" if value >= 10 else f"{value:.2g}%"


def location(finding: Finding) -> str:
    return finding.layer if finding.layer is not None else "(checkpoint)"


def qualified_location(entry: CheckpointReport, finding: Finding) -> str:
    """`layer`, `source:layer` for a model nested in the file, or the file/model itself."""
    if entry.source is None:
        return location(finding)
    return entry.source if finding.layer is None else f"{entry.source}:{finding.layer}"


def severity_counts(findings: tuple[Finding, ...] | list[Finding]) -> str:
    parts = []
    for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO):
        n = sum(1 for f in findings if f.severity is severity)
        if n:
            parts.append(counted(n, severity.value))
    return ", ".join(parts) or "no findings"


def by_severity(findings: tuple[Finding, ...]) -> list[tuple[Severity, list[Finding]]]:
    """Findings grouped worst first, keeping layer order inside a group."""
    groups = [(s, [f for f in findings if f.severity is s]) for s in reversed(Severity)]
    return [(s, group) for s, group in groups if group]


@dataclass(frozen=True)
class FindingGroup:
    """Findings that differ only in their layer (one finding in most groups)."""

    findings: tuple[Finding, ...]

    @property
    def first(self) -> Finding:
        return self.findings[0]


def grouped(findings: Sequence[Finding]) -> list[FindingGroup]:
    """Identical findings (rule, severity, channels, message and fix) as one group of their
    layers, in the order they first appear."""
    groups: dict[tuple[object, ...], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.rule, f.severity, f.channels, f.message, f.fix), []).append(f)
    return [FindingGroup(tuple(same)) for same in groups.values()]


def summary_line(report: Report) -> str:
    summary = report.summary
    text = (
        f"{counted(summary.checkpoints, 'checkpoint')}, {counted(summary.layers, 'layer')}: "
        f"{severity_counts(report.findings)}"
    )
    text += f", {summary.unreadable} unreadable" if summary.unreadable else ""
    skipped = [f"{counted(len(report.no_model), 'file')} holding no model"] * bool(report.no_model)
    skipped += [f"{report.skipped} other {plural('file', report.skipped)}"] * bool(report.skipped)
    unread = summary.data_unreadable
    skipped += [counted(unread, "unreadable data file")] * bool(unread)
    return text + (f"; {' and '.join(skipped)} skipped" if skipped else "")


def skipped_lines(report: Report) -> list[str]:
    """One line per file the folder scans skipped because it holds no model."""
    return [f"skipped {side.path}: {side.contents}" for side in report.no_model]


def exit_reason(report: Report, code: int) -> str:
    """One line saying why the run ends with exit `code`: unreadable inputs first, then
    the findings at or above --fail-on, or those below it."""
    summary, fail_on = report.summary, report.fail_on
    counts = [(summary.error, "error"), (summary.warning, "warning"), (summary.info, "info")]
    failing = [counted(n, name) for n, name in counts if n and fail_on.fails(Severity(name))]
    passing = [counted(n, name) for n, name in counts if n and not fail_on.fails(Severity(name))]
    reasons = []
    if report.verdict is Verdict.UNREADABLE:
        reasons.append(f"{counted(summary.unreadable, 'input')} could not be read")
    if failing:
        reasons.append(f"{', '.join(failing)} at or above --fail-on {fail_on.value}")
    elif passing:
        reasons.append(f"{', '.join(passing)} below --fail-on {fail_on.value}")
    return f"exit {code}: {'; '.join(reasons) or 'no findings'}"


def eps_source(entry: CheckpointReport, layer: LayerReport) -> str:
    """Where a layer's eps came from: the file itself, the model's configuration file
    beside it, or what the settings assume (--eps, [tool.bnstat], else 1e-5)."""
    if layer.eps_from_file:
        return "file"
    return "config" if entry.eps_config is not None else "assumed"


def eps_note(entry: CheckpointReport) -> str | None:
    """`eps 0.001 from config.json (batch_norm_eps)`, when the model's configuration file
    gave the eps of the layers the checkpoint does not record it for."""
    config = entry.eps_config
    if config is None or all(layer.eps_from_file for layer in entry.layers):
        return None
    return f"eps {config.eps:g} from {PurePath(config.path).name} ({config.key})"


def min_abs_weight(layer: LayerReport) -> float | None:
    """The smallest |gamma| of a layer (None when it is not affine)."""
    weight = layer.values.weight
    return float(abs(weight).min()) if weight is not None and len(weight) else None


def finite_or_none(value: float | None) -> float | None:
    """A number for JSON: NaN and infinities become null."""
    return value if value is not None and value == value and abs(value) != float("inf") else None


SKIPPED_SHOWN = 5  # unreadable data files named in a line; more are counted


def skipped_line(unreadable: Sequence[Unreadable]) -> str:
    """`2 unreadable files skipped: a.png: reason; b: folder not searched: ...`."""
    shown = "; ".join(f"{u.path}: {u.reason}" for u in unreadable[:SKIPPED_SHOWN])
    more = len(unreadable) - SKIPPED_SHOWN
    return f"{counted(len(unreadable), 'unreadable file')} skipped: {shown}" + (
        f"; +{more} more" if more > 0 else ""
    )


def data_lines(run: DataRun) -> list[str]:
    """What the model was fed, then the data files skipped and the warnings, one line each."""
    lines = [f"input: {run.input}"] if run.input else []
    if run.unreadable:
        lines.append(skipped_line(run.unreadable))
    return lines + [f"warning: {warning}" for warning in run.warnings]


def data_problems(run: DataRun) -> list[str]:
    """Each data file skipped and each warning of a data run, one line each, in full."""
    return [f"data file not read: {u.path}: {u.reason}" for u in run.unreadable] + [
        f"data warning: {warning}" for warning in run.warnings
    ]
