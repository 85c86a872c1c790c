"""`bnstat recalibrate`: options in, `bnstat.recalibrate.run.recalibrate` called, report out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bnstat.cli.app import (
    DebugOpt,
    ReportFormat,
    ReportFormatOpt,
    app,
    errors_to_exit_code,
    option,
    terminal,
)
from bnstat.cli.usage import BnstatCommand
from bnstat.errors import UsageError
from bnstat.formats import OutputFormat


def _require_torch() -> None:
    from bnstat.errors import MissingDependencyError

    for package in ("torch", "PIL"):
        try:
            __import__(package)
        except ImportError:
            name = "Pillow" if package == "PIL" else package
            raise MissingDependencyError(name, "torch", "bnstat recalibrate") from None


def _json_object(text: str, option: str) -> dict[str, object]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{option}: not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option}: expected a JSON object of keyword arguments")
    return value


def _cpu_workers() -> int:
    import os

    return min(4, os.cpu_count() or 1)


CheckpointArg = Annotated[
    Path,
    typer.Argument(
        metavar="CHECKPOINT", help="The checkpoint whose statistics to re-estimate.",
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
ArchOpt = Annotated[
    str | None,
    option(
        "Model factory for a state dict: package.module:callable or file.py:callable.",
        metavar="MODULE:FACTORY",
    ),
]
ArchKwargsOpt = Annotated[str, option("JSON keyword arguments for --arch.", metavar="JSON")]
SourceOpt = Annotated[
    str | None, option("Which model of a file holding several (e.g. ema).", metavar="NAME")
]
UnsafeOpt = Annotated[
    bool, option("Allow unpickling a whole module: runs code from the file.", "--unsafe-load")
]
MethodOpt = Annotated[
    str,
    option(
        "exact (eval-consistent) or train-average (classic, for comparison).",
        metavar="<exact|train-average>",
    ),
]
PassesOpt = Annotated[
    int,
    option("Sweeps over the layers; more than 1 re-measures and shows the change.", metavar="N"),
]
VerifyOpt = Annotated[bool, option("Measure eval-mode consistency afterwards (one more pass).")]
ImageSizeOpt = Annotated[str | None, option("Final image size: N or HxW.", metavar="SIZE")]
ResizeOpt = Annotated[
    int | None,
    option("Resize the shorter side to N before cropping to --image-size.", metavar="N"),
]
MeanOpt = Annotated[
    str,
    option("Per-channel mean to subtract after /255, comma-separated.", metavar="FLOATS"),
]
StdOpt = Annotated[str, option("Per-channel std to divide by, comma-separated.", metavar="FLOATS")]
GrayscaleOpt = Annotated[bool, option("Decode images to one channel.", "--grayscale")]
ChannelsOpt = Annotated[
    int | None,
    option(
        "Decode images to 1, 3 or 4 channels [default: what the first convolution takes].",
        metavar="<1|3|4>",
    ),
]
MaxSamplesOpt = Annotated[
    int | None,
    option("Use at most this many samples (a seeded random subset).", metavar="N"),
]
SeedOpt = Annotated[int, option("Seed for the sample order and subset.", metavar="N")]
BatchSizeOpt = Annotated[int, option("Samples per forward pass.", metavar="N")]
WorkersOpt = Annotated[
    int | None, option("Image decoding processes [default: min(4, CPUs)].", metavar="N")
]
CacheOpt = Annotated[
    int,
    option(
        "Memory for decoded data and cached activations; beyond it they go to disk.",
        metavar="MB",
        minimum=0,
    ),
]
DeviceOpt = Annotated[str, option("Where the model runs.", metavar="<auto|cpu|cuda|cuda:N|mps>")]
InputKeyOpt = Annotated[
    str | None,
    option("Call the model with {KEY: batch} instead of the batch.", metavar="KEY"),
]
InPlaceOpt = Annotated[bool, option("Overwrite the input checkpoint (atomically).", "--in-place")]
ReportOpt = Annotated[
    Path | None, option("Also write the before/after report as JSON.", metavar="FILE")
]


@app.command(cls=BnstatCommand, short_help="Re-estimate the statistics on data.")
def recalibrate(
    checkpoint: CheckpointArg, data: DataOpt, output: RecalOutputOpt = None, arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = "{}", source: SourceOpt = None, unsafe_load: UnsafeOpt = False,
    method: MethodOpt = "exact", passes: PassesOpt = 1, verify: VerifyOpt = True,
    image_size: ImageSizeOpt = None, resize: ResizeOpt = None, mean: MeanOpt = "0",
    std: StdOpt = "1", grayscale: GrayscaleOpt = False, channels: ChannelsOpt = None,
    max_samples: MaxSamplesOpt = None, seed: SeedOpt = 0, batch_size: BatchSizeOpt = 32,
    workers: WorkersOpt = None, cache_mb: CacheOpt = 2048, device: DeviceOpt = "auto",
    input_key: InputKeyOpt = None, in_place: InPlaceOpt = False, report: ReportOpt = None,
    format: ReportFormatOpt = ReportFormat.TABLE, debug: DebugOpt = False,
) -> None:  # fmt: skip
    """Re-estimate the BatchNorm statistics on data and write a new checkpoint."""
    with errors_to_exit_code(debug):
        _require_torch()
        from bnstat.atomic import atomic_output
        from bnstat.formats.progress import TerminalProgress
        from bnstat.formats.recalibration import recalibration_json, render_recalibration
        from bnstat.recalibrate.data import DataOptions, parse_floats, parse_image_size
        from bnstat.recalibrate.estimator import Method
        from bnstat.recalibrate.model_source import ModelSpec
        from bnstat.recalibrate.run import Request
        from bnstat.recalibrate.run import recalibrate as run_recalibration

        if output is None and not in_place:
            raise UsageError("give --output FILE, or --in-place to overwrite the input")
        try:
            chosen_method = Method(method)
        except ValueError:
            raise UsageError(f"--method {method!r}: expected exact or train-average") from None
        request = Request(
            checkpoint=checkpoint,
            data=data,
            output=output if output is not None else checkpoint,
            model=ModelSpec(arch, _json_object(arch_kwargs, "--arch-kwargs"), unsafe_load, source),
            data_options=DataOptions(
                image_size=parse_image_size(image_size) if image_size else None,
                resize=resize,
                mean=parse_floats(mean),
                std=parse_floats(std),
                max_samples=max_samples,
                seed=seed,
                batch_size=batch_size,
                workers=_cpu_workers() if workers is None else workers,
                cache_bytes=cache_mb * 2**20,
            ),
            channels=1 if grayscale else channels,
            method=chosen_method,
            passes=passes,
            verify=verify,
            device=device,
            input_key=input_key,
            in_place=in_place,
        )
        progress = TerminalProgress() if sys.stderr.isatty() else None
        try:
            result = run_recalibration(request, progress)
        finally:
            if progress is not None:
                progress.close()
        if result.output is None:  # a process of a distributed run that does not write
            return
        if report is not None:
            with atomic_output(report) as temporary:
                temporary.write_text(recalibration_json(result), encoding="utf-8")
        if format is ReportFormat.JSON:
            sys.stdout.write(recalibration_json(result))
        else:
            color, width = terminal(None, OutputFormat.TABLE)
            sys.stdout.write(render_recalibration(result, color, width))
