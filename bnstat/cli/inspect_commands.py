"""`bnstat inspect`, `bnstat check` and `bnstat rules`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bnstat.cli.app import DebugOpt, app, errors_to_exit_code, terminal
from bnstat.errors import UsageError
from bnstat.formats import OutputFormat, View

if TYPE_CHECKING:
    from bnstat.settings import Settings

Checkpoints = Annotated[
    list[str],
    typer.Argument(help="Checkpoint files, directories or glob patterns.", show_default=False),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
]
FailOnOpt = Annotated[
    str | None,
    typer.Option(help="error|warning|info|never: lowest severity that fails [default: error]."),
]
Codes = Annotated[
    list[str] | None,
    typer.Option(help="Rule codes or prefixes, comma-separated or repeated.", show_default=False),
]
LayersOpt = Annotated[
    list[str] | None,
    typer.Option(help="Only report layers matching this glob (repeatable).", show_default=False),
]
EpsOpt = Annotated[
    float | None,
    typer.Option(help="eps to assume where the file does not record it [default: 1e-05]."),
]
ThresholdOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Override a rule threshold: NAME=VALUE (see `bnstat rules`).", show_default=False
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(help="Settings file [default: [tool.bnstat] in the nearest pyproject.toml]."),
]


BaselineOpt = Annotated[
    Path | None, typer.Option(help="Report only findings that are not in this baseline file.")
]
WriteBaselineOpt = Annotated[
    Path | None, typer.Option(help="Record today's findings as the baseline in this file.")
]
JobsOpt = Annotated[
    int | None, typer.Option(help="Processes for many checkpoints [default: one per CPU].")
]
AllowEmptyOpt = Annotated[
    bool,
    typer.Option(
        "--allow-empty",
        help="Pass when no checkpoint is found or --layers selects no layer (default: exit 2).",
    ),
]


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


def _report(run: Run, checkpoints: list[str], flags: RuleFlags) -> None:
    from dataclasses import replace

    from bnstat.analysis import analyze, require_selected_layers
    from bnstat.baseline import load_baseline, render_baseline, without_baseline
    from bnstat.formats import render
    from bnstat.inputs import expand_inputs
    from bnstat.report import exit_code, exit_reason

    with errors_to_exit_code(run.debug):
        settings = flags.settings()
        known = load_baseline(run.baseline) if run.baseline is not None else None
        inputs = expand_inputs(checkpoints, run.allow_empty)
        report = analyze(inputs.paths, settings, debug=run.debug, jobs=run.jobs)
        report = replace(report, skipped=inputs.skipped)
        if not run.allow_empty:
            require_selected_layers(report, settings)
        if run.write_baseline is not None:
            _write(
                run.write_baseline, render_baseline(report, run.write_baseline), "--write-baseline"
            )
            typer.echo(
                f"baseline of {len(report.findings)} findings written to {run.write_baseline}",
                err=True,
            )
        if known is not None and run.baseline is not None:
            before = len(report.findings)
            report = without_baseline(report, known, run.baseline)
            typer.echo(
                f"baseline: {before - len(report.findings)} known findings not reported", err=True
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
        fail_on: FailOnOpt = None, select: Codes = None, ignore: Codes = None,
        layers: LayersOpt = None, eps: EpsOpt = None, threshold: ThresholdOpt = None,
        config: ConfigOpt = None, baseline: BaselineOpt = None,
        write_baseline: WriteBaselineOpt = None, jobs: JobsOpt = None,
        allow_empty: AllowEmptyOpt = False, debug: DebugOpt = False,
    ) -> None:  # fmt: skip
        flags = RuleFlags(config, tuple(select or ()), tuple(ignore or ()), fail_on, eps,
                          tuple(threshold or ()), tuple(layers or ()))  # fmt: skip
        run = Run(view, format, output, jobs, baseline, write_baseline, debug, allow_empty)
        _report(run, checkpoints, flags)

    command.__doc__ = summary
    return command


app.command("inspect")(
    _report_command(
        View.INSPECT, "Report every BatchNorm layer (channels, distributions) and the findings."
    )
)
app.command("check")(
    _report_command(
        View.CHECK, "The CI gate: findings only, machine formats, exit code by --fail-on."
    )
)


@app.command()
def rules(
    code: Annotated[str | None, typer.Argument(help="A rule code or name, e.g. BN004.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="text|markdown|json")] = "text",
    config: ConfigOpt = None, threshold: ThresholdOpt = None, debug: DebugOpt = False,
) -> None:  # fmt: skip
    """List the rules, or explain one: what it checks, why, an example, the fix."""
    from bnstat.formats.rules_doc import render_rules

    with errors_to_exit_code(debug):
        settings = RuleFlags(config, thresholds=tuple(threshold or ())).settings()
        sys.stdout.write(render_rules(code, format, settings))
