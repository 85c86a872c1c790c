"""The cache's planner: where values go under small budgets, on a CPU and on a simulated
accelerator, what it refuses, and that every choice gives the statistics of an in-memory
run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from sweep_models import images, small_resnet, with_reset_statistics

from bnstat.execution.planning import BudgetError, Resources, plan_cache
from bnstat.execution.profile import Profile
from bnstat.execution.resources import Budget, Device, Disk, disk
from bnstat.execution.resources import _speeds as measured_speeds
from bnstat.execution.runtimes.eager.runtime import eager_model
from bnstat.execution.schedule import Op, plan
from bnstat.recalibrate.estimator import estimate

CPU = torch.device("cpu")
MB = 2**20
X = 0


def blocks() -> list[Op]:
    """Two residual blocks: the block input is read again after its branch's layers."""
    return [
        Op((), (X,), is_input=True),
        Op((X,), (1,)),  # stem conv
        Op((1,), (2,), layer="stem"),
        Op((2,), (3,)),  # relu: the first block's input
        Op((3,), (4,)),  # conv a
        Op((4,), (5,), layer="a"),
        Op((5,), (6,)),  # conv b
        Op((6,), (7,), layer="b"),
        Op((7, 3), (8,)),  # + the block input
        Op((8,), (9,)),  # conv c
        Op((9,), (10,), layer="c"),
        Op((10, 8), (11,)),
    ]


def profile_of(every_value: float, segment: float) -> Profile:
    base = plan(blocks())
    sizes = {value: every_value for value in base.cached}
    return Profile(sizes, tuple(segment for _ in base.segments), every_value)


def resources(memory: float, disk_free: float, speed: float = 1e9) -> Resources:
    return Resources(Budget(int(memory)), Disk(Path("/scratch"), int(disk_free), (speed, speed)))


def test_what_fits_in_memory_stays_there():
    base = plan(blocks())
    result = plan_cache(base, profile_of(MB, 1e-3), 100, 10, resources(10_000 * MB, 0))
    assert result.written == result.peak_disk == 0 and not result.plan.recomputed
    assert 0 < result.peak_memory <= 10_000 * MB
    assert result.lower_bound == pytest.approx(result.compute_seconds)
    assert result.compute_seconds > 0


def test_the_disk_is_measured_only_by_a_plan_that_uses_it(tmp_path):
    base = plan(blocks())
    measured_speeds.cache_clear()
    fits = Resources(Budget(10_000 * MB), disk(tmp_path))
    plan_cache(base, profile_of(MB, 1e-3), 100, 10, fits)
    assert measured_speeds.cache_info().misses == 0
    spills = Resources(Budget(MB), disk(tmp_path))
    assert plan_cache(base, profile_of(MB, 1e-3), 100, 10, spills).written > 0
    assert measured_speeds.cache_info().misses == 1
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def test_a_small_budget_on_a_fast_disk_spills_what_does_not_fit():
    base = plan(blocks())
    cpu = profile_of(MB, 3e-2)  # a CPU: 30 ms a sample per segment, a disk at 1 GB/s
    result = plan_cache(base, cpu, 100, 10, resources(200 * MB, 10**12))
    reserve = MB * 10  # a batch's working set stays free
    assert result.peak_memory <= 200 * MB - reserve
    assert result.written > 0 and result.read >= result.written
    assert not result.plan.recomputed  # compute costs more than this disk
    assert result.transfer_seconds == pytest.approx(result.written / 1e9 + result.read / 1e9)


def test_on_an_accelerator_with_a_slow_disk_recomputing_is_cheaper():
    base = plan(blocks())
    fast_device = Resources(
        Budget(int(50 * MB)),
        Disk(Path("/scratch"), 10**12, (5e6, 5e6)),  # a slow disk
        Device("cuda:0", int(60 * MB), 1e10),
    )
    result = plan_cache(base, profile_of(MB, 1e-5), 100, 10, fast_device)
    assert result.plan.recomputed  # values remade on the device rather than spilled
    assert result.recompute_seconds > 0
    assert result.peak_device <= 60 * MB


def test_a_plan_that_fits_nowhere_is_refused_with_what_would_fit():
    base = plan(blocks())
    with pytest.raises(BudgetError) as refused:
        plan_cache(base, profile_of(MB, 1e-3), 1000, 10, resources(100 * MB, 50 * MB))
    message = str(refused.value)
    assert "1000 samples" in message and "/scratch" in message
    assert "max_samples" in message and "cache_mb" in message and "TMPDIR" in message
    fits = refused.value.fits
    plan_cache(base, profile_of(MB, 1e-3), fits, 10, resources(100 * MB, 50 * MB))


def sweep_with(model: torch.nn.Module, found: Resources | None) -> object:
    batches = list(images(96).split(16))
    return estimate(eager_model(model, CPU, "arch"), batches, cache_bytes=2**30, resources=found)


@pytest.mark.parametrize("kind", ["spill", "recompute", "device"])
def test_every_placement_gives_the_statistics_of_an_in_memory_run(tmp_path, kind):
    reference = with_reset_statistics(small_resnet())
    chosen = copy.deepcopy(reference)
    sweep_with(reference, None)
    small = Budget(64 * 1024)
    slow_disk = Disk(tmp_path, 10**12, (1e3, 1e3))  # so slow that recomputing always wins
    found = {
        "spill": Resources(small, Disk(tmp_path, 10**12, (1e12, 1e12))),
        "recompute": Resources(small, slow_disk),
        "device": Resources(small, slow_disk, Device("simulated", 128 * 1024, 1e12)),
    }[kind]
    result = sweep_with(chosen, found)
    planned = result.plan  # type: ignore[attr-defined]
    assert planned is not None and planned.samples == 96
    if kind == "spill":
        assert planned.written_bytes > 0 and result.cache.spilled_bytes > 0  # type: ignore[attr-defined]
    else:
        assert planned.recomputed > 0 and "recomputed" in result.strategy  # type: ignore[attr-defined]
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(chosen.state_dict()[name], value, rtol=1e-6, atol=1e-7)
    assert max(result.consistency.values()) < 1e-5  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []  # spill files removed


def test_a_sweep_that_cannot_fit_is_refused_before_any_statistic_changes(tmp_path):
    model = with_reset_statistics(small_resnet())
    before = copy.deepcopy(model.state_dict())
    tiny = Resources(Budget(1024), Disk(tmp_path, 4096, (1e9, 1e9)))
    with pytest.raises(BudgetError, match="TMPDIR"):
        sweep_with(model, tiny)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
