"""The options of `inspect` and `check`, and the flags that adjust the configured settings
(shared with `diff` and `rules`): defaults, then the config file, then these flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bnstat.cli.app import option
from bnstat.errors import UsageError
from bnstat.formats import InspectFormat
from bnstat.report.severity import FailOn

if TYPE_CHECKING:
    from bnstat.remote.url import RemoteOptions
    from bnstat.settings import Settings

Checkpoints = Annotated[
    list[str],
    typer.Argument(
        metavar="CHECKPOINT...",
        help="Checkpoint files, directories (searched recursively), glob patterns, or URLs "
        "(https://, s3://, gs://, az://, hf://; needs bnstat[remote]).",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float, option("Seconds a request to a URL may wait for the server.", metavar="SECONDS")
]
MaxDownloadOpt = Annotated[
    int,
    option(
        "Most a server that ignores range requests may make bnstat read, whole.",
        metavar="MB",
        minimum=1,
    ),
]


def remote_options(timeout: float, max_download: int) -> RemoteOptions:
    """`--timeout` and `--max-download` for every request to a URL."""
    from bnstat.remote.url import RemoteOptions

    if not timeout > 0:
        raise UsageError(f"--timeout {timeout:g}: expected a number of seconds above 0")
    return RemoteOptions(timeout, max_download * 2**20)


FormatOpt = Annotated[
    InspectFormat, typer.Option("--format", "-f", help="Output format: a table, or for machines.")
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
    option(
        "eps to assume where neither the file nor a config.json beside it records it "
        "[default: 1e-05].",
        metavar="FLOAT",
    ),
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
ExcludeOpt = Annotated[
    list[str] | None,
    option(
        "Leave out the files this glob matches, relative to the folder or pattern they are "
        "found through (repeatable; a glob without / matches any file or folder name).",
        metavar="GLOB",
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
    exclude: tuple[str, ...] = ()

    def settings(self) -> Settings:
        """Defaults, then the config file (or nearest pyproject.toml), then these flags."""
        from bnstat.settings import Settings, find_pyproject, load_config, with_overrides

        if self.config is not None and not self.config.is_file():
            raise UsageError(f"--config {self.config}: no such file")
        source = self.config if self.config is not None else find_pyproject(Path.cwd())
        base = load_config(source) if source is not None else Settings()
        return with_overrides(
            base, select=self.select, ignore=self.ignore, fail_on=self.fail_on, eps=self.eps,
            thresholds=self.thresholds, layers=self.layers, exclude=self.exclude,
        )  # fmt: skip
