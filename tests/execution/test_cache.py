"""The activation cache: bounded memory, spilling to disk, and no file left behind."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch
from digits_support import InMemory
from safetensors.torch import save_file
from sweep_models import BENCHMARKS, images, small_resnet, with_reset_statistics

from bnstat.execution.cache import ActivationCache
from bnstat.execution.runtimes.eager.runtime import eager_model
from bnstat.recalibrate.estimator import estimate

CPU = torch.device("cpu")


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Temporary folders of this process go to an empty folder the test can watch."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_values_over_the_budget_go_to_disk_and_come_back_identical(private_tmp):
    values = [torch.randn(4, 3, 5, 5) for _ in range(6)]
    with ActivationCache(budget=3 * values[0].nbytes) as cache:
        for index, value in enumerate(values):
            cache.put(7, index, value)
        cache.put(8, 0, (3, "not a tensor"))
        assert cache.use.spilled_bytes == 3 * values[0].nbytes
        assert cache.use.peak_bytes == 6 * values[0].nbytes
        assert len(list(private_tmp.iterdir())) == 1
        for index, value in enumerate(values):
            assert torch.equal(cache.get(7, index), value)
        assert cache.get(8, 0) == (3, "not a tensor")
        cache.release((7,), batches=6)
        assert not any(private_tmp.rglob("*.bin"))
    assert list(private_tmp.iterdir()) == []


def test_pinned_values_stay_in_memory_as_the_same_objects(private_tmp):
    value = torch.zeros(10)
    with ActivationCache(budget=0, pinned=frozenset({1})) as cache:
        cache.put(1, 0, value)
        value += 1  # an in-place change after caching is seen by later readers
        assert cache.get(1, 0) is value and cache.use.spilled_bytes == 0


def test_a_spilling_sweep_gives_the_statistics_of_one_in_memory(private_tmp):
    model = with_reset_statistics(small_resnet())
    data = images()
    results = {}
    for budget in (2**30, 0):
        copied = copy.deepcopy(model)
        result = estimate(eager_model(copied, CPU, "arch"), InMemory(data, 16), cache_bytes=budget)
        results[budget] = (copied.state_dict(), result.cache)
    (in_memory, memory_use), (spilled, disk_use) = results[2**30], results[0]
    assert memory_use.spilled_bytes == 0 and disk_use.spilled_bytes >= disk_use.peak_bytes > 0
    for name, value in in_memory.items():
        torch.testing.assert_close(spilled[name], value, rtol=1e-6, atol=1e-7, msg=name)
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_leaves_no_spilled_files(tmp_path, sent):
    model = small_resnet()
    checkpoint = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "images.npy", images(count=2048, size=32).numpy())
    spill = tmp_path / "tmp"
    spill.mkdir()
    arch = f"{BENCHMARKS / 'resnet_model.py'}:build_resnet"
    command = [
        sys.executable, "-m", "bnstat", "recalibrate", str(checkpoint), "--data", str(data),
        "--output", str(tmp_path / "out.safetensors"), "--arch", arch,
        "--arch-kwargs", json.dumps({"blocks": [1, 2], "width": 8}),
        "--cache-mb", "0", "--batch-size", "4", "--workers", "0",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env={"TMPDIR": str(spill), "PATH": ""}, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not any(spill.glob("bnstat-cache-*/*.bin")) and process.poll() is None:
        assert time.monotonic() < deadline, "the cache never spilled"
        time.sleep(0.02)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == (130 if sent == signal.SIGINT else 143), stderr
    assert "Traceback" not in stderr
    assert list(spill.iterdir()) == []
    assert not (tmp_path / "out.safetensors").exists()
