"""Scale-out: under torchrun, ranks split the data and all-reduce their sums."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch
from digits_support import ARCH, SAMPLES
from safetensors.torch import load_file


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["exact", "train-average"])
def test_two_processes_give_the_single_process_result(cli, tmp_path, method):
    single, split = tmp_path / "single.safetensors", tmp_path / "split.safetensors"
    common = [
        "--arch",
        ARCH,
        "--data",
        str(SAMPLES / "digits"),
        "--workers",
        "0",
        "--method",
        method,
    ]
    assert (
        cli(
            "recalibrate", SAMPLES / "stats_reset.safetensors", *common, "--output", single
        ).exit_code
        == 0
    )
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    command = ["-m", "bnstat", "recalibrate", str(SAMPLES / "stats_reset.safetensors"), *common]
    run = subprocess.run(
        [*launcher, f"--master_port={free_port()}", *command, "--output", str(split), "-f", "json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count('"schema_version"') == 1  # only the writing process reports
    assert '"processes": 2' in run.stdout
    expected, got = load_file(single), load_file(split)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            assert int(got[key]) == int(value) == 10, key
        elif method == "exact":  # independent of how the data is batched or split
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-7)
        else:  # per-batch averages: the ranks' batches hold other samples, so only sane values
            assert torch.isfinite(got[key]).all(), key
