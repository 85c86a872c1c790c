"""Plain Python pickles (`pickle.dump`) holding torch tensors: read without torch or code.

torch pickles each storage as `torch.storage._load_from_bytes(stream)`, `stream` being a
legacy `torch.save` of that storage. These tests write such files with the real
`pickle.dump` and check that bnstat gets the tensors torch would, names what
`torch.load(weights_only=True)` refuses, runs nothing, and holds nested streams to the
same bomb limits as any pickle.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from zoo import REPO, Bundle, ManyNorms, StreamCall, trained

from bnstat.analysis import analyze_file
from bnstat.errors import CheckpointError
from bnstat.readers.base import CheckpointFormat
from bnstat.readers.sniff import MAGIC_NUMBER
from bnstat.settings import Settings
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint

LOADER = "torch.storage._load_from_bytes"


@pytest.fixture(scope="module")
def trained_model() -> torch.nn.Module:
    torch.manual_seed(1)
    return trained(ManyNorms())


def dump(obj: object, path: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)
    return path


def tensors_of(path: Path) -> dict[str, np.ndarray]:
    with open_checkpoint(path) as checkpoint:
        assert checkpoint.format is CheckpointFormat.PICKLE
        (state,) = find_state_dicts(checkpoint)
        return {key: ref.read() for key, ref in state.tensors.items()}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_pickled_object_yields_the_tensors_torch_holds(trained_model, tmp_path, protocol):
    path = dump(Bundle(trained_model, "v1"), tmp_path / "bundle.pkl", protocol)
    expected = trained_model.state_dict()
    got = tensors_of(path)
    assert sorted(got) == sorted(expected)
    for key, values in got.items():
        np.testing.assert_array_equal(values, expected[key].numpy(), err_msg=key)


def test_a_pickled_bare_state_dict_is_read(trained_model, tmp_path):
    expected = trained_model.state_dict()
    got = tensors_of(dump(expected, tmp_path / "state.pkl"))
    assert sorted(got) == sorted(expected)
    for key, values in got.items():
        np.testing.assert_array_equal(values, expected[key].numpy(), err_msg=key)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_the_report_names_what_weights_only_refuses(cli, trained_model, tmp_path):
    path = dump(Bundle(trained_model, "v1"), tmp_path / "bundle.pkl")
    (entry,) = analyze_file(path, Settings())
    assert entry.format == "pickle" and len(entry.layers) == 5
    (note,) = [f for f in entry.findings if f.rule == "BN012"]
    assert LOADER in note.message and "zoo.Bundle" in note.message
    assert "weights_only=True" in note.message
    assert not [f for f in entry.findings if f.rule == "BN011"]
    with pytest.raises(pickle.UnpicklingError):  # torch refuses what bnstat reads
        torch.load(path, weights_only=True)


def test_a_bare_state_dict_pickle_names_only_its_loader(trained_model, tmp_path):
    (entry,) = analyze_file(dump(trained_model.state_dict(), tmp_path / "s.pkl"), Settings())
    (note,) = [f for f in entry.findings if f.rule in ("BN011", "BN012")]
    assert note.rule == "BN012" and f"names {LOADER}, outside" in note.message


def test_plain_pickles_are_read_without_torch(trained_model, tmp_path):
    path = dump(trained_model.state_dict(), tmp_path / "state.pkl")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from bnstat.analysis import analyze_file\nfrom bnstat.settings import Settings\n"
        f"(entry,) = analyze_file(__import__('pathlib').Path({str(path)!r}), Settings())\n"
        "print(entry.error, len(entry.layers))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.split() == ["None", "5"]


class Gadget:
    """Would make a folder when unpickled by torch.load(weights_only=False)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.target),)


def legacy_stream(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def test_a_payload_in_a_nested_stream_is_reported_and_never_run(trained_model, tmp_path):
    target = tmp_path / "ran"
    bundle = {
        "state": trained_model.state_dict(),
        "extra": StreamCall(legacy_stream(Gadget(target))),
    }
    (entry,) = analyze_file(dump(bundle, tmp_path / "payload.pkl"), Settings())
    assert not target.exists()
    (alarm,) = [f for f in entry.findings if f.rule == "BN011"]
    assert "mkdir" in alarm.message
    assert len(entry.layers) == 5  # the tensors beside it are still read


def stream_with_root(root_pickle: bytes) -> bytes:
    """A legacy torch stream whose object pickle is `root_pickle` and that has no storage."""
    header = [MAGIC_NUMBER, 1001, {"protocol_version": 1001, "little_endian": True}]
    return (
        b"".join(pickle.dumps(part, protocol=2) for part in header)
        + root_pickle
        + (pickle.dumps([], protocol=2))
    )


def memo_stream(index: int) -> bytes:
    """A stream whose object pickle makes the unpickler grow its memo to 2 * `index`."""
    return stream_with_root(b"\x80\x02N" + b"r" + index.to_bytes(4, "little") + b".")


def test_a_memory_bomb_in_a_nested_stream_is_refused(tmp_path):
    path = dump([StreamCall(memo_stream(2**30))], tmp_path / "bomb.pkl")
    with pytest.raises(CheckpointError, match="memory bomb"):
        analyze_file(path, Settings())


def test_nested_streams_share_one_budget(tmp_path):
    one = memo_stream(2**22)  # a 64 MiB memo: well within the budget of one pickle
    alone = dump([StreamCall(one)], tmp_path / "one.pkl")
    (entry,) = analyze_file(alone, Settings())  # read within the budget: it holds no tensors
    (note,) = [f for f in entry.findings if f.rule == "BN013"]
    assert "it holds no tensors" in note.message
    many = dump([StreamCall(one + bytes([i])) for i in range(8)], tmp_path / "many.pkl")
    with pytest.raises(CheckpointError, match="memory bomb"):
        analyze_file(many, Settings())


def test_a_stream_that_is_not_bytes_is_refused(tmp_path):
    path = dump([StreamCall("text")], tmp_path / "text.pkl")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="not bytes"):
        analyze_file(path, Settings())
