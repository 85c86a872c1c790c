"""The plan of the activation cache at the command line: refused up front when memory and
the temporary folder cannot hold it, and a budget the process keeps to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file
from sweep_models import BENCHMARKS, build_resnet, small_resnet

ARCH = f"{BENCHMARKS / 'resnet_model.py'}:build_resnet"


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB temporary folder (a tmpfs: mounting one needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        pytest.skip("this machine cannot mount a tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def photos(folder: Path, count: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for index in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:04d}.png")
    return folder


def checkpoint(path: Path) -> Path:
    """The small ResNet of the sweep tests (blocks 1 and 2, width 8) as a state dict."""
    model = small_resnet()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def recalibrate(
    tmp_path: Path, data: Path, *extra: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "bnstat", "recalibrate", str(checkpoint(tmp_path / "m.safetensors")),
        "--data", str(data), "--output", str(tmp_path / "out.safetensors"), "--arch", ARCH,
        "--arch-kwargs", json.dumps({"blocks": [1, 2], "width": 8}), "--workers", "0", *extra,
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_a_plan_beyond_memory_and_the_temporary_folder_is_refused_before_any_pass(
    tmp_path: Path, tiny_tmpfs: Path
) -> None:
    data = photos(tmp_path / "photos", 200, 64)
    environment = {**os.environ, "TMPDIR": str(tiny_tmpfs)}
    result = recalibrate(tmp_path, data, "--cache-mb", "0", env=environment)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnstat: error: the exact sweep needs"), lines
    for option in ("--max-samples", "--cache-mb", "TMPDIR", str(tiny_tmpfs), "200 samples"):
        assert option in lines[0]
    assert not (tmp_path / "out.safetensors").exists()
    assert list(tiny_tmpfs.iterdir()) == []


LAUNCHER = (  # a small process starts the run, so its peak RSS is its own, not pytest's
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)\n"
)


@pytest.mark.slow
def test_the_process_stays_within_the_budget_when_the_cache_needs_far_more(tmp_path: Path) -> None:
    """A ResNet with in-place ReLUs on 3,000 images: its cache needs about 1.5 GB and gets
    64 MB; the process stays within the budget, the model and 1 GB."""
    data = photos(tmp_path / "photos", 3000, 64)
    model = build_resnet(blocks=(1, 1), width=32)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.st"))
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-c", LAUNCHER, sys.executable, "-m", "bnstat", "recalibrate",
        str(tmp_path / "w.st"), "--data", str(data), "--output", str(tmp_path / "out.st"),
        "--arch", ARCH, "--arch-kwargs", json.dumps({"blocks": [1, 1], "width": 32}),
        "--workers", "0", "--cache-mb", "64", "--report", str(report), "--format", "json",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    code, peak = (int(word) for word in run.stdout.strip().splitlines()[-1].split())
    assert code == 0, run.stderr
    done = json.loads(report.read_text())
    model_bytes = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    plan = done["plan"]
    print(f"peak RSS {peak / 2**20:.0f} MB", plan, done["cache"])
    # what did not fit went to disk or is remade; which, the measured speeds decide
    assert plan["memory_bytes"] <= plan["budget_bytes"]
    assert plan["written_bytes"] > 0 or plan["recomputed"] > 0
    assert done["cache"]["spilled_bytes"] == pytest.approx(plan["written_bytes"], rel=0.01)
    assert peak <= 64 * 2**20 + model_bytes + 2**30, f"peak RSS {peak / 2**20:.0f} MB"
