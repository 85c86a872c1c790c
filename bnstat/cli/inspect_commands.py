"""`bnstat inspect` and `bnstat check`: options in, `analysis.analyze` called, report out."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bnstat.cli.app import DebugOpt, command, display, exit_code
from bnstat.cli.output_files import require_writable, write_text
from bnstat.cli.report_options import (
    AllowEmptyOpt,
    BaselineOpt,
    Checkpoints,
    ConfigOpt,
    DataDirOpt,
    EpsOpt,
    ExcludeOpt,
    FailOnOpt,
    FormatOpt,
    IgnoreOpt,
    JobsOpt,
    LayersOpt,
    MaxDownloadOpt,
    OutputOpt,
    RuleFlags,
    SelectOpt,
    ThresholdOpt,
    TimeoutOpt,
    WriteBaselineOpt,
    remote_options,
)
from bnstat.cli.run_options import RunFlags, require_torch, with_run_options
from bnstat.errors import UsageError
from bnstat.formats import InspectFormat
from bnstat.remote.url import RemoteUrl
from bnstat.report.verdict import Result

if TYPE_CHECKING:
    from bnstat.remote.url import RemoteOptions
    from bnstat.report.inspection import Report
    from bnstat.stages.diagnose import DataRequest
    from bnstat.stages.expand_inputs import Input


@dataclass(frozen=True)
class Run:
    """What to show and where, for one `inspect` or `check` invocation."""

    layers: bool  # inspect shows the per-layer tables; check the findings only
    fmt: InspectFormat
    output: Path | None
    jobs: int | None
    baseline: Path | None
    write_baseline: Path | None
    debug: bool
    allow_empty: bool = False
    remote: RemoteOptions | None = None  # --timeout and --max-download, for URLs
    progress: bool = True  # bars on a terminal while a model runs on data


def _data_request(folder: Path | None, run: RunFlags) -> DataRequest | None:
    """The library's request to run the model on `--data`, or None without it (where the
    model and data options are refused rather than ignored)."""
    given = run.arguments()
    if folder is None:
        if given:
            raise UsageError(f"{given[0]} runs the model on data: give --data DIR too")
        return None
    require_torch("--data")
    from bnstat.execution.data.files import discover
    from bnstat.stages.diagnose import DataRequest

    discover(folder)  # no data is an error before any checkpoint is opened
    return DataRequest(run.request(folder), tuple(given))


def _analyze(
    run: Run, checkpoints: list[str], flags: RuleFlags, data: DataRequest | None
) -> Report:
    """The report of the checkpoints, baseline applied (and maybe written)."""
    from dataclasses import replace

    from bnstat.analysis import analyze, require_models, require_selected_layers
    from bnstat.baseline import load_baseline, render_baseline, without_baseline
    from bnstat.cli.progress import with_progress
    from bnstat.stages.expand_inputs import expand_inputs
    from bnstat.wording import counted

    settings = flags.settings()
    known = load_baseline(run.baseline) if run.baseline is not None else None
    inputs = expand_inputs(checkpoints, run.allow_empty, settings.exclude, run.remote)
    with _local_copies(inputs.items if data is not None else []):
        report = with_progress(
            lambda progress: analyze(inputs.items, settings, run.debug, run.jobs, data, progress),
            run.progress,
        )
    report = replace(report, skipped=inputs.skipped)
    if not run.allow_empty:
        require_models(report, inputs.scanned)
        require_selected_layers(report, settings)
    if run.write_baseline is not None:
        baseline = render_baseline(report, run.write_baseline)
        write_text(run.write_baseline, baseline, "--write-baseline")
        typer.echo(
            f"baseline of {counted(len(report.findings), 'finding')} written to "
            f"{run.write_baseline}",
            err=True,
        )
    if known is not None and run.baseline is not None:
        before = len(report.findings)
        report = without_baseline(report, known, run.baseline)
        typer.echo(
            f"baseline: {counted(before - len(report.findings), 'known finding')} not reported",
            err=True,
        )
    return report


def _local_copies(items: list[Input]) -> AbstractContextManager[None]:
    """Running a model needs all of its file: URLs are fetched whole for --data."""
    urls = [item.path for item in items if isinstance(item.path, RemoteUrl)]
    if not urls:
        return nullcontext()
    from bnstat.remote.download import fetched_whole

    return fetched_whole(urls)


def _report(run: Run, checkpoints: list[str], flags: RuleFlags, data: DataRequest | None) -> Result:
    from bnstat.baseline import Recorded
    from bnstat.formats import inspect_emitter
    from bnstat.formats.text import exit_reason

    require_writable(run.output, "--output")
    require_writable(run.write_baseline, "--write-baseline")
    report = _analyze(run, checkpoints, flags, data)
    code = exit_code(report)
    table = run.fmt is InspectFormat.TABLE and run.output is None
    shown = display(table, layers=run.layers, exit_code=code, directory=os.getcwd())
    text = inspect_emitter(run.fmt)(report, shown)
    if run.output is None:
        sys.stdout.write(text)
    else:
        write_text(run.output, text, "--output")
        typer.echo(f"report written to {run.output}; {exit_reason(report, code)}", err=True)
    for entry in report.checkpoints:
        if entry.error is not None:
            typer.echo(f"bnstat: error: {entry.path}: {entry.error.message}", err=True)
    return Recorded(report) if run.write_baseline is not None else report


def _report_command(show_layers: bool, summary: str) -> Callable[..., Result]:
    """`inspect` and `check` take the same options and differ only in what they show."""

    def report(
        checkpoints: Checkpoints, run: RunFlags, format: FormatOpt = InspectFormat.TABLE,
        output: OutputOpt = None, fail_on: FailOnOpt = None, select: SelectOpt = None,
        ignore: IgnoreOpt = None, layers: LayersOpt = None, exclude: ExcludeOpt = None,
        eps: EpsOpt = None, threshold: ThresholdOpt = None, config: ConfigOpt = None,
        baseline: BaselineOpt = None,
        write_baseline: WriteBaselineOpt = None, jobs: JobsOpt = None, data: DataDirOpt = None,
        allow_empty: AllowEmptyOpt = False, timeout: TimeoutOpt = 30.0,
        max_download: MaxDownloadOpt = 256, debug: DebugOpt = False,
    ) -> Result:  # fmt: skip
        flags = RuleFlags(config, tuple(select or ()), tuple(ignore or ()),
                          None if fail_on is None else fail_on.value, eps,
                          tuple(threshold or ()), tuple(layers or ()),
                          tuple(exclude or ()))  # fmt: skip
        shown = Run(show_layers, format, output, jobs, baseline, write_baseline, debug,
                    allow_empty, remote_options(timeout, max_download),
                    run.display.progress)  # fmt: skip
        return _report(shown, checkpoints, flags, _data_request(data, run))

    report.__doc__ = summary
    return with_run_options(report)


command("inspect", short_help="Per-layer statistics and the findings.")(
    _report_command(
        True, "Report every BatchNorm layer (channels, distributions) and the findings."
    )
)
command("check", short_help="The CI gate: findings and an exit code.")(
    _report_command(False, "The CI gate: findings only, machine formats, exit code by --fail-on.")
)
