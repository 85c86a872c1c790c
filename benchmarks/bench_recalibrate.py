"""Benchmark `bnstat recalibrate` and `bnstat check --data` against plain torch, whole processes.

Why: PRODUCT.md promises exact, eval-consistent statistics for about the cost of one
forward pass (within 2x of `update_bn`, 1.3x without the verification pass), from every
model source, with bounded memory; and a data diagnosis that costs one eval pass. A
7-layer sample hides costs that grow with depth, so this runs a ResNet-50-shaped network
(`resnet_model.py`: 53 BatchNorm2d, half width, statistics reset) on `--samples`
calibration samples of 3x64x64 in batches of `--batch-size`, from each source a user
has: a state dict with `--arch`, TorchScript scripted and traced, a torch.export `.pt2`
and ONNX (`recalibrate_inputs.py` writes them).

Each command is a fresh process, timed from start to exit with its peak RSS (`_measure`):
one warm-up, then `--repeat` runs, medians reported. The baselines are what a user writes
with plain torch (`torch_baselines.py`): `update_bn` (load, build, one training-mode
pass, save) for recalibration, and one eval-mode pass for the diagnosis, on the same
samples in the same batches, timed the same way in the same run. bnstat's own reports
give the passes it made over the data, its activation cache and the largest eval-mode
mismatch after recalibration. Rows at half the samples show how the cost grows with the
data, and a run with `--cache-mb` below the largest cut shows the cost of spilling the
cache to disk (and that it gives the same statistics).

The accuracy part (`recalibrate_digits.py`: the sample digits model, three kinds of broken
statistics, three batch sizes, against `update_bn`) runs after it, as a child process.

`--part scale` (`recalibrate_scale.py`) runs the user's scale: JPEG photos of ImageNet
sizes through a full-width ResNet-50, at `--photos 256,1024,4096`, against a DataLoader
with `update_bn`; it takes about an hour on 2 cores and is not part of `all`.

Usage, from the repository root:

    python benchmarks/bench_recalibrate.py [--repeat 3] [--samples 512] [--part all|speed|digits]
    python benchmarks/bench_recalibrate.py --part scale [--photos 256,1024,4096] [--keep DIR]

Targets are reported as PASS/FAIL; the exit status does not depend on them. This process
never imports torch, so the peak RSS of the children is their own (see `_measure`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _measure import Measurement, measure, run_once
from _report import bnstat_entry, machine_summary, print_table
from recalibrate_scale import print_scale, scale

HERE = Path(__file__).resolve().parent
ARCH = f"{HERE / 'resnet_model.py'}:build_resnet"
SOURCES = {  # label -> (file, extra arguments)
    "--arch": ("resnet.safetensors", ("--arch", ARCH)),
    "scripted": ("scripted.pt", ()),
    "traced": ("traced.pt", ()),
    ".pt2": ("resnet.pt2", ()),
    "onnx": ("resnet.onnx", ()),
}
MAX_RATIO, MAX_RATIO_NO_VERIFY, MAX_SOURCE_RATIO = 2.0, 1.3, 1.5
MAX_MISMATCH, SPILL_TOLERANCE, MAX_DIAGNOSIS_RATIO = 1e-4, 1e-6, 1.3
SPILL_CACHE_MB = 64  # below the largest cut of the 512-sample run: the cache spills


@dataclass(frozen=True)
class Case:
    label: str  # source and variant
    command: list[str]
    report: Path | None  # bnstat's JSON report
    output: Path
    baseline: str = "update_bn"  # the label of the run it is compared with


@dataclass(frozen=True)
class Result:
    case: Case
    measurement: Measurement
    report: dict[str, Any] | None


def _half(data: str) -> str:
    return "" if data == "data" else ", half the data"


def bnstat_case(folder: Path, source: str, data: str, variant: str, extra: tuple[str, ...]) -> Case:
    file, arguments = SOURCES[source]
    stem = f"{source.strip('-.')}-{data}-{variant}".replace(" ", "_")
    output = folder / "out" / f"{stem}{Path(file).suffix}"
    report = folder / "out" / f"{stem}.json"
    command = [
        *bnstat_entry(), "recalibrate", str(folder / file), "--data", str(folder / data),
        "--output", str(output), "--report", str(report), *arguments, *extra,
    ]  # fmt: skip
    return Case(
        f"{source}, {variant}{_half(data)}", command, report, output, f"update_bn{_half(data)}"
    )


def diagnosis_case(folder: Path, source: str, batch_size: int) -> Case:
    """`bnstat check --data`: one eval pass that measures every layer."""
    file, arguments = SOURCES[source]
    report = folder / "out" / f"check-{source.strip('-.')}.json"
    command = [
        *bnstat_entry(), "check", str(folder / file), "--data", str(folder / "data"),
        "--batch-size", str(batch_size), "-f", "json", "--output", str(report), *arguments,
    ]  # fmt: skip
    return Case(f"check --data, {source}", command, report, report, "eval pass")


def baseline_case(folder: Path, mode: str, data: str, batch_size: int) -> Case:
    output = folder / "out" / f"{mode}-{data}.safetensors"
    command = [
        sys.executable, str(HERE / "torch_baselines.py"), mode, str(folder / "resnet.safetensors"),
        str(folder / data / "calibration.npy"), str(output), "--batch-size", str(batch_size),
    ]  # fmt: skip
    label = f"{mode}{_half(data)}" if mode == "update_bn" else "eval pass"
    return Case(label, command, None, output, label)


def cases(folder: Path, batch_size: int) -> list[Case]:
    common = ("--batch-size", str(batch_size))
    variants = {
        "exact --no-verify": ("--no-verify",),
        f"exact --cache-mb {SPILL_CACHE_MB}": ("--cache-mb", str(SPILL_CACHE_MB)),
        "train-average --no-verify": ("--method", "train-average", "--no-verify"),
    }
    result = [baseline_case(folder, "update_bn", "data", batch_size)]
    result += [bnstat_case(folder, source, "data", "exact", common) for source in SOURCES]
    result += [
        bnstat_case(folder, "--arch", "data", variant, (*common, *extra))
        for variant, extra in variants.items()
    ]
    result += [
        baseline_case(folder, "update_bn", "half", batch_size),
        bnstat_case(folder, "--arch", "half", "exact", common),
        baseline_case(folder, "eval", "data", batch_size),
        diagnosis_case(folder, "--arch", batch_size),
        diagnosis_case(folder, "onnx", batch_size),
    ]
    return result


def run_cases(all_cases: list[Case], repeat: int) -> list[Result]:
    results = []
    for case in all_cases:
        print(f"timing {case.label} ...", flush=True)
        measurement = measure(case.command, repeat=repeat)
        if not measurement.ok:
            print(f"  failed: {measurement.error[-2000:]}")
        report = json.loads(case.report.read_text()) if case.report and measurement.ok else None
        results.append(Result(case, measurement, report))
    return results


def _megabytes(size: float) -> str:
    return f"{size / 2**20:,.0f}"


def _row(result: Result, reference: float) -> list[str]:
    if not result.measurement.ok:
        return [result.case.label, "failed", *["-"] * 6]
    seconds = result.measurement.median_s
    report = result.report or {}
    cache = report.get("cache") or {}
    consistency = report.get("consistency")
    return [
        result.case.label,
        f"{seconds:.2f}",
        f"{seconds / reference:.2f}x",
        str(len(report.get("passes", [None]))) if report else "1",
        _megabytes(result.measurement.peak_rss_bytes),
        _megabytes(cache["peak_bytes"]) if cache else "-",
        _megabytes(cache["spilled_bytes"]) if cache else "-",
        f"{consistency:.1e}" if isinstance(consistency, float) else "-",
    ]


def result_table(results: list[Result]) -> list[list[str]]:
    """One row per run, its time against its baseline's (update_bn, or an eval pass)."""
    header = ["run", "wall s", "vs baseline", "passes", "peak RSS MB", "cache MB"]
    table = [[*header, "spilled MB", "mismatch"]]
    for result in results:
        table.append(_row(result, _median(results, result.case.baseline)))
    return table


