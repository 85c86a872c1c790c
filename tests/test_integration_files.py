"""The pre-commit hook and the GitHub Action, run the way pre-commit and Actions run them."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from zoo import REPO, SAMPLES


def test_pre_commit_hook_runs_on_matching_changed_files(tmp_path):
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "bnstat-check" and hook["language"] == "python"
    pattern = re.compile(hook["files"])
    changed = [
        "README.md",
        "sample_checkpoints/healthy.pt",
        "sample_checkpoints/bn001_non_finite.pt",
    ]
    matched = [name for name in changed if pattern.search(name)]
    assert matched == changed[1:]
    # pre-commit runs `entry` with the matching files appended
    clean = subprocess.run(
        [*shlex.split(hook["entry"]), matched[0]], cwd=REPO, capture_output=True, text=True
    )
    broken = subprocess.run(
        [*shlex.split(hook["entry"]), *matched], cwd=REPO, capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr
    assert broken.returncode == 1 and "BN001" in broken.stdout


def _action_script(inputs: dict[str, str]) -> str:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "check"]
    defaults = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    values = {**defaults, **inputs}
    return re.sub(r"\$\{\{ inputs\.([\w-]+) \}\}", lambda m: values[m.group(1)], step["run"])


def test_github_action_check_step(tmp_path):
    outputs = tmp_path / "github_output"
    sarif = tmp_path / "bnstat.sarif"
    script = _action_script(
        {"paths": f"{SAMPLES / 'bn004_dead_channel.pt'} {SAMPLES / 'healthy.pt'}",
         "fail-on": "warning", "sarif-file": str(sarif)}
    )  # fmt: skip
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # bnstat from this environment
    run = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"GITHUB_OUTPUT": str(outputs), "PATH": path},
    )
    assert run.returncode == 0, run.stderr
    assert outputs.read_text().strip() == "exit-code=1"
    assert "::warning file=" in run.stdout and "BN004" in run.stdout
    assert json.loads(sarif.read_text())["runs"][0]["results"][0]["ruleId"] == "BN004"
