"""`bnstat recalibrate`: options in, `recalibrate.run.recalibrate_file` called, report out."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bnstat.cli.app import DebugOpt, command, display, option
from bnstat.cli.output_files import require_writable, write_text
from bnstat.cli.report_options import MaxDownloadOpt, TimeoutOpt, remote_options
from bnstat.cli.run_options import RunFlags, require_torch, with_run_options
from bnstat.errors import UsageError
from bnstat.formats import RecalibrationFormat
from bnstat.remote.url import RemoteUrl
from bnstat.report.verdict import Result

if TYPE_CHECKING:
    from bnstat.location import Location
    from bnstat.report.recalibration import RecalibrationReport


CheckpointArg = Annotated[
    str,
    typer.Argument(
        metavar="CHECKPOINT",
        help="The checkpoint whose statistics to re-estimate (a file, or a URL fetched whole).",
        show_default=False,
    ),
]  # fmt: skip
DataOpt = Annotated[
    Path,
    typer.Option(
        metavar="DIR", help="Folder of images or tensor files (.npy, .pt, .safetensors).",
        show_default=False,
    ),
]  # fmt: skip
RecalOutputOpt = Annotated[
    Path | None,
    option("Where to write the recalibrated checkpoint.", "--output", "-o", metavar="FILE"),
]
MethodOpt = Annotated[
    str,
    option(
        "exact (eval-consistent) or train-average (classic, for comparison).",
        metavar="<exact|train-average>",
    ),
]
SweepsOpt = Annotated[
    int,
    option(
        "Sweeps over the layers; more than 1 re-measures and shows the change.",
        "--sweeps", "--passes", metavar="N",
    ),
]  # fmt: skip
VerifyOpt = Annotated[
    bool, option("Check the result through the whole model on one batch in sixteen.")
]
InPlaceOpt = Annotated[bool, option("Overwrite the input checkpoint (atomically).", "--in-place")]
ReportOpt = Annotated[
    Path | None, option("Also write the before/after report as JSON.", metavar="FILE")
]
RecalibrationFormatOpt = Annotated[
    RecalibrationFormat, typer.Option("--format", "-f", help="A table, or JSON for scripts.")
]


@command(short_help="Re-estimate the statistics on data.")
@with_run_options
def recalibrate(
    checkpoint: CheckpointArg, data: DataOpt, run: RunFlags, output: RecalOutputOpt = None,
    method: MethodOpt = "exact", sweeps: SweepsOpt = 1, verify: VerifyOpt = True,
    in_place: InPlaceOpt = False, report: ReportOpt = None,
    format: RecalibrationFormatOpt = RecalibrationFormat.TABLE, timeout: TimeoutOpt = 30.0,
    max_download: MaxDownloadOpt = 256, debug: DebugOpt = False,
) -> Result:  # fmt: skip
    """Re-estimate the BatchNorm statistics on data and write a new checkpoint."""
    from bnstat.cli.progress import with_progress

    require_torch("bnstat recalibrate")
    from bnstat.location import parse_location
    from bnstat.recalibrate.estimator import Method
    from bnstat.recalibrate.run import Request, recalibrate_file

    if output is None and not in_place:
        raise UsageError("give --output FILE, or --in-place to overwrite the input")
    location = parse_location(checkpoint, remote_options(timeout, max_download))
    if isinstance(location, RemoteUrl) and (in_place or output is None):
        raise UsageError(f"--in-place: {location} is a URL; give --output FILE to write locally")
    try:
        chosen_method = Method(method)
    except ValueError:
        raise UsageError(f"--method {method!r}: expected exact or train-average") from None
    request = Request(
        checkpoint=location,
        output=output if output is not None else Path(checkpoint),
        run=run.request(data),
        method=chosen_method,
        sweeps=sweeps,
        verify=verify,
        in_place=in_place,
    )
    require_writable(report, "--report")
    with _local_copy(location):
        result = with_progress(
            lambda progress: recalibrate_file(request, progress), run.display.progress
        )
    if result.output is not None:  # not a process of a distributed run that does not write
        _show(result, report, format)
    return result


def _local_copy(location: Location) -> AbstractContextManager[None]:
    """A URL is fetched whole to a temporary file: recalibration copies and rewrites it."""
    if not isinstance(location, RemoteUrl):
        return nullcontext()
    from bnstat.remote.download import fetched_whole

    return fetched_whole([location])


def _show(result: RecalibrationReport, report: Path | None, fmt: RecalibrationFormat) -> None:
    from bnstat.formats import recalibration_emitter

    if report is not None:
        json_text = recalibration_emitter(RecalibrationFormat.JSON)(result, display(False))
        write_text(report, json_text, "--report")
    text = recalibration_emitter(fmt)(result, display(fmt is RecalibrationFormat.TABLE))
    sys.stdout.write(text)
