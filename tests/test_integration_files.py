"""The pre-commit hook and the GitHub Action, run the way pre-commit and Actions run them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from repositories import (
    SPLITS_A_LAYER,
    healthy_state_dict,
    write_sharded,
    write_trainer_checkpoint,
)
from zoo import REPO, SAMPLES, onnx_with_nan


@pytest.mark.slow
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
    exported = ["model.onnx", "model.pt2", "weights.bin", "model.safetensors", "model.pkl",
                "state.pickle", "pytorch_model.bin.index.json", "model.safetensors.index.json",
                "config.json", "trainer_state.json", "model.safetensors.json"]  # fmt: skip
    assert [name for name in exported if pattern.search(name)] == exported[:8]
    assert hook["require_serial"] is True  # one run, one report, for all changed files
    # pre-commit runs `entry` with the matching files appended
    clean = subprocess.run(
        [*shlex.split(hook["entry"]), matched[0]], cwd=REPO, capture_output=True, text=True
    )
    broken = subprocess.run(
        [*shlex.split(hook["entry"]), *matched], cwd=REPO, capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr
    assert broken.returncode == 1 and "BN001" in broken.stdout


def _pre_commit(project: Path, home: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`pre-commit try-repo` of this repository's hook over every file of `project`, made a
    git repository first, with pre-commit's environments in `home`."""
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env = {**os.environ, **identity, "GIT_COMMITTER_EMAIL": "t@t", "PRE_COMMIT_HOME": str(home)}
    for command in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(command, cwd=project, check=True, env=env)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "bnstat-check", "--all-files",
         *options],
        cwd=project, capture_output=True, text=True, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_pre_commit_checks_exported_models(tmp_path):
    """A real `pre-commit` run of the hook, installed the way pre-commit installs it, over
    a repository of exported models: ONNX (one keeping its tensors in a `.bin` side file)
    and torch.export `.pt2`."""
    pytest.importorskip("pre_commit")
    onnx = pytest.importorskip("onnx")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(SAMPLES / "digits.pt2", project / "digits.pt2")
    onnx.save(
        onnx.load(str(SAMPLES / "digits.onnx")), str(project / "external.onnx"),
        save_as_external_data=True, location="external.weights.bin", size_threshold=0,
    )  # fmt: skip
    onnx_with_nan(SAMPLES / "digits.onnx", project / "broken.onnx")
    (project / "notes.txt").write_text("not a model\n")
    run = _pre_commit(project, tmp_path / "pre-commit-home")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "3 checkpoints, 21 layers: 1 error" in run.stdout
    assert "broken.onnx" in run.stdout and "BN001" in run.stdout
    assert "unreadable" not in run.stdout  # the side file is read with its model


@pytest.mark.slow
def test_pre_commit_over_a_model_repository(tmp_path):
    """A real `pre-commit` run over a repository as the tools lay it out: a trainer's
    checkpoint folder and `.bin` shards with their index. All files go to one run (one
    report), every shard layer is counted once, the files that hold no model are notes
    (BN013), and nothing blocks the commit."""
    pytest.importorskip("pre_commit")
    project = tmp_path / "project"
    write_trainer_checkpoint(project)
    write_sharded(project / "sharded", healthy_state_dict(), SPLITS_A_LAYER, "bin")
    run = _pre_commit(project, tmp_path / "pre-commit-home", "--verbose")  # shows a pass
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("exit 0:") == 1  # one run, one report
    assert "6 checkpoints, 14 layers" in run.stdout  # the model, the index, 4 side files
    assert "no model to check: it holds a torch optimizer state" in run.stdout


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
