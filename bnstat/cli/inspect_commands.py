"""`bnstat inspect`, `bnstat check` and `bnstat rules`."""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bnstat.cli.app import DebugOpt, app, errors_to_exit_code, option, terminal
from bnstat.cli.progress import with_progress
from bnstat.cli.run_options import (
    ArchKwargsOpt,
    ArchOpt,
    BatchSizeOpt,
    CacheOpt,
    ChannelsOpt,
    DataFlags,
    DeviceOpt,
    GrayscaleOpt,
    ImageSizeOpt,
    InputKeyOpt,
    MaxSamplesOpt,
    MeanOpt,
    ModelFlags,
    ResizeOpt,
    SeedOpt,
    SourceOpt,
    StdOpt,
    UnsafeOpt,
    WorkersOpt,
    require_torch,
)
from bnstat.cli.usage import BnstatCommand
from bnstat.errors import UsageError
from bnstat.formats import OutputFormat, View
from bnstat.report import FailOn

if TYPE_CHECKING:
    from bnstat.recalibrate.diagnosis import DataRequest
    from bnstat.settings import Settings

Checkpoints = Annotated[
    list[str],
    typer.Argument(
        metavar="CHECKPOINT...",
        help="Checkpoint files, directories (searched recursively) or glob patterns.",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="Output format: a table, or for machines.")
]
OutputOpt = Annotated[
    Path | None, option("Write the report to this file.", "--output", "-o", metavar="FILE")
]
FailOnOpt = Annotated[
    FailOn | None, option("Lowest severity that makes the run fail [default: error].")
]
SelectOpt = Annotated[
    list[str] | None,
    option("Only these rule codes or prefixes (BN00), comma-separated.", metavar="CODES"),
]
IgnoreOpt = Annotated[
    list[str] | None,
    option("Leave out these rule codes or prefixes, comma-separated.", metavar="CODES"),
]
LayersOpt = Annotated[
    list[str] | None,
    option("Only report layers matching this glob (repeatable).", metavar="GLOB"),
]
EpsOpt = Annotated[
    float | None,
    option("eps to assume where the file does not record it [default: 1e-05].", metavar="FLOAT"),
]
ThresholdOpt = Annotated[
    list[str] | None,
    option("Override a rule threshold (names in `bnstat rules`).", metavar="NAME=VALUE"),
]
ConfigOpt = Annotated[
    Path | None,
    option("Settings file [default: [tool.bnstat] in the nearest pyproject.toml].", metavar="FILE"),
]
BaselineOpt = Annotated[
    Path | None, option("Report only findings that are not in this baseline.", metavar="FILE")
]
WriteBaselineOpt = Annotated[
    Path | None, option("Record today's findings as the baseline in this file.", metavar="FILE")
]
DataDirOpt = Annotated[
    Path | None,
    option(
        "Also run the model on this folder of images or tensor files and check that its "
        "statistics fit what each layer receives (rule BN014; needs bnstat[torch]).",
        metavar="DIR",
    ),
]
JobsOpt = Annotated[
    int | None,
    option("Processes for many checkpoints [default: one per CPU].", metavar="N", minimum=1),
]
AllowEmptyOpt = Annotated[
    bool,
    typer.Option(
        "--allow-empty",
        help="Pass when no checkpoint is found or --layers selects no layer (default: exit 2).",
    ),
]


class RulesFormat(str, enum.Enum):
    TEXT = "text"
    MARKDOWN = "markdown"
    JSON = "json"


@dataclass(frozen=True)
class RuleFlags:
    """The command-line flags that adjust the configured settings."""

    config: Path | None = None
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fail_on: str | None = None
    eps: float | None = None
    thresholds: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()

    def settings(self) -> Settings:
        """Defaults, then the config file (or nearest pyproject.toml), then these flags."""
        from bnstat.settings import Settings, find_pyproject, load_config, with_overrides

        if self.config is not None and not self.config.is_file():
            raise UsageError(f"--config {self.config}: no such file")
        source = self.config if self.config is not None else find_pyproject(Path.cwd())
        base = load_config(source) if source is not None else Settings()
        return with_overrides(
            base, select=self.select, ignore=self.ignore, fail_on=self.fail_on, eps=self.eps,
            thresholds=self.thresholds, layers=self.layers,
        )  # fmt: skip


@dataclass(frozen=True)
class Run:
    """What to show and where, for one `inspect` or `check` invocation."""

    view: View
    fmt: OutputFormat
    output: Path | None
    jobs: int | None
    baseline: Path | None
    write_baseline: Path | None
    debug: bool
    allow_empty: bool = False


@dataclass(frozen=True)
class OnData:
    """`--data` and the options that say how to build the model and load the data."""

    folder: Path | None
    model: ModelFlags
    loading: DataFlags

    def request(self) -> DataRequest | None:
        """The library's request, or None without --data (where the other options are
        refused rather than ignored)."""
        given = [*self.model.arguments(), *self.loading.arguments()]
        if self.folder is None:
            if given:
                raise UsageError(f"{given[0]} runs the model on data: give --data DIR too")
            return None
        require_torch("--data")
        from bnstat.recalibrate.data.files import discover
        from bnstat.recalibrate.diagnosis import DataRequest

        discover(self.folder)  # no data is an error before any checkpoint is opened
        return DataRequest(
            folder=self.folder,
            options=self.loading.options(),
            channels=self.loading.channel_count,
            model=self.model.spec(),
            device=self.model.device,
            input_key=self.model.input_key,
            arguments=tuple(given),
        )


