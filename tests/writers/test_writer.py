"""Writing back: only the BatchNorm buffers (and zip checksums) change, atomically."""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from digits_support import SAMPLES
from safetensors import safe_open

from bnstat.atomic import atomic_output
from bnstat.errors import ModelError, UsageError
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint
from bnstat.writers.checkpoint import write_checkpoint
from bnstat.writers.target import Patch, check_target

STATS = ("running_mean", "running_var", "num_batches_tracked")


def new_values(tensor) -> np.ndarray:
    """Recognisable new statistics: old * 1.5 + 0.25 (counts become 7)."""
    old = tensor.read().astype(np.float64)
    return np.full_like(old, 7.0) if tensor.dtype.name == "int64" else old * 1.5 + 0.25


def patch_all(source: Path, target: Path) -> list[tuple[int, int]]:
    """Patch every BN buffer of `source` into `target`; return the patched byte spans."""
    with open_checkpoint(source) as raw:
        (state,) = [
            s for s in find_state_dicts(raw) if any(k.endswith("running_var") for k in s.tensors)
        ][:1]
        patches = [
            Patch(k, t, new_values(t))
            for k, t in state.tensors.items()
            if k.rsplit(".", 1)[-1] in STATS
        ]
        spans = []
        for patch in patches:
            start, length = patch.tensor.byte_span()
            spans.append((patch.tensor.source.file_offset + start, length))
        write_checkpoint(raw, state, patches, target)
    return spans


def changed_offsets(a: Path, b: Path) -> np.ndarray:
    left, right = np.frombuffer(a.read_bytes(), np.uint8), np.frombuffer(b.read_bytes(), np.uint8)
    assert len(left) == len(right)
    return np.flatnonzero(left != right)


def crc_fields(path: Path) -> set[int]:
    """Byte offsets of every CRC-32 field of a zip: local headers, data descriptors, directory."""
    fields = set()
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            fields.update(range(info.header_offset + 14, info.header_offset + 18))
            name_length, extra_length = struct.unpack(
                "<HH", data[info.header_offset + 26 : info.header_offset + 30]
            )
            end = info.header_offset + 30 + name_length + extra_length + info.compress_size
            descriptor = end + 4 if data[end : end + 4] == b"PK\x07\x08" else end
            fields.update(range(descriptor, descriptor + 4))
    position = data.find(b"PK\x01\x02")
    while position >= 0:
        fields.update(range(position + 16, position + 20))
        position = data.find(b"PK\x01\x02", position + 4)
    return fields


@pytest.mark.parametrize(
    "sample",
    [
        "healthy.pt",
        "healthy.safetensors",
        "legacy.pt",
        "scripted.pt",
        "lightning.ckpt",
        "healthy_bf16.safetensors",
    ],
)
def test_only_batchnorm_bytes_change(sample, tmp_path):
    source = SAMPLES / sample
    target = tmp_path / sample
    spans = patch_all(source, target)
    allowed = {o for start, length in spans for o in range(start, start + length)}
    if zipfile.is_zipfile(source):
        allowed |= crc_fields(source)
        assert zipfile.ZipFile(target).testzip() is None  # every checksum still right
    assert set(changed_offsets(source, target).tolist()) <= allowed
    assert len(changed_offsets(source, target)) > 0


def test_torch_reads_the_new_statistics_and_everything_else_unchanged(tmp_path):
    target = tmp_path / "out.pt"
    patch_all(SAMPLES / "lightning.ckpt", target)
    before = torch.load(SAMPLES / "lightning.ckpt", weights_only=False)
    after = torch.load(target, weights_only=False)
    assert after.keys() == before.keys()
    assert after["hyper_parameters"] == before["hyper_parameters"]
    for key, value in before["state_dict"].items():
        if key.endswith("running_mean") or key.endswith("running_var"):
            torch.testing.assert_close(after["state_dict"][key], value * 1.5 + 0.25)
        elif key.endswith("num_batches_tracked"):
            assert int(after["state_dict"][key]) == 7
        else:
            assert torch.equal(after["state_dict"][key], value), key
        assert after["state_dict"][key].dtype == value.dtype


def test_safetensors_metadata_and_dtypes_are_kept(tmp_path):
    target = tmp_path / "out.safetensors"
    patch_all(SAMPLES / "healthy_fp16.safetensors", target)
    with (
        safe_open(SAMPLES / "healthy_fp16.safetensors", "pt") as old,
        safe_open(target, "pt") as new,
    ):
        assert new.metadata() == old.metadata()
        assert list(new.keys()) == list(old.keys())
        for key in old.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
            assert new.get_tensor(key).dtype == old.get_tensor(key).dtype


