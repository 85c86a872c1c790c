"""Benchmark `bnstat inspect` against what a user would otherwise write.

Why: PRODUCT.md (section Speed) promises that inspecting a checkpoint reads only
the BatchNorm tensors, so its cost grows with the BN bytes rather than the file
size, and that it never imports torch for safetensors and torch zip archives.
This script checks that promise on files where the difference shows:

* a ~2 GiB checkpoint: torchvision's ResNet-50 state dict (the real 53 BN layer
  names and shapes, conv and fc weights) with 64 MiB float32 `filler.N`
  tensors spread between the BN layers, like the weights of a big model;
* a checkpoint of 10,000 small BN layers (`blocks.{i}.bn`), where per-layer
  overhead dominates, and the same with 100 and 1,000 layers, to show how the time
  grows with the number of layers (a least-squares line through the three sizes: a
  fixed cost plus a cost per layer);

each written as a torch zip (`torch.save`) and as `.safetensors`.

Every command runs as a fresh process (wall clock includes interpreter start
and imports), once untimed to warm the page cache, then --repeat times; peak
RSS is the child's own `ru_maxrss` (this process never imports torch, so the
floor it puts under that figure stays small: see _measure.py). Baselines are
the obvious user scripts: load everything (`torch.load` /
`safetensors.torch.load_file`), then compute min/max/mean/std in float64 per
BN tensor; the lazy variants
(`torch.load(mmap=True)`, `safe_open`) are shown for a fair comparison.

Usage, from the repository root:

    python benchmarks/bench_inspect.py [--size-gib 2] [--layers 10000] [--repeat 3] [--keep DIR]
                                       [--growth 100,1000]

Targets are reported as PASS/FAIL; the exit status does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from _measure import Measurement, measure, own_peak_rss_bytes, run_once
from _report import bnstat_entry, machine_summary, print_table

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported only inside the functions that build checkpoints, which run in a child
# process: the measuring process must stay small (see _measure.py).

REPO_ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
MIB = 1024**2
FILLER_ELEMENTS = 64 * MIB // 4  # one 64 MiB float32 filler tensor
RESNET50_BN_LAYERS = 53

# --- checkpoints -----------------------------------------------------------------------------


def _bn_tensors(channels: int) -> dict[str, torch.Tensor]:
    """Plausible trained BN state: var log-uniform in [0.01, 10], weight around 1."""
    import torch

    return {
        "weight": torch.empty(channels).normal_(1.0, 0.2),
        "bias": torch.empty(channels).normal_(0.0, 0.1),
        "running_mean": torch.empty(channels).normal_(0.0, 0.5),
        "running_var": 10 ** torch.empty(channels).uniform_(-2.0, 1.0),
        "num_batches_tracked": torch.tensor(100_000),
    }


def _bottleneck(inplanes: int, width: int, stride: int) -> nn.Module:
    """torchvision's Bottleneck: same attribute names and order, so the same state-dict keys."""
    from torch import nn

    block = nn.Module()
    block.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
    block.bn1 = nn.BatchNorm2d(width)
    block.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
    block.bn2 = nn.BatchNorm2d(width)
    block.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
    block.bn3 = nn.BatchNorm2d(width * 4)
    if stride != 1 or inplanes != width * 4:
        block.downsample = nn.Sequential(
            nn.Conv2d(inplanes, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
        )
    return block


def _resnet50() -> nn.Module:
    """torchvision.models.resnet50's parameter layout, without needing torchvision."""
    from torch import nn

    model = nn.Module()
    model.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    model.bn1 = nn.BatchNorm2d(64)
    inplanes = 64
    stages = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
    for index, (width, blocks, stride) in enumerate(stages, start=1):
        layer = [_bottleneck(inplanes, width, stride)]
        inplanes = width * 4
        layer += [_bottleneck(inplanes, width, 1) for _ in range(blocks - 1)]
        setattr(model, f"layer{index}", nn.Sequential(*layer))
    model.fc = nn.Linear(2048, 1000)
    return model


def _randomize_bn(state_dict: dict[str, torch.Tensor]) -> None:
    prefixes = [k.removesuffix("running_mean") for k in state_dict if k.endswith("running_mean")]
    for prefix in prefixes:
        channels = state_dict[prefix + "running_mean"].numel()
        for name, tensor in _bn_tensors(channels).items():
            state_dict[prefix + name] = tensor


def _fillers(total_bytes: int) -> list[torch.Tensor]:
    """float32 tensors of 64 MiB (the last one smaller) adding up to ``total_bytes``."""
    import torch

    sizes = [FILLER_ELEMENTS] * (total_bytes // (FILLER_ELEMENTS * 4))
    if remainder := total_bytes % (FILLER_ELEMENTS * 4) // 4:
        sizes.append(remainder)
    return [torch.randn(size) for size in sizes]


def resnet50_with_filler(size_bytes: int) -> OrderedDict[str, torch.Tensor]:
    """ResNet-50 state dict padded to ``size_bytes`` with fillers spread between its BN layers."""
    model_sd = _resnet50().state_dict()
    _randomize_bn(model_sd)
    model_bytes = sum(t.numel() * t.element_size() for t in model_sd.values())
    fillers = _fillers(max(size_bytes - model_bytes, 0))
    bn_ends = [key for key in model_sd if key.endswith("num_batches_tracked")]
    after: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for i, filler in enumerate(fillers):
        bn_end = bn_ends[i * len(bn_ends) // len(fillers)]
        after.setdefault(bn_end, []).append((f"filler.{i}", filler))

    state_dict: OrderedDict[str, torch.Tensor] = OrderedDict()
    state_dict._metadata = model_sd._metadata  # type: ignore[attr-defined]  # like state_dict()
    for key, tensor in model_sd.items():
        state_dict[key] = tensor
        state_dict.update(after.get(key, []))
    return state_dict


def many_layers(count: int, channels: int = 64) -> OrderedDict[str, torch.Tensor]:
    """``count`` BatchNorm2d-like layers named ``blocks.{i}.bn``."""
    state_dict: OrderedDict[str, torch.Tensor] = OrderedDict()
    for i in range(count):
        for name, tensor in _bn_tensors(channels).items():
            state_dict[f"blocks.{i}.bn.{name}"] = tensor
    return state_dict


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    layers: int
    size_bytes: int

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def is_safetensors(self) -> bool:
        return self.path.suffix == ".safetensors"


def _layers_stem(layers: int) -> str:
    """The file name stem of the checkpoint of `layers` small BN layers."""
    return f"bn-{layers}-layers"


def _stems(size_gib: float, layer_count: int) -> dict[str, int]:
    """File name stem -> number of BN layers, for the two checkpoints."""
    return {
        f"resnet50-{size_gib:g}gib": RESNET50_BN_LAYERS,
        _layers_stem(layer_count): layer_count,
    }


def checkpoint_files(directory: Path, size_gib: float, layer_count: int) -> list[Checkpoint]:
    paths = {
        directory / f"{stem}{suffix}": layers
        for stem, layers in _stems(size_gib, layer_count).items()
        for suffix in (".pt", ".safetensors")
    }
    return [Checkpoint(path, layers, path.stat().st_size) for path, layers in paths.items()]


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    partial.replace(path)


def write_checkpoints(
    directory: Path, size_gib: float, layer_count: int, growth: tuple[int, ...] = ()
) -> None:
    """Write the checkpoints in both formats, skipping files already there (see --keep)."""
    import safetensors.torch
    import torch

    torch.manual_seed(0)
    resnet_stem, many_stem = _stems(size_gib, layer_count)
    makers = {
        resnet_stem: lambda: resnet50_with_filler(int(size_gib * GIB)),
        many_stem: lambda: many_layers(layer_count),
    }
    for count in growth:
        makers[_layers_stem(count)] = partial(many_layers, count)
    for stem, make in makers.items():
        pt, st = directory / f"{stem}.pt", directory / f"{stem}.safetensors"
        if pt.exists() and st.exists():
            continue
        print(f"building {stem} ...", flush=True)
        state_dict = make()
        _write_atomically(pt, partial(torch.save, state_dict))
        _write_atomically(st, partial(safetensors.torch.save_file, state_dict))


def write_checkpoints_in_child(
    directory: Path, size_gib: float, layer_count: int, growth: tuple[int, ...]
) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=write_checkpoints, args=(directory, size_gib, layer_count, growth)
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        sys.exit(f"building the checkpoints failed (exit {process.exitcode})")


# --- commands --------------------------------------------------------------------------------

_BN_LOOP = """
for prefix in [k[:-len("running_mean")] for k in keys if k.endswith("running_mean")]:
    for field in ("weight", "bias", "running_mean", "running_var"):
        if prefix + field in keys:
            t = get(prefix + field).double()
            stats = (t.min().item(), t.max().item(), t.mean().item(), t.std().item())
"""

BASELINES = {
    "torch.load+loop": """
import sys, torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
keys, get = sd.keys(), sd.__getitem__
""",
    "torch.load(mmap)+loop": """
import sys, torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True, mmap=True)
keys, get = sd.keys(), sd.__getitem__
""",
    "load_file+loop": """
import sys
from safetensors.torch import load_file
sd = load_file(sys.argv[1])
keys, get = sd.keys(), sd.__getitem__
""",
    "safe_open+loop": """
import sys
from safetensors import safe_open
f = safe_open(sys.argv[1], framework="pt")
keys, get = set(f.keys()), f.get_tensor
""",
}
PT_TOOLS = ("bnstat", "torch.load+loop", "torch.load(mmap)+loop")
SAFETENSORS_TOOLS = ("bnstat", "load_file+loop", "safe_open+loop")


def command(tool: str, path: Path) -> list[str]:
    if tool == "bnstat":
        return [*bnstat_entry(), "inspect", str(path), "--format", "json"]
    return [sys.executable, "-c", BASELINES[tool] + _BN_LOOP, str(path)]


def baseline_of(checkpoint: Checkpoint) -> str:
    return "load_file+loop" if checkpoint.is_safetensors else "torch.load+loop"


# --- checks on bnstat's output ---------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What one `python -X importtime` run of bnstat showed."""

    layers: int | None
    torch_imported: bool
    import_ms: float
    error: str


def probe_bnstat(checkpoint: Checkpoint) -> Probe:
    """Run bnstat once under -X importtime: layer count from its JSON, and whether torch loaded."""
    entry = bnstat_entry()
    python_args = entry[1:] if entry[0] == sys.executable else entry
    cmd = [sys.executable, "-X", "importtime", *python_args, "inspect", str(checkpoint.path)]
    cmd += ["--format", "json"]
    run = run_once(cmd, cwd=REPO_ROOT, capture_stdout=True)
    stderr = run.stderr.decode(errors="replace")
    imports = [line.split("|") for line in stderr.splitlines() if line.startswith("import time:")]
    modules = {parts[-1].strip() for parts in imports[1:]}
    import_us = sum(int(parts[0].removeprefix("import time:")) for parts in imports[1:])
    messages = [line for line in stderr.splitlines() if not line.startswith("import time:")]
    try:
        layers = json.loads(run.stdout)["summary"]["layers"]
    except (ValueError, KeyError, TypeError):
        layers = None
    ok = run.returncode in (0, 1) and layers is not None
    error = "" if ok else "\n".join(messages).strip() or f"exit {run.returncode}, no JSON"
    return Probe(layers, "torch" in modules, import_us / 1000, error)


# --- report ----------------------------------------------------------------------------------


def _human_size(size: int) -> str:
    return f"{size / GIB:.2f} GiB" if size >= GIB else f"{size / MIB:.1f} MiB"


Results = dict[tuple[str, str], Measurement]  # (checkpoint label, tool) -> measurement


def _tools(checkpoint: Checkpoint) -> tuple[str, ...]:
    return SAFETENSORS_TOOLS if checkpoint.is_safetensors else PT_TOOLS


def result_rows(results: Results, checkpoints: list[Checkpoint]) -> list[list[str]]:
    rows = [["checkpoint", "size", "tool", "best s", "median s", "peak RSS MB", "vs baseline"]]
    for ckpt in checkpoints:
        baseline = results[ckpt.label, baseline_of(ckpt)]
        for tool in _tools(ckpt):
            m = results[ckpt.label, tool]
            size = _human_size(ckpt.size_bytes)
            if not m.ok:
                rows.append([ckpt.label, size, tool, "error", "", "", ""])
                continue
            ratio = f"{baseline.median_s / m.median_s:.1f}x" if baseline.ok else ""
            rows.append(
                [
                    ckpt.label,
                    size,
                    tool,
                    f"{m.best_s:.3f}",
                    f"{m.median_s:.3f}",
                    f"{m.peak_rss_bytes / 1e6:.0f}",
                    ratio,
                ]
            )
    return rows


def target_lines(
    results: Results, checkpoints: list[Checkpoint], probes: dict[str, Probe]
) -> Iterator[tuple[bool, str]]:
    """(passed, description) for each target in PRODUCT.md's Speed section and the brief."""
    big_pt, big_st, many_pt, many_st = checkpoints
    for ckpt, factor in ((big_pt, 7), (big_st, 5)):
        tool, base = results[ckpt.label, "bnstat"], results[ckpt.label, baseline_of(ckpt)]
        speedup = base.median_s / tool.median_s if tool.ok and base.ok else 0.0
        what = f">= {factor}x faster than {baseline_of(ckpt)} ({speedup:.1f}x)"
        yield speedup >= factor, f"{ckpt.label}: {what}"
    rss = results[big_pt.label, "bnstat"]
    rss_mb = rss.peak_rss_bytes / 1e6 if rss.ok else float("inf")
    yield rss_mb < 150, f"{big_pt.label}: peak RSS < 150 MB ({rss_mb:.0f} MB)"
    for ckpt in (many_pt, many_st):
        m = results[ckpt.label, "bnstat"]
        wall = m.median_s if m.ok else float("inf")
        yield wall < 3.0, f"{ckpt.label}: under 3 s ({wall:.2f} s)"
    for label, probe in probes.items():
        what = f"torch not imported (all imports: {probe.import_ms:.0f} ms)"
        yield not probe.torch_imported, f"{label}: {what}"
    for ckpt in checkpoints:
        found = probes[ckpt.label].layers
        what = f"JSON reports {found} layers, {ckpt.layers} expected"
        yield found == ckpt.layers, f"{ckpt.label}: {what}"


# --- main ------------------------------------------------------------------------------------


@contextmanager
def checkpoint_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
    else:
        with tempfile.TemporaryDirectory(prefix="bench_inspect_") as tmp:
            yield Path(tmp)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--size-gib",
        type=float,
        default=2.0,
        help="size of the ResNet-50 + filler checkpoint (default 2)",
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=10_000,
        help="layers in the many-layers checkpoint (default 10000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs per command, after one untimed warm-up (default 3)",
    )
    parser.add_argument(
        "--growth",
        default="100,1000",
        help="smaller layer counts timed beside --layers, to show the growth (default 100,1000)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="write checkpoints here and keep them (reused by later runs)",
    )
    return parser.parse_args(argv)


def time_all(checkpoints: list[Checkpoint], repeat: int) -> Results:
    results = {}
    for ckpt in checkpoints:
        for tool in _tools(ckpt):
            print(f"timing {tool} on {ckpt.label} ...", flush=True)
            ok = (0, 1) if tool == "bnstat" else (0,)  # bnstat exits 1 on error-level findings
            cmd = command(tool, ckpt.path)
            results[ckpt.label, tool] = measure(
                cmd, repeat=repeat, cwd=REPO_ROOT, ok_returncodes=ok
            )
    return results


def time_growth(directory: Path, counts: list[int], repeat: int) -> dict[str, list[float]]:
    """Median seconds of `bnstat inspect` per layer count, per format."""
    medians: dict[str, list[float]] = {".pt": [], ".safetensors": []}
    for count in counts:
        for suffix, times in medians.items():
            path = directory / f"{_layers_stem(count)}{suffix}"
            print(f"timing bnstat on {path.name} ...", flush=True)
            m = measure(
                command("bnstat", path), repeat=repeat, cwd=REPO_ROOT, ok_returncodes=(0, 1)
            )
            times.append(m.median_s if m.ok else float("nan"))
    return medians


def growth_lines(counts: list[int], medians: dict[str, list[float]]) -> list[str]:
    """How the time grows with the layers: a least-squares line, fixed + per-layer cost,
    and how far the measurements stray from it."""
    lines = []
    n = len(counts)
    mean_x = sum(counts) / n
    for suffix, times in medians.items():
        mean_y = sum(times) / n
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(counts, times, strict=True))
        slope /= sum((x - mean_x) ** 2 for x in counts)
        fixed = mean_y - slope * mean_x
        stray = max(abs(y - (fixed + slope * x)) / y for x, y in zip(counts, times, strict=True))
        seconds = ", ".join(f"{c:,} layers {t:.2f} s" for c, t in zip(counts, times, strict=True))
        lines.append(
            f"{suffix:<13} {seconds}: {times[-1] / times[0]:.1f}x the time for "
            f"{counts[-1] / counts[0]:.0f}x the layers = {fixed:.2f} s + "
            f"{slope * 1000:.3f} ms per layer (largest deviation from that line {stray:.0%})"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    growth = tuple(sorted({int(c) for c in args.growth.split(",") if c} - {args.layers}))
    counts = [*growth, args.layers]
    print(machine_summary(), flush=True)
    with checkpoint_dir(args.keep) as directory:
        write_checkpoints_in_child(directory, args.size_gib, args.layers, growth)
        checkpoints = checkpoint_files(directory, args.size_gib, args.layers)
        results = time_all(checkpoints, args.repeat)
        medians = time_growth(directory, list(growth), args.repeat)
        for suffix, times in medians.items():
            many = next(
                c for c in checkpoints if c.layers == args.layers and c.path.suffix == suffix
            )
            times.append(results[many.label, "bnstat"].median_s)
        rss_floor = own_peak_rss_bytes()  # probes parse big JSON: run them after the timings
        probes = {ckpt.label: probe_bnstat(ckpt) for ckpt in checkpoints}

    print(
        f"\nwall clock of whole processes, {args.repeat} runs after one warm-up; "
        "vs baseline = baseline median / row median"
    )
    print(f"peak RSS floor (this process, see _measure.py): {rss_floor / 1e6:.0f} MB")
    print_table(result_rows(results, checkpoints))
    if growth:
        print("\ngrowth with the number of layers (bnstat inspect --format json, medians):")
        for line in growth_lines(counts, medians):
            print(f"  {line}")
    print("\ntargets:")
    for passed, line in target_lines(results, checkpoints, probes):
        print(f"  {'PASS' if passed else 'FAIL'}  {line}")
    for (label, tool), m in results.items():
        if not m.ok:
            print(f"\nerror from {tool} on {label} (exit {m.warmup.returncode}):\n{m.error}")
    for label, probe in probes.items():
        if probe.error:
            print(f"\nbnstat probe on {label}:\n{probe.error}")


if __name__ == "__main__":
    main()
