"""SARIF that uploads cleanly: locations without regions, URIs relative to the directory
bnstat ran in, fingerprints that tell two files' identical findings apart and stay the
same however the file was named, and a log valid against the SARIF 2.1.0 schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from repositories import write_trainer_checkpoint
from zoo import SAMPLES

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "sarif-schema-2.1.0.json").read_text())
DEAD = "bn004_dead_channel.pt"


def _sarif(cli, *arguments: object) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    result = cli("check", *arguments, "--format", "sarif", "--fail-on", "never")
    log: dict[str, Any] = json.loads(result.stdout)
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    return log


def _locations(log: dict[str, Any]) -> list[dict[str, Any]]:
    (run,) = log["runs"]
    places = [place for result in run["results"] for place in result["locations"]]
    notes = run["invocations"][0]["toolExecutionNotifications"]
    places += [place for note in notes for place in note["locations"]]
    return [place["physicalLocation"] for place in places]


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with two copies of one broken checkpoint, and a trainer folder."""
    folder = tmp_path / "work" / "models"
    folder.mkdir(parents=True)
    for name in ("a.pt", "b.pt"):
        shutil.copy(SAMPLES / DEAD, folder / name)
    write_trainer_checkpoint(folder)
    (folder / "broken.pt").write_bytes(b"PK\x03\x04 truncated")
    monkeypatch.chdir(tmp_path / "work")
    return folder


def test_locations_have_no_region_and_uris_relative_to_the_working_directory(cli, models):
    log = _sarif(cli, models.resolve())  # an absolute path inside the working directory
    (run,) = log["runs"]
    assert all(set(place) == {"artifactLocation"} for place in _locations(log))  # no region
    assert '"startLine"' not in json.dumps(log)
    uris = {place["artifactLocation"]["uri"] for place in _locations(log)}
    assert {"models/a.pt", "models/b.pt", "models/broken.pt"} <= uris
    assert "models/checkpoint-500/optimizer.pt" in uris  # a skipped file's note
    assert {place["artifactLocation"]["uriBaseId"] for place in _locations(log)} == {"%SRCROOT%"}
    base = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert base == Path.cwd().as_uri() + "/"


def test_a_file_outside_the_working_directory_keeps_an_absolute_uri(cli, models):
    outside = models.parent.parent / "elsewhere.pt"
    shutil.copy(SAMPLES / DEAD, outside)
    (place,) = {json.dumps(p) for p in _locations(_sarif(cli, outside))}
    assert json.loads(place) == {"artifactLocation": {"uri": outside.resolve().as_uri()}}


def test_fingerprints_tell_files_apart_and_ignore_how_the_file_was_named(cli, models):
    def fingerprints(*arguments: object) -> dict[str, str]:
        (run,) = _sarif(cli, *arguments)["runs"]
        return {
            result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: result[
                "partialFingerprints"
            ]["primaryLocationLineHash"]
            for result in run["results"]
        }

    both = fingerprints("models/a.pt", "models/b.pt")
    assert both["models/a.pt"] != both["models/b.pt"]  # the same finding in two files
    assert fingerprints(models.resolve() / "a.pt") == {"models/a.pt": both["models/a.pt"]}
    assert fingerprints("./models/a.pt") == {"models/a.pt": both["models/a.pt"]}


def test_the_driver_points_nowhere_it_cannot_vouch_for(cli, models):
    (run,) = _sarif(cli, "models/a.pt")["runs"]
    assert "informationUri" not in run["tool"]["driver"]
