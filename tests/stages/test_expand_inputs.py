"""`stages.expand_inputs`: arguments to the files to read, each sniffed once; and a gate
that cannot pass by accident: no checkpoint found, or no layer selected, is exit 2.

A CI job pointed at the wrong folder, a pattern with a typo or a `--layers` glob that
selects nothing must fail in every output format, with one line saying why;
`--allow-empty` is the explicit way to accept it. A folder scan reads or lists as
unreadable every file that looks like a checkpoint, and counts the others it skips.
"""

from __future__ import annotations

import json
import shutil
import struct

import pytest
from zoo import SAMPLES

from bnstat.formats import InspectFormat

FORMATS = [fmt.value for fmt in InspectFormat]


def assert_one_line_exit_2(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.stdout
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("bnstat: error: ")
    for needle in needles:
        assert needle in line, line


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_folder_is_exit_2_in_every_format(cli, tmp_path, fmt):
    (tmp_path / "models").mkdir()
    output = tmp_path / "report.out"
    result = cli("check", tmp_path / "models", "--format", fmt, "--output", output)
    assert_one_line_exit_2(result, f"no checkpoints found in {tmp_path / 'models'} (empty)")
    assert not output.exists()


def test_a_folder_of_other_files_is_exit_2(cli, tmp_path):
    for name in ("README.md", "config.json", "labels.txt"):
        (tmp_path / name).write_text("{}")
    result = cli("inspect", tmp_path)
    assert_one_line_exit_2(result, "no checkpoints found in", "(3 other files)", "--allow-empty")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_pattern_that_matches_nothing_is_exit_2(cli, tmp_path, fmt):
    result = cli("check", f"{tmp_path}/*.pt", "--format", fmt)
    assert_one_line_exit_2(result, f"no checkpoints found by {tmp_path}/*.pt")


def test_one_empty_argument_among_good_ones_still_fails(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("check", SAMPLES / "healthy.pt", tmp_path / "empty")
    assert_one_line_exit_2(result, "no checkpoints found in")


def test_allow_empty_lets_an_empty_set_pass(cli, tmp_path):
    result = cli("check", tmp_path, "--allow-empty", "--format", "json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert (summary["checkpoints"], summary["layers"]) == (0, 0)


def test_a_pattern_matching_folders_scans_them(cli, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(SAMPLES / "healthy.pt", tmp_path / name / "model.pt")
    report = json.loads(cli("check", f"{tmp_path}/*", "--format", "json").stdout)
    assert [entry["path"] for entry in report["checkpoints"]] == [
        str(tmp_path / name / "model.pt") for name in ("a", "b")
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_layers_matching_no_layer_is_exit_2_with_the_pattern(cli, fmt):
    result = cli("check", SAMPLES / "healthy.pt", "--layers", "nomatch*", "--format", fmt)
    assert_one_line_exit_2(result, "--layers 'nomatch*' matches no layer of the 1 checkpoint")


def test_only_the_glob_that_matches_nothing_is_named(cli):
    result = cli("check", SAMPLES / "healthy.pt", "--layers", "stem*", "--layers", "blok*")
    assert_one_line_exit_2(result, "--layers 'blok*' matches no layer")
    assert "stem" not in result.stderr


def test_allow_empty_accepts_layers_matching_nothing(cli):
    result = cli("check", SAMPLES / "healthy.pt", "--layers", "nomatch*", "--allow-empty")
    assert result.exit_code == 0, result.stderr


def test_a_folder_scan_lists_what_looks_like_a_checkpoint_and_counts_the_rest(cli, tmp_path):
    shutil.copy(SAMPLES / "healthy.pt", tmp_path / "healthy.pt")
    shutil.copy(SAMPLES / "pickled_state_dict.pkl", tmp_path / "weights")  # no extension
    (tmp_path / "future.pkl").write_bytes(b"\x80\x07K\x01.")  # a pickle protocol bnstat lacks
    (tmp_path / "archive.dat").write_bytes(b"PK\x03\x04" + bytes(40))  # a broken zip
    (tmp_path / "blob").write_bytes(struct.pack("<Q", 5) + b"{nope")  # safetensors-shaped
    (tmp_path / "old.pkl").write_bytes(b"(dp0\n.")  # protocol 0: known by its extension
    (tmp_path / "README.md").write_text("models")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    result = cli("check", tmp_path, "--format", "json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    errors = {entry["path"].rsplit("/", 1)[1]: entry["error"] for entry in report["checkpoints"]}
    assert errors == {
        "archive.dat": "corrupt zip archive: BadZipFile: File is not a zip file",
        "blob": errors["blob"],
        "future.pkl": "a pickle of an unknown protocol: not a checkpoint",
        "healthy.pt": None,
        "old.pkl": errors["old.pkl"],
        "weights": None,
    }
    assert "not a checkpoint format bnstat reads" in errors["old.pkl"]
    assert "safetensors" in errors["blob"]
    assert report["summary"]["skipped"] == 3
    table = cli("check", tmp_path).stdout
    assert "4 unreadable; 3 other files skipped" in table


def test_an_onnx_side_file_named_on_its_own_stands_for_its_model(cli, tmp_path):
    """pre-commit names the files that changed: the side file alone, or with its model."""
    onnx = pytest.importorskip("onnx")
    model = tmp_path / "model.onnx"
    onnx.save(
        onnx.load(str(SAMPLES / "digits.onnx")), str(model),
        save_as_external_data=True, location="weights.bin", size_threshold=0,
    )  # fmt: skip
    for args in ([tmp_path / "weights.bin"], [model, tmp_path / "weights.bin"]):
        result = cli("check", *args, "--format", "json")
        assert result.exit_code == 0, result.stderr
        paths = [entry["path"] for entry in json.loads(result.stdout)["checkpoints"]]
        assert paths == [str(model)]


def test_every_file_is_sniffed_once_and_opened_as_it_sniffed(tmp_path, monkeypatch):
    """A folder scan sniffs each file once; opening it then asks the sniffer nothing, but
    for the shards an index names, each opened by its content when the index is read."""
    import bnstat.stages.expand_inputs as expand
    import bnstat.stages.open_checkpoint as opening
    from bnstat.analysis import analyze
    from bnstat.errors import CheckpointError
    from bnstat.readers.sniff import Container, sniff
    from bnstat.settings import Settings

    shutil.copy(SAMPLES / "healthy.pt", tmp_path / "a.pt")
    shutil.copytree(SAMPLES / "sharded", tmp_path / "sharded")
    (tmp_path / "notes.pt").write_text("text")
    (tmp_path / "README.md").write_text("models")
    asked: list[str] = []

    def counted(path):  # type: ignore[no-untyped-def]
        asked.append(path.name)
        return sniff(path)

    monkeypatch.setattr(expand, "sniff", counted)
    monkeypatch.setattr(opening, "sniff", counted)
    inputs = expand.expand_inputs([str(tmp_path), str(tmp_path / "a.pt")])
    assert sorted(asked) == sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    kinds = {item.path.name: item.sniffed for item in inputs.items}
    assert kinds["a.pt"] is Container.ZIP and inputs.skipped == 1
    assert kinds["model.safetensors.index.json"] is Container.SHARD_INDEX
    assert isinstance(kinds["notes.pt"], CheckpointError)
    assert len(inputs.items) == 3  # a.pt named twice, the shards read through their index
    asked.clear()
    report = analyze(inputs.items, Settings())
    assert sorted(asked) == sorted(p.name for p in (tmp_path / "sharded").glob("*.safetensors"))
    assert [entry.error is None for entry in report.checkpoints] == [True, False, True]
