"""Files that hold no model: a trainer's optimizer, scheduler, RNG and arguments files.

In a folder they are skipped and listed with what they hold, in every format, and the
model beside them is checked as usual; named on the command line (pre-commit names the
files that changed) each is reported with a BN013 note saying what it holds. A folder
where every file holds no model is still exit 2, and a pickle that calls code is still
an error wherever it is.
"""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from repositories import write_trainer_checkpoint

from bnstat.formats import InspectFormat

SIDE_FILES = {
    "optimizer.pt": "it holds a torch optimizer state (state, param_groups), no model",
    "scheduler.pt": "it holds no tensors, only a dict (",
    "rng_state.pth": "it holds random number generator states (python, numpy, cpu), no model",
    "training_args.bin": "it holds no tensors, only a pickled repositories.TrainingArguments",
}


@pytest.fixture
def trainer(tmp_path):  # type: ignore[no-untyped-def]
    return write_trainer_checkpoint(tmp_path)


def _json(result) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return json.loads(result.stdout)


def test_a_trainer_folder_checks_its_model_and_lists_the_rest(cli, trainer):
    result = cli("check", trainer, "--format", "json", "--fail-on", "info")
    assert result.exit_code == 0, result.stdout
    report = _json(result)
    (entry,) = report["checkpoints"]
    assert entry["path"].endswith("model.safetensors") and entry["findings"] == []
    reasons = {item["path"].rpartition("/")[2]: item["reason"] for item in report["skipped_files"]}
    assert sorted(reasons) == sorted(SIDE_FILES)
    assert all(reasons[name].startswith(start) for name, start in SIDE_FILES.items()), reasons
    assert report["summary"]["skipped"] == 6  # and trainer_state.json, config.json


@pytest.mark.parametrize("fmt", [fmt.value for fmt in InspectFormat])
def test_every_format_names_the_skipped_files(cli, trainer, fmt):
    result = cli("check", trainer, "--format", fmt)
    assert result.exit_code == 0, result.stdout
    assert all(name in result.stdout for name in SIDE_FILES), result.stdout
    assert "no model" in result.stdout


def test_the_table_says_what_each_skipped_file_holds(cli, trainer, monkeypatch):
    monkeypatch.chdir(trainer)
    lines = cli("check", ".").stdout.splitlines()
    assert f"skipped optimizer.pt: {SIDE_FILES['optimizer.pt']}" in lines
    assert any(
        line.endswith("4 files holding no model and 2 other files skipped") for line in lines
    )


def test_sarif_and_junit_mark_them_as_notes_and_skipped_cases(cli, trainer):
    sarif = _json(cli("check", trainer, "--format", "sarif"))
    (invocation,) = sarif["runs"][0]["invocations"]
    notes = invocation["toolExecutionNotifications"]
    assert invocation["executionSuccessful"] and len(notes) == 4
    assert {note["level"] for note in notes} == {"note"}
    junit = cli("check", trainer, "--format", "junit").stdout
    assert junit.count("<skipped message=") == 4 and 'skipped="4"' in junit


@pytest.mark.parametrize("name", sorted(SIDE_FILES))
def test_a_side_file_named_alone_is_a_bn013_note_not_an_error(cli, trainer, name):
    result = cli("check", trainer / name, "--format", "json")
    assert result.exit_code == 0, result.stdout
    (entry,) = _json(result)["checkpoints"]
    assert entry["error"] is None and entry["layers"] == []
    (note,) = [f for f in entry["findings"] if f["rule"] == "BN013"]
    assert note["message"].startswith(f"no model to check: {SIDE_FILES[name]}")
    assert "--exclude" in note["fix"]


def test_training_arguments_also_get_the_weights_only_note(cli, trainer):
    result = cli("check", trainer / "training_args.bin", "--format", "json")
    (entry,) = _json(result)["checkpoints"]
    rules = {f["rule"]: f["message"] for f in entry["findings"]}
    assert "repositories.TrainingArguments" in rules["BN012"]


def test_a_plain_pickle_of_data_named_alone_is_a_note(cli, tmp_path):
    path = tmp_path / "numbers.pkl"
    path.write_bytes(pickle.dumps({"epoch": 3, "best": 0.9}))
    result = cli("check", path, "--format", "json")
    assert result.exit_code == 0
    ((rule, message),) = [
        (f["rule"], f["message"]) for f in _json(result)["checkpoints"][0]["findings"]
    ]
    assert rule == "BN013" and "only a dict (epoch, best)" in message


def test_a_folder_whose_files_all_hold_no_model_is_exit_2(cli, trainer):
    (trainer / "model.safetensors").unlink()
    result = cli("check", trainer)
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"bnstat: error: no model found in {trainer}: 4 files holding none (")
    assert "--allow-empty" in line
    assert cli("check", trainer, "--allow-empty").exit_code == 0


def test_a_pattern_matching_only_side_files_is_exit_2(cli, trainer):
    result = cli("check", f"{trainer}/*.pt")
    assert result.exit_code == 2
    assert "no model found in" in result.stderr and "optimizer.pt" in result.stderr


class _Payload:
    """Pickles as a call of `os.system` (never made: bnstat does not run it)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("true",)


def test_a_side_file_whose_pickle_calls_code_is_an_error_in_a_folder(cli, trainer):
    torch.save({"lr": 0.1, "hook": _Payload()}, trainer / "scheduler.pt")
    result = cli("check", trainer)
    assert result.exit_code == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("bnstat: error:")]
    assert "scheduler.pt" in line and "system (refused, not run)" in line