def _median(results: list[Result], label: str) -> float:
    return next(
        r.measurement.median_s for r in results if r.case.label == label and r.measurement.ok
    )


def same_statistics(a: Path, b: Path) -> float:
    """Largest relative difference between the running statistics of two safetensors files."""
    code = (
        "import sys, numpy as np\n"
        "from safetensors.numpy import load_file\n"
        "a, b = load_file(sys.argv[1]), load_file(sys.argv[2])\n"
        "print(max(float(np.max(np.abs(a[k] - b[k]) / np.maximum(np.abs(a[k]), 1e-6)))\n"
        "          for k in a if 'running' in k))\n"
    )
    run = run_once([sys.executable, "-c", code, str(a), str(b)], capture_stdout=True)
    return float(run.stdout) if run.returncode == 0 else float("inf")


def targets(results: list[Result]) -> Iterator[tuple[bool, str]]:
    base = _median(results, "update_bn")
    arch = _median(results, "--arch, exact")
    ratio = arch / base
    yield ratio <= MAX_RATIO, f"--arch exact <= {MAX_RATIO}x update_bn ({ratio:.2f}x)"
    ratio = _median(results, "--arch, exact --no-verify") / base
    yield (
        ratio <= MAX_RATIO_NO_VERIFY,
        (f"--arch exact --no-verify <= {MAX_RATIO_NO_VERIFY}x update_bn ({ratio:.2f}x)"),
    )
    for source in list(SOURCES)[1:]:
        ratio = _median(results, f"{source}, exact") / arch
        yield (
            ratio <= MAX_SOURCE_RATIO,
            f"{source} <= {MAX_SOURCE_RATIO}x the --arch run ({ratio:.2f}x)",
        )
    for result in results:
        consistency = (result.report or {}).get("consistency")
        if isinstance(consistency, float):
            what = f"{result.case.label}: mismatch <= {MAX_MISMATCH} ({consistency:.1e})"
            yield consistency <= MAX_MISMATCH, what
    ratio = _median(results, "check --data, --arch") / _median(results, "eval pass")
    what = f"check --data <= {MAX_DIAGNOSIS_RATIO}x a plain eval pass ({ratio:.2f}x)"
    yield ratio <= MAX_DIAGNOSIS_RATIO, what
    spilled = next(r for r in results if "--cache-mb" in r.case.label)
    in_memory = next(r for r in results if r.case.label == "--arch, exact")
    cache = (spilled.report or {}).get("cache") or {}
    yield bool(cache.get("spilled_bytes")), "the --cache-mb run spilled to disk"
    difference = same_statistics(in_memory.case.output, spilled.case.output)
    yield (
        difference <= SPILL_TOLERANCE,
        (f"spilled and in-memory statistics agree to {SPILL_TOLERANCE} ({difference:.1e})"),
    )