def _report(run: Run, checkpoints: list[str], flags: RuleFlags, on_data: OnData) -> None:
    from dataclasses import replace

    from bnstat.analysis import analyze, require_selected_layers
    from bnstat.baseline import load_baseline, render_baseline, without_baseline
    from bnstat.formats import render
    from bnstat.inputs import expand_inputs
    from bnstat.report import exit_code, exit_reason
    from bnstat.wording import counted

    with errors_to_exit_code(run.debug):
        settings = flags.settings()
        known = load_baseline(run.baseline) if run.baseline is not None else None
        data = on_data.request()
        inputs = expand_inputs(checkpoints, run.allow_empty)
        report = with_progress(
            lambda progress: analyze(inputs.paths, settings, run.debug, run.jobs, data, progress)
        )
        report = replace(report, skipped=inputs.skipped)
        if not run.allow_empty:
            require_selected_layers(report, settings)
        if run.write_baseline is not None:
            _write(
                run.write_baseline, render_baseline(report, run.write_baseline), "--write-baseline"
            )
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
        color, width = terminal(run.output, run.fmt)
        text = render(report, run.fmt, run.view, color=color, width=width)
        if run.output is None:
            sys.stdout.write(text)
        else:
            _write(run.output, text, "--output")
            typer.echo(f"report written to {run.output}; {exit_reason(report)}", err=True)
        for entry in report.checkpoints:
            if entry.error is not None:
                typer.echo(f"bnstat: error: {entry.path}: {entry.error}", err=True)
    code = exit_code(report)
    if run.write_baseline is not None and code == 1:
        code = 0  # the findings were just accepted into the baseline
    raise typer.Exit(code)


def _write(path: Path, text: str, option: str) -> None:
    from bnstat.atomic import atomic_output

    if not path.parent.is_dir():
        raise UsageError(f"{option} {path}: folder {path.parent} does not exist")
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _report_command(view: View, summary: str) -> Callable[..., None]:
    """`inspect` and `check` take the same options and differ only in what they show."""

    def command(
        checkpoints: Checkpoints, format: FormatOpt = OutputFormat.TABLE, output: OutputOpt = None,
        fail_on: FailOnOpt = None, select: SelectOpt = None, ignore: IgnoreOpt = None,
        layers: LayersOpt = None, eps: EpsOpt = None, threshold: ThresholdOpt = None,
        config: ConfigOpt = None, baseline: BaselineOpt = None,
        write_baseline: WriteBaselineOpt = None, jobs: JobsOpt = None, data: DataDirOpt = None,
        arch: ArchOpt = None, arch_kwargs: ArchKwargsOpt = "{}", source: SourceOpt = None,
        unsafe_load: UnsafeOpt = False, input_key: InputKeyOpt = None, device: DeviceOpt = "auto",
        image_size: ImageSizeOpt = None, resize: ResizeOpt = None, mean: MeanOpt = "0",
        std: StdOpt = "1", grayscale: GrayscaleOpt = False, channels: ChannelsOpt = None,
        max_samples: MaxSamplesOpt = None, seed: SeedOpt = 0, batch_size: BatchSizeOpt = 32,
        workers: WorkersOpt = None, cache_mb: CacheOpt = 2048, allow_empty: AllowEmptyOpt = False,
        debug: DebugOpt = False,
    ) -> None:  # fmt: skip
        flags = RuleFlags(config, tuple(select or ()), tuple(ignore or ()),
                          None if fail_on is None else fail_on.value, eps,
                          tuple(threshold or ()), tuple(layers or ()))  # fmt: skip
        run = Run(view, format, output, jobs, baseline, write_baseline, debug, allow_empty)
        on_data = OnData(
            data,
            ModelFlags(arch, arch_kwargs, source, unsafe_load, input_key, device),
            DataFlags(image_size, resize, mean, std, grayscale, channels, max_samples, seed,
                      batch_size, workers, cache_mb),
        )  # fmt: skip
        _report(run, checkpoints, flags, on_data)

    command.__doc__ = summary
    return command


app.command("inspect", cls=BnstatCommand, short_help="Per-layer statistics and the findings.")(
    _report_command(
        View.INSPECT, "Report every BatchNorm layer (channels, distributions) and the findings."
    )
)
app.command("check", cls=BnstatCommand, short_help="The CI gate: findings and an exit code.")(
    _report_command(
        View.CHECK, "The CI gate: findings only, machine formats, exit code by --fail-on."
    )
)


@app.command(cls=BnstatCommand, short_help="List the rules, or explain one.")
def rules(
    code: Annotated[
        str | None, typer.Argument(metavar="CODE", help="A rule code or name: BN004, dead-channel.")
    ] = None,
    format: Annotated[
        RulesFormat, typer.Option("--format", "-f", help="Plain text, markdown or JSON.")
    ] = RulesFormat.TEXT,
    config: ConfigOpt = None, threshold: ThresholdOpt = None, debug: DebugOpt = False,
) -> None:  # fmt: skip
    """List the rules, or explain one: what it checks, why, an example, the fix."""
    from bnstat.formats.rules_doc import render_rules

    with errors_to_exit_code(debug):
        settings = RuleFlags(config, thresholds=tuple(threshold or ())).settings()
        width = terminal(None, OutputFormat.TABLE)[1]
        sys.stdout.write(render_rules(code, format.value, settings, width))
