"""Accuracy and batch-size behaviour of bnstat's recalibration on the sample digits model.

Part of `bench_recalibrate.py` (which runs it as a child process); runnable alone too.

Why: BATCHNORM.md (section Recalibration) says the usual recipe, training mode with
`momentum=None` as `torch.optim.swa_utils.update_bn` runs it, lets every layer before the
one being measured normalise with batch statistics, so the estimate drifts from what the
model sees in eval mode, the more so the smaller the batch. bnstat's default `exact`
method measures the eval-mode statistics themselves, in one segmented sweep over the
data, and should not depend on the batch size; its `train-average` method is the usual
recipe. This script checks, on the sample digits model (sample_checkpoints/README.md):

* `exact` brings the trained model's test accuracy back from broken statistics at every
  batch size, and never ends up below `update_bn`;
* `train-average` runs as fast as `update_bn`, and `exact`'s one sweep costs no more than
  `PASS_CEILING` train-average passes, even on a model this small, where the per-segment
  overhead weighs most.

Broken statistics (the weights stay the healthy ones): `reset`, every layer at mean 0,
var 1 (stats_reset.safetensors); `inverted`, measured on inverted images 1 - x
(stats_inverted.safetensors); `brightness`, measured here on x * 0.5 + 0.4 (training mode,
`momentum=None`, batches of 64, as make_samples.py measures). Each is recalibrated on the
1437 training images and scored in eval mode on the 360 test images, with the split and
preprocessing of make_samples.py (imported from it). Every method gets the same decoded
in-memory batches in the same order; a final one-sample batch is merged into the one
before it, as bnstat's pass loop does for training mode (`update_bn` cannot put a
one-sample batch through the model's BatchNorm1d in training mode).

Timings are in-process `perf_counter` wall clock of whole calls (`estimate` includes the
two-sample forward that finds the layer order and the graph capture), at the same
`torch.set_num_threads`. Each round runs every method once, in turn, so that load from
other processes hits them alike; the first round is a warm-up and figures are medians
over the other --repeat rounds. Pass times are bnstat's own `PassRecord`s.

Usage, from the repository root:

    python benchmarks/recalibrate_digits.py [--repeat 5] [--threads N] [--batch-sizes 4,32,256]

Targets are reported as PASS/FAIL; the exit status does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from _report import machine_summary, print_table
from safetensors.torch import load_file
from torch import nn
from torch.optim.swa_utils import update_bn

from bnstat.execution.runtimes.eager.runtime import eager_model
from bnstat.recalibrate.estimator import Estimate, Method, estimate

SAMPLES = Path(__file__).resolve().parent.parent / "sample_checkpoints"
sys.path.insert(0, str(SAMPLES))
from digits_model import build_model  # noqa: E402
from make_samples import load_data, to_input, with_stats_from  # noqa: E402

StateDict = dict[str, torch.Tensor]
STAT_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
RECALIBRATORS = ("update_bn", "train-average", "exact")
ACCURACY_TOLERANCE = 0.5  # points of test accuracy
SPEED_FLOOR = 0.95  # train-average samples/s over update_bn's
PASS_CEILING = 1.5  # exact's one sweep over train-average's one pass
SINGLETON_NOTE = (
    "a final one-sample batch is merged into the batch before it, for every method, as\n"
    "bnstat's pass loop does for training mode: update_bn would crash on it (the\n"
    "model's BatchNorm1d refuses one value per channel in training mode)"
)
PASS_HEADER = [
    "batch",
    "train-average pass ms",
    "exact total ms",
    "exact passes",
    "sweep ms",
    "sweep / train-average",
    "verify pass ms",
    "verify / train-average",
]


# --- data and models -------------------------------------------------------------------------


@dataclass(frozen=True)
class Digits:
    x_train: torch.Tensor  # float32 (1437, 1, 8, 8) in 0..1
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_split() -> Digits:
    data = load_data()
    return Digits(
        to_input(data.train_pixels), to_input(data.test_pixels), torch.from_numpy(data.test_labels)
    )


def calibration_batches(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """`x` in batches of `batch_size`, a final one-sample batch merged into the one before."""
    batches = list(torch.split(x, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def model_with(state: StateDict) -> nn.Module:
    model: nn.Module = build_model()
    model.load_state_dict(state)
    return model.eval()


def is_statistic(key: str) -> bool:
    return key.endswith(STAT_SUFFIXES)


def with_statistics(healthy: StateDict, source: StateDict) -> StateDict:
    """The healthy weights with the BatchNorm statistics of `source`."""
    return {key: source[key] if is_statistic(key) else value for key, value in healthy.items()}


def broken_variants(healthy: StateDict, x_train: torch.Tensor) -> dict[str, StateDict]:
    brightness = with_stats_from(model_with(healthy), x_train * 0.5 + 0.4).state_dict()
    return {
        "reset": with_statistics(healthy, load_file(SAMPLES / "stats_reset.safetensors")),
        "inverted": with_statistics(healthy, load_file(SAMPLES / "stats_inverted.safetensors")),
        "brightness": with_statistics(healthy, brightness),
    }


@torch.no_grad()
def accuracy(model: nn.Module, digits: Digits) -> float:
    """Top-1 test accuracy in eval mode, in percent."""
    model.eval()
    correct = (model(digits.x_test).argmax(1) == digits.y_test).float().mean().item()
    return 100 * float(correct)


# --- recalibrators ---------------------------------------------------------------------------


def recalibrate(
    name: str, model: nn.Module, batches: list[torch.Tensor], verify: bool = True
) -> Estimate | None:
    """Re-estimate `model`'s statistics in place; bnstat's methods return their Estimate."""
    if name == "update_bn":
        update_bn(batches, model)
        model.eval()
        return None
    opened = eager_model(model, torch.device("cpu"), "arch")
    return estimate(opened, batches, Method(name), verify=verify)


# --- accuracy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyRow:
    variant: str
    batch_size: int
    original: float
    broken: float
    recalibrated: dict[str, float]  # by recalibrator
    consistency: dict[str, float]  # bnstat method -> worst layer's eval-mode mismatch


def accuracy_row(
    variant: str, state: StateDict, original: float, digits: Digits, batch_size: int
) -> AccuracyRow:
    batches = calibration_batches(digits.x_train, batch_size)
    recalibrated, consistency = {}, {}
    for name in RECALIBRATORS:
        model = model_with(state)
        result = recalibrate(name, model, batches)
        recalibrated[name] = accuracy(model, digits)
        if result is not None and result.consistency is not None:
            consistency[name] = max(result.consistency.values())
    broken = accuracy(model_with(state), digits)
    return AccuracyRow(variant, batch_size, original, broken, recalibrated, consistency)


def accuracy_rows(healthy: StateDict, digits: Digits, batch_sizes: list[int]) -> list[AccuracyRow]:
    original = accuracy(model_with(healthy), digits)
    return [
        accuracy_row(variant, state, original, digits, batch_size)
        for variant, state in broken_variants(healthy, digits.x_train).items()
        for batch_size in batch_sizes
    ]


# --- speed -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """One call: its wall time and, for bnstat, the passes it recorded."""

    seconds: float
    passes: tuple[float, ...] = ()  # seconds per pass; exact's last is "verify"


def timed(name: str, model: nn.Module, batches: list[torch.Tensor]) -> Timing:
    verify = name == "exact"  # train-average is timed as update_bn runs: one pass, no check
    start = time.perf_counter()
    result = recalibrate(name, model, batches, verify=verify)
    seconds = time.perf_counter() - start
    return Timing(seconds, tuple(p.seconds for p in result.passes) if result else ())


@dataclass(frozen=True)
class SpeedRow:
    batch_size: int
    batches: int
    samples: int
    timings: dict[str, list[Timing]]  # by recalibrator, the timed rounds

    def median(self, name: str, pick: Callable[[Timing], float]) -> float:
        return statistics.median(pick(timing) for timing in self.timings[name])

    def per_second(self, name: str) -> float:
        return self.samples / self.median(name, lambda t: t.seconds)

    @property
    def train_average_pass(self) -> float:
        return self.median("train-average", lambda t: t.passes[0])

    @property
    def sweep_pass(self) -> float:
        return self.median("exact", lambda t: t.passes[0])

    @property
    def verify_pass(self) -> float:
        return self.median("exact", lambda t: t.passes[-1])


def speed_row(model: nn.Module, x_train: torch.Tensor, batch_size: int, repeat: int) -> SpeedRow:
    batches = calibration_batches(x_train, batch_size)
    timings: dict[str, list[Timing]] = {name: [] for name in RECALIBRATORS}
    for _ in range(1 + repeat):
        for name in RECALIBRATORS:
            timings[name].append(timed(name, model, batches))
    rounds = {name: runs[1:] for name, runs in timings.items()}  # drop the warm-up round
    return SpeedRow(batch_size, len(batches), len(x_train), rounds)


# --- report ----------------------------------------------------------------------------------


def batches_line(x_train: torch.Tensor, batch_size: int) -> str:
    sizes = [len(batch) for batch in calibration_batches(x_train, batch_size)]
    merged = len(x_train) % batch_size == 1 and len(sizes) > 1
    note = f", the last of {sizes[-1]} (a final singleton merged into it)" if merged else ""
    return f"  batch size {batch_size}: {len(sizes)} batches{note}"


def accuracy_table(rows: list[AccuracyRow]) -> list[list[str]]:
    table = [["variant", "batch", "original", "broken", *RECALIBRATORS]]
    for row in rows:
        scores = [row.original, row.broken, *(row.recalibrated[n] for n in RECALIBRATORS)]
        table.append([row.variant, str(row.batch_size), *(f"{s:.2f}" for s in scores)])
    return table


def consistency_table(rows: list[AccuracyRow], batch_sizes: list[int]) -> list[list[str]]:
    table = [["batch", "exact", "train-average"]]
    for batch_size in batch_sizes:
        worst = [row.consistency for row in rows if row.batch_size == batch_size]
        cells = [f"{max(c[name] for c in worst):.1e}" for name in ("exact", "train-average")]
        table.append([str(batch_size), *cells])
    return table


def speed_table(rows: list[SpeedRow]) -> list[list[str]]:
    columns = ["update_bn samples/s", "train-average samples/s", "exact+verify samples/s"]
    table = [["batch", "batches", *columns, "train-average / update_bn"]]
    for row in rows:
        rates = [row.per_second(name) for name in RECALIBRATORS]
        ratio = rates[1] / rates[0]
        table.append(
            [str(row.batch_size), str(row.batches), *(f"{r:,.0f}" for r in rates), f"{ratio:.2f}x"]
        )
    return table


def pass_table(rows: list[SpeedRow]) -> list[list[str]]:
    table = [PASS_HEADER]
    for row in rows:
        passes = len(row.timings["exact"][0].passes)
        base = row.train_average_pass
        table.append(
            [
                str(row.batch_size),
                f"{1000 * base:.1f}",
                f"{1000 * row.median('exact', lambda t: t.seconds):.1f}",
                f"{passes} (sweep + verify)",
                f"{1000 * row.sweep_pass:.1f}",
                f"{row.sweep_pass / base:.2f}x",
                f"{1000 * row.verify_pass:.1f}",
                f"{row.verify_pass / base:.2f}x",
            ]
        )
    return table


def accuracy_targets(rows: list[AccuracyRow]) -> Iterator[tuple[bool, str]]:
    """(passed, description): exact recovers the original accuracy and matches update_bn."""
    for row in rows:
        exact, update = row.recalibrated["exact"], row.recalibrated["update_bn"]
        where = f"{row.variant}, batch {row.batch_size}"
        gap = exact - row.original
        what = f"exact within {ACCURACY_TOLERANCE} points of the original ({gap:+.2f})"
        yield abs(gap) <= ACCURACY_TOLERANCE, f"{where}: {what}"
        yield exact >= update, f"{where}: exact >= update_bn ({exact:.2f} vs {update:.2f})"


def speed_targets(rows: list[SpeedRow]) -> Iterator[tuple[bool, str]]:
    """(passed, description): train-average keeps up with update_bn, exact's passes are cheap."""
    for row in rows:
        speed = row.per_second("train-average") / row.per_second("update_bn")
        what = f"train-average >= {SPEED_FLOOR}x update_bn samples/s ({speed:.2f}x)"
        yield speed >= SPEED_FLOOR, f"batch {row.batch_size}: {what}"
        cost = row.sweep_pass / row.train_average_pass
        what = f"exact's sweep <= {PASS_CEILING}x train-average pass ({cost:.2f}x)"
        yield cost <= PASS_CEILING, f"batch {row.batch_size}: {what}"


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed rounds after one warm-up (default 5)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch.set_num_threads for everything (default: the CPUs this process may use)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[4, 32, 256],
        help="comma-separated calibration batch sizes (default 4,32,256)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_summary(), f"torch threads {torch.get_num_threads()}", sep="\n", flush=True)
    digits = load_digits_split()
    healthy = load_file(SAMPLES / "healthy.safetensors")
    print(f"digits: {len(digits.x_train)} training images (calibration), {len(digits.x_test)} test")
    print("every method gets the same batches, in the same order:")
    for batch_size in args.batch_sizes:
        print(batches_line(digits.x_train, batch_size))
    print(SINGLETON_NOTE)

    print("\nmeasuring accuracy ...", flush=True)
    accuracy_results = accuracy_rows(healthy, digits, args.batch_sizes)
    speed_results = []
    for batch_size in args.batch_sizes:
        print(f"timing batch size {batch_size} ...", flush=True)
        speed_results.append(
            speed_row(model_with(healthy), digits.x_train, batch_size, args.repeat)
        )

    print("\ntest accuracy in eval mode, %, after recalibrating on the training images")
    print_table(accuracy_table(accuracy_results), left=2)
    print("\neval-mode consistency after recalibration: worst layer (and variant) of")
    print("Estimate.consistency, the largest mismatch between stored and eval-mode statistics")
    print_table(consistency_table(accuracy_results, args.batch_sizes))
    print(f"\nspeed: medians of {args.repeat} rounds after a warm-up, whole calls")
    print_table(speed_table(speed_results))
    print("\npasses (bnstat's PassRecords; exact runs with verify=True)")
    print_table(pass_table(speed_results))
    print("\ntargets:")
    targets = [*accuracy_targets(accuracy_results), *speed_targets(speed_results)]
    for passed, line in targets:
        print(f"  {'PASS' if passed else 'FAIL'}  {line}")


if __name__ == "__main__":
    main()
