"""`--exclude GLOB` and `exclude` in `[tool.bnstat]`: side files the user knows are not
models, matched relative to the folder or pattern they are found through."""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePath

import pytest
from zoo import SAMPLES

from bnstat.stages.exclude import Exclusion, relative_to_pattern


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """models/ with a good checkpoint, a run folder holding a broken file, and a file
    that looks like a checkpoint but is not."""
    models = tmp_path / "models"
    (models / "runs" / "0").mkdir(parents=True)
    shutil.copy(SAMPLES / "healthy.pt", models / "healthy.pt")
    shutil.copy(SAMPLES / "healthy.pt", models / "runs" / "0" / "last.pt")
    (models / "runs" / "0" / "events.bin").write_bytes(b"\x00 not a model")
    (models / "notes.pt").write_text("see README")
    monkeypatch.chdir(tmp_path)
    return models


def _paths(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [entry["path"] for entry in json.loads(result.stdout)["checkpoints"]]


def test_without_exclude_every_file_that_looks_like_a_checkpoint_is_read(cli, folder):
    result = cli("check", "models", "--format", "json")
    assert result.exit_code == 2  # notes.pt and events.bin cannot be read
    assert len(_paths(result)) == 4


def test_excluded_files_and_folders_are_left_out(cli, folder):
    result = cli("check", "models", "--exclude", "runs", "--exclude", "notes.pt", "-f", "json")
    assert result.exit_code == 0, result.stdout
    assert _paths(result) == ["models/healthy.pt"]
    assert json.loads(result.stdout)["summary"]["skipped"] == 1  # notes.pt; runs/ not searched


def test_a_glob_with_a_slash_matches_the_path_relative_to_the_folder(cli, folder):
    result = cli("check", "models", "--exclude", "runs/*/*.bin", "--exclude", "*.pt", "-f", "json")
    assert result.exit_code == 2  # every .pt excluded; events.bin too: nothing left
    assert "no checkpoints found in models (4 excluded)" in result.stderr
    kept = cli("check", "models", "--exclude", "runs/0/events.bin", "--exclude", "notes.pt")
    assert kept.exit_code == 0


def test_patterns_match_relative_to_their_fixed_part(cli, folder):
    result = cli("check", "models/*.pt", "--exclude", "notes.pt", "--format", "json")
    assert result.exit_code == 0 and _paths(result) == ["models/healthy.pt"]


def test_the_settings_file_and_the_flags_add_up(cli, folder, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.bnstat]\nexclude = ["runs"]\n')
    result = cli("check", "models", "--format", "json")
    assert result.exit_code == 2 and len(_paths(result)) == 2  # healthy.pt, notes.pt
    result = cli("check", "models", "--exclude", "notes.pt", "--format", "json")
    assert result.exit_code == 0 and _paths(result) == ["models/healthy.pt"]


def test_a_named_file_that_is_excluded_is_nothing_to_do(cli, folder):
    """pre-commit names the files that changed; an excluded one must not block it."""
    result = cli("check", "models/notes.pt", "--exclude", "notes.pt", "--format", "json")
    assert result.exit_code == 0 and _paths(result) == []


@pytest.mark.parametrize("value", ["3", "[1, 2]", '[""]'])
def test_a_bad_exclude_setting_is_one_clear_error(cli, folder, tmp_path, value):
    (tmp_path / "pyproject.toml").write_text(f"[tool.bnstat]\nexclude = {value}\n")
    result = cli("check", "models")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert "exclude must be a list of glob patterns" in line


@pytest.mark.parametrize(
    ("path", "glob", "excluded"),
    [
        ("optimizer.pt", "optimizer.pt", True),
        ("checkpoint-500/optimizer.pt", "optimizer.pt", True),  # a name, in any folder
        ("checkpoint-500/optimizer.pt", "*/optimizer.pt", True),
        ("runs/0/last.pt", "runs", True),  # a folder name
        ("runs/0/last.pt", "runs/*", True),  # * crosses /
        ("model.pt", "*.bin", False),
        ("a/model.pt", "b/*", False),
    ],
)
def test_which_paths_a_glob_excludes(path, glob, excluded):
    assert Exclusion([glob])(PurePath(path)) is excluded


def test_a_pattern_match_is_relative_to_the_pattern_folder():
    assert relative_to_pattern("models/a/b.pt", "models/*/b.pt") == PurePath("a/b.pt")
    assert relative_to_pattern("b.pt", "*.pt") == PurePath("b.pt")
