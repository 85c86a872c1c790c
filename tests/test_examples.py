"""The files under examples/ run, and a script using the library passes `mypy --strict`
(the package ships `py.typed`, so its functions are typed for the caller)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from zoo import REPO

EXAMPLE = REPO / "examples" / "library.py"


def test_the_library_example_runs_and_prints_what_it_found():
    run = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert "check: 0 findings, passed" in run.stdout
    assert "diagnose: BN014" in run.stdout and "segmented" in run.stdout


@pytest.mark.slow  # builds a wheel
def test_the_wheel_ships_the_typed_marker(tmp_path):
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    run = subprocess.run([*build, "-w", str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    (wheel,) = tmp_path.glob("bnstat-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "bnstat/py.typed" in archive.namelist()


@pytest.mark.slow  # mypy reads torch's annotations: a minute on a cold cache
def test_a_script_using_the_library_passes_mypy_strict(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), str(EXAMPLE)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found in 1 source file" in run.stdout