def test_conversion_between_formats(tmp_path):
    target = tmp_path / "converted.safetensors"
    patch_all(SAMPLES / "ddp.pt", target)
    with safe_open(target, "pt") as converted:
        keys = set(converted.keys())
        assert "stem.bn.running_var" in keys and not any(k.startswith("module.") for k in keys)
        expected = (
            torch.load(SAMPLES / "healthy.pt", weights_only=True)["stem.bn.running_var"] * 1.5
            + 0.25
        )
        torch.testing.assert_close(converted.get_tensor("stem.bn.running_var"), expected)
    back = tmp_path / "back.pt"
    patch_all(target, back)
    assert "stem.bn.running_var" in torch.load(back, weights_only=True)


def test_input_is_never_touched(tmp_path):
    source = tmp_path / "in.pt"
    shutil.copy2(SAMPLES / "healthy.pt", source)
    before = (source.read_bytes(), source.stat().st_mtime_ns)
    patch_all(source, tmp_path / "out.pt")
    assert (source.read_bytes(), source.stat().st_mtime_ns) == before


def test_overwriting_the_input_needs_in_place(tmp_path):
    source = tmp_path / "in.pt"
    shutil.copy(SAMPLES / "healthy.pt", source)
    with open_checkpoint(source) as raw:
        with pytest.raises(UsageError, match="--in-place"):
            check_target(raw, source, in_place=False)
        with pytest.raises(UsageError, match="--in-place"):
            check_target(raw, tmp_path / "other.pt", in_place=True)
        check_target(raw, source, in_place=True)
        with pytest.raises(UsageError, match="does not exist"):
            check_target(raw, tmp_path / "missing" / "out.pt", in_place=False)


def test_statistics_that_do_not_fit_the_dtype_are_refused(tmp_path):
    with open_checkpoint(SAMPLES / "healthy_fp16.safetensors") as raw:
        (state,) = find_state_dicts(raw)
        tensor = state.tensors["stem.bn.running_var"]
        huge = Patch("stem.bn.running_var", tensor, np.full(tensor.shape, 1e6))
        with pytest.raises(ModelError, match="do not fit"):
            write_checkpoint(raw, state, [huge], tmp_path / "out.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_storage_shared_with_another_tensor_is_refused(tmp_path):
    shared = torch.arange(8, dtype=torch.float32)
    path = tmp_path / "shared.pt"
    torch.save(
        {"bn.running_mean": shared[:4], "bn.running_var": shared[4:] + 1, "other": shared[2:6]},
        path,
    )
    with open_checkpoint(path) as raw:
        (state,) = find_state_dicts(raw)
        tensor = state.tensors["bn.running_mean"]
        with pytest.raises(ModelError, match="shares its storage with other"):
            write_checkpoint(
                raw, state, [Patch("bn.running_mean", tensor, np.zeros(4))], tmp_path / "out.pt"
            )


def test_failed_write_leaves_the_old_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_bytes(b"half of the new fi")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_written_file_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with atomic_output(target) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == 0o640


def with_zip64_only_directory(data: bytes) -> bytes:
    """torch writes a zip64 end record too; blank the classic one so that only it counts."""
    end = data.rfind(b"PK\x05\x06")
    assert data.rfind(b"PK\x06\x07", 0, end) >= 0, "torch writes a zip64 locator"
    classic = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0
    )
    return data[:end] + classic + data[end + len(classic) :]


def test_zip64_central_directory_is_handled(tmp_path):
    """A zip whose directory can only be found through its zip64 end record (as past
    4 GiB or 65535 members) still gets its checksums fixed."""
    source = tmp_path / "zip64.pt"
    torch.save({"bn.running_mean": torch.zeros(3), "bn.running_var": torch.ones(3)}, source)
    rebuilt = tmp_path / "rebuilt.pt"
    rebuilt.write_bytes(with_zip64_only_directory(source.read_bytes()))
    assert zipfile.ZipFile(rebuilt).testzip() is None
    target = tmp_path / "out.pt"
    patch_all(rebuilt, target)
    assert zipfile.ZipFile(target).testzip() is None
    assert torch.load(target, weights_only=True)["bn.running_var"].tolist() == [1.75] * 3
