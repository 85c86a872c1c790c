"""Unreadable, truncated, corrupt, empty, wrong-type and malicious inputs.

Each must give one clear line on stderr and exit code 2 (or, for a malicious pickle that
still holds valid tensors, a BN011 error), never a traceback, and no payload may run.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch


def assert_clean_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.stdout
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("bnstat: error:")]
    assert len(errors) == 1, result.stderr
    assert needle.lower() in errors[0].lower(), errors[0]


class Payload:
    """Pickles as a call to `func(*args)`: what a malicious checkpoint does."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def marker_payloads(marker: Path) -> dict[str, Payload]:
    import builtins

    return {
        "os.system": Payload(os.system, f"touch {marker}"),
        "exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "eval": Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("route", ["os.system", "exec", "eval"])
def test_payload_without_tensors_is_refused_and_never_runs(cli, write_pt, tmp_path, route, legacy):
    marker = tmp_path / "ran"
    path = write_pt({"config": marker_payloads(marker)[route]}, legacy=legacy)
    result = cli("inspect", path)
    assert not marker.exists()
    assert_clean_error(result, "refused")
    assert route.split(".")[-1] in result.stderr


@pytest.mark.parametrize("command", ["inspect", "check"])
def test_payload_beside_valid_tensors_is_an_error_finding(
    cli, state_dict, write_pt, tmp_path, command
):
    marker = tmp_path / "ran"
    path = write_pt({"state_dict": state_dict, "hook": marker_payloads(marker)["os.system"]})
    result = cli(command, path, "--format", "json")
    assert not marker.exists()
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["checkpoints"][0]["findings"]
    (bn011,) = [f for f in findings if f["rule"] == "BN011"]
    assert bn011["severity"] == "error" and "posix.system" in bn011["message"]


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bad_inputs(pt: bytes, st: bytes, legacy: bytes) -> dict[str, tuple[bytes, str]]:
    header_len = struct.unpack("<Q", st[:8])[0]
    header = json.loads(st[8 : 8 + header_len])
    first = next(k for k in header if k != "__metadata__")
    past_end = dict(header, **{first: dict(header[first], data_offsets=[0, 10**9])})
    st_past_end = json.dumps(past_end).encode()
    return {
        "empty.pt": (b"", "empty file"),
        "truncated.pt": (_truncated(pt), "zip"),
        "truncated_legacy.pt": (_truncated(legacy), "truncated"),
        "truncated.safetensors": (_truncated(st), "safetensors"),
        "text.pt": (b"just some text, not a model\n" * 3, "not a checkpoint format"),
        "random.bin": (os.urandom(4096), "not a checkpoint format"),
        "model.pt.gz": (gzip.compress(pt), "gzip"),
        "huge_header.safetensors": (struct.pack("<Q", 2**40) + b"{}", "header claims"),
        "bad_json.safetensors": (
            struct.pack("<Q", 5) + b"{nope" + b"\0" * 16,
            "corrupt safetensors header",
        ),
        "past_end.safetensors": (struct.pack("<Q", len(st_past_end)) + st_past_end, "outside"),
    }


def test_every_bad_input_class_is_a_clean_error(cli, state_dict, write_pt, write_st, tmp_path):
    pt = write_pt(state_dict).read_bytes()
    legacy = write_pt(state_dict, name="legacy.pt", legacy=True).read_bytes()
    st = write_st(state_dict).read_bytes()
    for name, (data, needle) in _bad_inputs(pt, st, legacy).items():
        path = tmp_path / name
        path.write_bytes(data)
        assert_clean_error(cli("inspect", path), needle)


def test_zip_that_is_not_a_torch_archive(cli, tmp_path):
    path = tmp_path / "other.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("folder/readme.txt", "hello")
    assert_clean_error(cli("check", path), "data.pkl")


def test_corrupt_pickle_inside_a_valid_zip(cli, state_dict, write_pt, tmp_path):
    source = write_pt(state_dict)
    target = tmp_path / "corrupt_pickle.pt"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, data[:40] if info.filename.endswith("data.pkl") else data)
    assert_clean_error(cli("inspect", target), "corrupt pickle")


def test_missing_file_and_permission(cli, tmp_path, state_dict, write_st):
    assert_clean_error(cli("inspect", tmp_path / "nope.pt"), "no such file")
    locked = write_st(state_dict)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: nothing to test here
            pytest.skip("running as root")
        assert_clean_error(cli("inspect", locked), "permission denied")
    finally:
        locked.chmod(0o644)


def test_one_bad_file_does_not_stop_the_others(cli, state_dict, write_pt, tmp_path):
    good = write_pt(state_dict)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"")
    result = cli("check", bad, good, "--format", "json")
    assert result.exit_code == 2
    entries = json.loads(result.stdout)["checkpoints"]
    assert [e["error"] is None for e in entries] == [False, True]
    assert entries[1]["layers"]


def test_debug_shows_the_traceback(cli, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"")
    result = cli("inspect", bad, "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "CheckpointError: empty" in result.stderr
    assert result.stderr.splitlines()[-1] == "bnstat: error: empty file (0 bytes)"


def test_tensor_whose_storage_is_too_small(cli, write_pt, tmp_path):
    """A torch zip whose BN tensor claims more elements than its storage holds."""
    source = write_pt({"bn.running_mean": torch.zeros(4), "bn.running_var": torch.ones(4)})
    target = tmp_path / "short_storage.pt"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, data[:8] if info.filename.endswith("data/1") else data)
    assert_clean_error(cli("inspect", target), "storage")


def _kinds(*paths: Path) -> list[str]:
    from bnstat.analysis import analyze
    from bnstat.settings import Settings

    report = analyze(list(paths), Settings())
    return [entry.error.kind.value if entry.error else "read" for entry in report.checkpoints]


def test_each_unreadable_checkpoint_says_what_kind_of_problem_it_is(write_pt, tmp_path):
    empty, text, archive = tmp_path / "empty.pt", tmp_path / "notes.pt", tmp_path / "old.pt"
    empty.write_bytes(b"")
    text.write_text("not a checkpoint\n")
    archive.write_bytes(gzip.compress(b"x" * 100))
    unsafe = write_pt({"config": Payload(os.getcwd)}, name="unsafe.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(write_pt({"bn.running_var": torch.ones(4)}).read_bytes()[:300])
    assert _kinds(empty, text, archive, unsafe, truncated, tmp_path / "missing.pt") == [
        "unreadable", "unsupported", "unsupported", "unsafe", "unreadable", "unreadable",
    ]  # fmt: skip
