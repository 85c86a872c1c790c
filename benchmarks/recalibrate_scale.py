"""Recalibration at the user's scale: full-size photos, a full-width ResNet-50, thousands
of samples (run by `bench_recalibrate.py --part scale`).

The scenario a user meets: a folder of JPEG photos of ImageNet's sizes (`scale_inputs.py`
generates them), shorter side resized to 256, centre crop 224, ImageNet mean and std, a
ResNet-50-shaped network at full width (53 BatchNorm2d, bottleneck blocks [3, 4, 6, 3],
ReLU in place everywhere), batches of 32. The baseline is what a PyTorch user writes: a
`DataLoader` with Pillow in 2 workers and the same transforms, `update_bn`, `torch.save`
(`torch_baselines.py photos`), as a whole process. bnstat runs `recalibrate` with its
defaults (the memory budget follows the machine), then with `--no-verify`.

Each command runs once per size (the photos are in the page cache from being written):
at 4096 photos one run of each takes about half an hour on 2 cores. The table gives wall
time and its ratio to the baseline, peak RSS (`os.wait4`: the largest of the process and
its decoding workers) beside the memory budget bnstat's report states, what the report
says the cache wrote to disk and read back and how many values it recomputed, the lower
bound its plan gave before the first pass, and the eval-mode mismatch the verification
found.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _measure import Run, run_once
from _report import bnstat_entry, print_table

HERE = Path(__file__).resolve().parent
ARCH = f"{HERE / 'resnet_model.py'}:build_resnet"
ARCH_KWARGS = '{"width": 64, "num_classes": 1000}'
IMAGENET = ("--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225")
TARGETS = {1024: (1.3, 1.1), 4096: (2.0, 2.0)}  # with and without verification, vs the script


@dataclass(frozen=True)
class ScaleRun:
    photos: int
    label: str
    run: Run
    report: dict[str, Any] | None


def inputs(folder: Path, counts: list[int]) -> None:
    writer = [sys.executable, str(HERE / "scale_inputs.py"), str(folder)]
    subprocess.run([*writer, "--photos", ",".join(map(str, counts))], check=True)


def baseline(folder: Path, photos: int) -> ScaleRun:
    command = [
        sys.executable, str(HERE / "torch_baselines.py"), "photos",
        str(folder / "resnet50.safetensors"), str(folder / f"photos-{photos}"),
        str(folder / "out" / f"update_bn-{photos}.pt"), "--arch-kwargs", ARCH_KWARGS,
    ]  # fmt: skip
    return ScaleRun(photos, "PyTorch script", run_once(command), None)


def bnstat_run(folder: Path, photos: int, verify: bool) -> ScaleRun:
    stem = f"bnstat-{photos}-{'verify' if verify else 'no-verify'}"
    report = folder / "out" / f"{stem}.json"
    command = [
        *bnstat_entry(), "recalibrate", str(folder / "resnet50.safetensors"),
        "--arch", ARCH, "--arch-kwargs", ARCH_KWARGS, "--data", str(folder / f"photos-{photos}"),
        "--resize", "256", "--image-size", "224", *IMAGENET,
        "--output", str(folder / "out" / f"{stem}.safetensors"), "--report", str(report),
        *([] if verify else ["--no-verify"]),
    ]  # fmt: skip
    run = run_once(command)
    found = json.loads(report.read_text()) if run.returncode == 0 else None
    label = "bnstat recalibrate" + ("" if verify else " --no-verify")
    return ScaleRun(photos, label, run, found)


def scale(folder: Path, counts: list[int]) -> list[ScaleRun]:
    inputs(folder, counts)
    (folder / "out").mkdir(exist_ok=True)
    results = []
    for photos in counts:
        runs = (
            baseline(folder, photos),
            bnstat_run(folder, photos, verify=True),
            bnstat_run(folder, photos, verify=False),
        )
        for result in runs:
            print(f"  {photos} photos, {result.label}: {result.run.wall_s:.0f} s", flush=True)
            if result.run.returncode != 0:
                print(result.run.stderr.decode(errors="replace")[-2000:])
            results.append(result)
    return results


COLUMNS = (
    "photos", "run", "wall s", "vs script", "peak RSS GB", "budget GB", "written GB", "read GB",
    "recomputed", "plan: at least s", "sweep s", "verify s", "mismatch",
)  # fmt: skip


def _gigabytes(size: float) -> str:
    return f"{size / 2**30:.1f}"


def table(results: list[ScaleRun]) -> list[list[str]]:
    rows = [list(COLUMNS)]
    for result in results:
        script = next(r for r in results if r.photos == result.photos and r.report is None)
        rows.append(_row(result, script.run.wall_s))
    return rows


def _row(result: ScaleRun, script: float) -> list[str]:
    run, report = result.run, result.report or {}
    if run.returncode != 0:
        return [str(result.photos), result.label, "failed", *["-"] * (len(COLUMNS) - 3)]
    cache, plan = report.get("cache") or {}, report.get("plan") or {}
    passes = report.get("passes", [])
    verify = [p["seconds"] for p in passes if p["label"] == "verify"]
    sweep = [p["seconds"] for p in passes if p["label"] != "verify"]
    mismatch = report.get("consistency")
    return [
        str(result.photos),
        result.label,
        f"{run.wall_s:.0f}",
        f"{run.wall_s / script:.2f}x",
        _gigabytes(run.peak_rss_bytes),
        _gigabytes(plan["budget_bytes"]) if plan else "-",
        _gigabytes(cache["spilled_bytes"]) if cache else "-",
        _gigabytes(cache["read_bytes"]) if cache else "-",
        str(plan["recomputed"]) if plan else "-",
        f"{plan['lower_bound_seconds']:.0f}" if plan else "-",
        f"{sum(sweep):.0f}" if report else "-",
        f"{verify[0]:.0f}" if verify else "-",
        f"{mismatch:.1e}" if isinstance(mismatch, float) else "-",
    ]


def targets(results: list[ScaleRun]) -> list[tuple[bool, str]]:
    lines = []
    for photos, (with_verify, without) in TARGETS.items():
        runs = {r.label: r for r in results if r.photos == photos}
        if len(runs) < 3 or any(r.run.returncode for r in runs.values()):
            continue
        script = runs["PyTorch script"].run.wall_s
        for label, limit in (("bnstat recalibrate", with_verify),
                             ("bnstat recalibrate --no-verify", without)):  # fmt: skip
            ratio = runs[label].run.wall_s / script
            lines.append((ratio <= limit, f"{photos} photos, {label} <= {limit}x ({ratio:.2f}x)"))
    return lines


def print_scale(results: list[ScaleRun]) -> None:
    print(
        "\nfull-width ResNet-50 (53 BatchNorm2d) on JPEG photos of ImageNet sizes, resized to "
        "256 and cropped to 224, batches of 32; one whole process per run"
    )
    print_table(table(results), left=2)
    print("\ntargets:")
    for passed, line in targets(results):
        print(f"  {'PASS' if passed else 'FAIL'}  {line}")
