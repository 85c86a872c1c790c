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


def _emit(text: str, output: Path | None, verdict: str) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"--output {output}: {err.strerror or err}") from err
    typer.echo(f"report written to {output}; {verdict}", err=True)


def _report(view: View, checkpoints: list[str], fmt: OutputFormat, output: Path | None,
            flags: RuleFlags, debug: bool) -> None:  # fmt: skip
    from bnstat.analysis import analyze
    from bnstat.formats import render
    from bnstat.inputs import expand_inputs
    from bnstat.report import exit_code, exit_reason

    with errors_to_exit_code(debug):
        report = analyze(expand_inputs(checkpoints), flags.settings(), debug=debug)
        color, width = terminal(output, fmt)
        _emit(render(report, fmt, view, color=color, width=width), output, exit_reason(report))
        for entry in report.checkpoints:
            if entry.error is not None:
                typer.echo(f"bnstat: error: {entry.path}: {entry.error}", err=True)
    raise typer.Exit(exit_code(report))


def _report_command(view: View, summary: str) -> Callable[..., None]:
    """`inspect` and `check` take the same options and differ only in what they show."""

    def command(
        checkpoints: Checkpoints, format: FormatOpt = OutputFormat.TABLE, output: OutputOpt = None,
        fail_on: FailOnOpt = None, select: Codes = None, ignore: Codes = None,
        layers: LayersOpt = None, eps: EpsOpt = None, threshold: ThresholdOpt = None,
        config: ConfigOpt = None, debug: DebugOpt = False,
    ) -> None:  # fmt: skip
        flags = RuleFlags(config, tuple(select or ()), tuple(ignore or ()), fail_on, eps,
                          tuple(threshold or ()), tuple(layers or ()))  # fmt: skip
        _report(view, checkpoints, format, output, flags, debug)

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
