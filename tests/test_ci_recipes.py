"""The CI recipes of the README and action.yml, run as written in fresh environments.

bnstat is not served by a package registry, so the recipes install it from this
repository. These tests take the commands out of README.md and action.yml, put this
repository's URL and commit (or folder) in place of the placeholders, and run them in a
new virtual environment, then run the recipe's checks with the `bnstat` installed there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from zoo import REPO, SAMPLES, onnx_with_nan

MODELS = ("healthy.pt", "digits.onnx", "bn004_dead_channel.pt")


def fresh_venv(folder: Path) -> dict[str, str]:
    """A new virtual environment; the environment variables that put it first on PATH."""
    # with the current pip, as CI runners have (the one Python bundles may be older)
    subprocess.run([sys.executable, "-m", "venv", "--upgrade-deps", str(folder)], check=True)
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    return env | {"PATH": f"{folder / 'bin'}:/usr/bin:/bin", "VIRTUAL_ENV": str(folder)}


def models_folder(where: Path, names: tuple[str, ...] = MODELS) -> Path:
    models = where / "models"
    models.mkdir()
    for name in names:
        shutil.copy(SAMPLES / name, models / name)
    return models


def readme_recipe() -> list[str]:
    """The command lines of the README's 'by hand, in any CI' block."""
    text = (REPO / "README.md").read_text()
    block = text.split("Or by hand, in any CI:", 1)[1].split("```bash\n", 1)[1].split("```")[0]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def bash(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_the_readme_ci_recipe_installs_from_this_repository_and_runs(tmp_path):
    pytest.importorskip("onnx")  # the recipe's models include an ONNX export
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if commit.returncode != 0:
        pytest.skip("not a git checkout: the recipe installs a commit of the repository")
    install, *checks = readme_recipe()
    url = "https://github.com/<owner>/bnstat@<tag>"
    assert url in install
    install = install.replace(url, f"file://{REPO}@{commit.stdout.strip()}")
    env = fresh_venv(tmp_path / "venv")
    installed = bash(f"python -m {install}", tmp_path, env)  # `pip` of the new environment
    assert installed.returncode == 0, installed.stderr
    models_folder(tmp_path)
    assert [bash(line, tmp_path, env).returncode for line in checks] == [0, 0, 0]
    sarif = json.loads((tmp_path / "bnstat.sarif").read_text())
    located = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
               for r in sarif["runs"][0]["results"]}  # fmt: skip
    assert located == {"models/bn004_dead_channel.pt"}
    junit = (tmp_path / "bnstat-junit.xml").read_text()
    assert 'name="models/digits.onnx"' in junit  # the onnx extra read the export
    torch = bash("python -c 'import torch'", tmp_path, env)
    assert torch.returncode != 0  # no torch needed


def action_step(step_id: str, inputs: dict[str, str]) -> str:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == step_id]
    values = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    values |= inputs
    script = step["run"].replace("${{ github.action_path }}", str(REPO))
    return re.sub(r"\$\{\{ inputs\.([\w-]+) \}\}", lambda m: values[m.group(1)], script)


@pytest.mark.slow
def test_the_action_installs_its_default_extras(tmp_path):
    pytest.importorskip("onnx")  # to write the broken export
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["inputs"]["extras"]["default"] == "onnx"
    (setup,) = [
        s for s in action["runs"]["steps"] if s.get("uses", "").startswith("actions/setup-python")
    ]
    assert setup["with"]["python-version"] == "${{ inputs.python-version }}"
    env = fresh_venv(tmp_path / "venv")
    installed = bash(action_step("install", {}), tmp_path, env)
    assert installed.returncode == 0, installed.stderr
    models = models_folder(tmp_path, ("healthy.pt",))
    onnx_with_nan(SAMPLES / "digits.onnx", models / "broken.onnx")
    env["GITHUB_OUTPUT"] = str(tmp_path / "github_output")
    checked = bash(action_step("check", {"paths": "models"}), tmp_path, env)
    assert checked.returncode == 0, checked.stderr
    # the ONNX model was read (exit 2 without onnx) and its NaN found
    assert (tmp_path / "github_output").read_text().strip() == "exit-code=1"
    (result,) = json.loads((tmp_path / "bnstat.sarif").read_text())["runs"][0]["results"]
    assert result["ruleId"] == "BN001"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "models/broken.onnx"
    )


def test_the_recalibrate_install_gets_the_cpu_build_of_torch_first():
    text = (REPO / "README.md").read_text()
    block = text.split("## Recalibrate", 1)[1].split("```bash\n", 1)[1].split("```")[0]
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    assert lines[:2] == [
        "pip install torch --index-url https://download.pytorch.org/whl/cpu",
        'pip install ".[torch]"',
    ]