def speed(args: argparse.Namespace, folder: Path) -> None:
    if not (folder / "resnet.onnx").exists():
        print("writing the model in every format and the data ...", flush=True)
        writer = [sys.executable, str(HERE / "recalibrate_inputs.py"), str(folder)]
        subprocess.run([*writer, "--samples", str(args.samples)], check=True)
    (folder / "out").mkdir(exist_ok=True)
    results = run_cases(cases(folder, args.batch_size), args.repeat)
    print(
        f"\nResNet-50-shaped model (53 BatchNorm2d, half width), {args.samples} samples of "
        f"3x64x64, batches of {args.batch_size}; whole processes, medians of {args.repeat} "
        "runs after a warm-up; passes over the data and cache from bnstat's report"
    )
    print_table(result_table(results), left=1)
    if all(r.measurement.ok for r in results):
        print("\ntargets:")
        for passed, line in targets(results):
            print(f"  {'PASS' if passed else 'FAIL'}  {line}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--samples", type=int, default=512, help="calibration samples")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--part", choices=["all", "speed", "digits", "scale"], default="all")
    parser.add_argument("--photos", default="256,1024,4096", help="sizes of the scale part")
    parser.add_argument("--keep", type=Path, help="folder for the inputs, reused if present")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(machine_summary(), flush=True)
    if args.part == "scale":
        counts = [int(text) for text in args.photos.split(",")]
        folder = args.keep or Path(tempfile.mkdtemp(prefix="bnstat-scale-"))
        print_scale(scale(folder, counts))
        return
    if args.part in ("all", "speed"):
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            speed(args, args.keep)
        else:
            with tempfile.TemporaryDirectory(prefix="bnstat-bench-") as folder:
                speed(args, Path(folder))
    if args.part in ("all", "digits"):
        print("\naccuracy on the sample digits model (recalibrate_digits.py) ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "recalibrate_digits.py")], check=True)


if __name__ == "__main__":
    main()
