"""Calibration data as users have it: every image mode and tensor dtype read right or refused.

Real files written by Pillow, numpy, torch and safetensors: 16-bit PNGs and float TIFFs
scaled by their type's fixed range (never per image, never clipped), NaN and infinity
refused with the file and the sample named, tensor subsets drawn with the seed, integer
tensors used as stored with one warning, complex tensors refused, files holding objects
not loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from privileges import unprivileged
from safetensors.torch import save_file

from bnstat.errors import DataError
from bnstat.execution.data import DataOptions, FolderData, tensor_files
from bnstat.execution.data.samples import Normalise, Samples
from bnstat.execution.data.tensor_files import NOT_LOADED

GRAY = DataOptions(channels=1)


def everything(data: FolderData) -> torch.Tensor:
    return torch.cat(list(data))


def write(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


RAMP16 = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000 + 1).astype(np.uint16)
RAMPF = np.linspace(-2.5, 300.0, 16, dtype=np.float32).reshape(4, 4)


# --- images ----------------------------------------------------------------------------


def test_a_16_bit_png_is_scaled_by_65535_not_clipped(tmp_path: Path) -> None:
    write(tmp_path / "a.png", RAMP16)
    with Image.open(tmp_path / "a.png") as image:
        assert image.mode == "I;16"  # Pillow's 16-bit mode, which convert("L") clips
    data = FolderData(tmp_path, DataOptions(channels=1, mean=(0.5,), std=(0.25,)))
    sample = everything(data)[0, 0]
    expected = (torch.from_numpy(RAMP16.astype(np.float32)) / 65535 - 0.5) / 0.25
    torch.testing.assert_close(sample, expected, rtol=0, atol=1e-6)
    assert "(1 I;16) kept as I;16" in data.describe()
    assert "normalised as (x / 65535 - 0.5) / 0.25" in data.describe()


def test_16_bit_images_are_scaled_by_the_type_never_per_image(tmp_path: Path) -> None:
    write(tmp_path / "dark.png", np.full((4, 4), 1000, np.uint16))
    write(tmp_path / "bright.png", np.full((4, 4), 60000, np.uint16))
    data = FolderData(tmp_path, GRAY)
    values = {p.stem: float(s.max()) for p, s in zip(data.files, everything(data), strict=True)}
    assert values == pytest.approx({"dark": 1000 / 65535, "bright": 60000 / 65535})


def test_a_float_tiff_is_taken_as_it_is(tmp_path: Path) -> None:
    write(tmp_path / "a.tif", RAMPF)
    data = FolderData(tmp_path, DataOptions(channels=1, mean=(1.0,), std=(2.0,)))
    torch.testing.assert_close(everything(data)[0, 0], (torch.from_numpy(RAMPF) - 1) / 2)
    assert "(1 F) kept as F" in data.describe()
    assert "(x - 1) / 2, float values taken as they are (not scaled)" in data.describe()


@pytest.mark.parametrize("channels", [3, 4])
def test_one_channel_16_bit_and_float_images_are_repeated_into_rgb(
    tmp_path: Path, channels: int
) -> None:
    write(tmp_path / "a.png", RAMP16)
    write(tmp_path / "b.tif", RAMPF)
    data = FolderData(tmp_path, DataOptions(channels=channels, batch_size=1))
    by_name = {p.name: s for p, s in zip(data.files, list(data), strict=True)}
    gray16 = torch.from_numpy(RAMP16.astype(np.float32)) / 65535
    for name, gray in {"a.png": gray16, "b.tif": torch.from_numpy(RAMPF)}.items():
        sample = by_name[name][0]
        assert sample.shape == (channels, 4, 4)
        for channel in range(3):
            torch.testing.assert_close(sample[channel], gray, rtol=0, atol=1e-6)
        if channels == 4:
            assert bool((sample[3] == 1).all())  # an opaque alpha, at the type's full value
    described = data.describe()
    assert "converted to 16-bit RGB" in described or "converted to 16-bit RGBA" in described
    assert "range 65535 for 16-bit; float values taken as they are" in described


def test_8_and_16_bit_images_meet_in_one_batch_on_one_scale(tmp_path: Path) -> None:
    write(tmp_path / "a.png", np.full((4, 4), 51, np.uint8))
    write(tmp_path / "b.png", np.full((4, 4), 13107, np.uint16))  # 13107 / 65535 = 51 / 255
    data = FolderData(tmp_path, GRAY)
    torch.testing.assert_close(everything(data), torch.full((2, 1, 4, 4), 0.2))
    assert "range 255 for 8-bit, 65535 for 16-bit" in data.describe()


def test_a_16_bit_image_is_resized_in_16_bits(tmp_path: Path) -> None:
    write(tmp_path / "a.png", np.full((8, 8), 40000, np.uint16))
    sample = everything(FolderData(tmp_path, DataOptions(channels=1, image_size=(4, 4))))
    torch.testing.assert_close(sample, torch.full((1, 1, 4, 4), 40000 / 65535))


def test_8_bit_images_are_described_as_before(tmp_path: Path) -> None:
    write(tmp_path / "a.png", np.full((4, 4), 7, np.uint8))
    data = FolderData(tmp_path, GRAY)
    everything(data)
    assert data.describe() == (
        "images (1 L) kept as L, at their own size, normalised as (x / 255 - 0) / 1; "
        "one sample is 1x4x4"
    )
    assert data.warnings == [] and data.unreadable == []


def test_a_32_bit_integer_image_is_refused_in_one_line(tmp_path: Path) -> None:
    write(tmp_path / "a.tif", np.arange(16, dtype=np.int32).reshape(4, 4))
    with pytest.raises(DataError, match=r"a\.tif: a 32-bit integer image \(mode I\) has no fixed"):
        everything(FolderData(tmp_path, GRAY))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_float_image_with_nan_or_inf_is_a_data_error(tmp_path: Path, bad: float) -> None:
    write(tmp_path / "good.tif", RAMPF)
    pixels = RAMPF.copy()
    pixels[2, 1] = bad
    write(tmp_path / "bad.tif", pixels)
    with pytest.raises(DataError, match=r"bad\.tif: the image holds NaN or infinite values"):
        everything(FolderData(tmp_path, GRAY))


def test_a_big_jpeg_is_decoded_reduced_to_the_size_it_is_resized_to(tmp_path: Path) -> None:
    pixels = np.tile(np.linspace(0, 255, 800, dtype=np.uint8), (800, 1))
    write(tmp_path / "a.jpg", pixels)
    data = FolderData(tmp_path, DataOptions(channels=1, resize=90, image_size=(80, 80)))
    sample = everything(data)[0, 0]
    assert sample.shape == (80, 80)
    assert abs(float(sample.mean()) - 0.5) < 0.02  # the same picture, at an eighth


# --- tensor files ----------------------------------------------------------------------


def save(path: Path, array: np.ndarray) -> Path:
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.suffix == ".safetensors":
        save_file({"x": torch.from_numpy(array)}, path)
    else:
        torch.save(torch.from_numpy(array), path)
    return path


SUFFIXES = [".npy", ".pt", ".safetensors"]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(("bad", "said"), [(np.nan, "NaN"), (-np.inf, "an infinite value")])
def test_a_non_finite_sample_is_a_data_error_naming_file_and_index(
    tmp_path: Path, suffix: str, bad: float, said: str
) -> None:
    array = np.ones((10, 3), np.float32)
    array[7, 2] = bad
    save(tmp_path / f"a{suffix}", array)
    with pytest.raises(DataError, match=rf"a\{suffix}: sample 7 holds {said}: non-finite"):
        everything(FolderData(tmp_path, DataOptions(batch_size=4)))


def test_a_non_finite_sample_is_named_by_its_index_in_a_random_subset(tmp_path: Path) -> None:
    array = np.ones((1000, 2), np.float32)
    array[::3] = np.nan  # whatever the subset, it meets one; its first is a multiple of 3
    save(tmp_path / "a.npy", array)
    with pytest.raises(DataError, match=r"a\.npy: sample (\d+) holds NaN") as caught:
        everything(FolderData(tmp_path, DataOptions(max_samples=20, seed=4)))
    assert int(caught.value.args[0].split("sample ")[1].split()[0]) % 3 == 0


def test_max_samples_on_tensor_files_is_a_seeded_random_subset(tmp_path: Path) -> None:
    sorted_by_class = np.repeat(np.arange(10, dtype=np.float32), 100)[:, None]  # 0s, then 1s ...
    save(tmp_path / "a.npy", sorted_by_class[:500])
    save(tmp_path / "b.npy", sorted_by_class[500:])

    def subset(seed: int) -> list[float]:
        return everything(FolderData(tmp_path, DataOptions(max_samples=50, seed=seed)))[
            :, 0
        ].tolist()

    first, again, other = subset(1), subset(1), subset(2)
    assert len(first) == 50 and first == again and sorted(first) != sorted(other)
    assert set(first) == set(range(10))  # every class, not the first 50 samples of one
    shards = [
        everything(FolderData(tmp_path, DataOptions(max_samples=50, seed=1), rank, 2))
        for rank in (0, 1)
    ]
    assert sorted(torch.cat(shards)[:, 0].tolist()) == sorted(first)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_integer_tensors_are_used_unscaled_with_one_warning(tmp_path: Path, suffix: str) -> None:
    save(tmp_path / f"a{suffix}", np.full((3, 2), 200, np.uint8))
    save(tmp_path / f"b{suffix}", np.full((2, 2), 7, np.int16))
    data = FolderData(tmp_path, DataOptions(batch_size=8))
    assert sorted(set(everything(data).flatten().tolist())) == [7.0, 200.0]
    assert len(data.warnings) == 1
    assert "tensor files of int16, uint8 reach the model unscaled" in data.warnings[0]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_float_tensors_raise_no_warning(tmp_path: Path, suffix: str) -> None:
    save(tmp_path / f"a{suffix}", np.full((3, 2), 0.5, np.float16))
    data = FolderData(tmp_path, DataOptions())
    assert everything(data).dtype == torch.float32
    assert data.warnings == [] and data.unreadable == []


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_complex_tensors_are_refused(tmp_path: Path, suffix: str) -> None:
    save(tmp_path / f"a{suffix}", np.ones((3, 2), np.complex64))
    with pytest.raises(DataError, match=rf"a\{suffix}: holds complex numbers \(complex64\)"):
        everything(FolderData(tmp_path, DataOptions()))


def test_an_object_npy_is_not_loaded(tmp_path: Path) -> None:
    save(tmp_path / "good.npy", np.ones((2, 2), np.float32))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    data = FolderData(tmp_path, DataOptions())
    assert everything(data).shape == (2, 2)
    assert [(Path(u.path).name, u.reason) for u in data.unreadable] == [
        ("objects.npy", "holds Python objects, not numbers, and was not loaded")
    ]


class RunsCode:
    """Pickled as a call to os.system: loading it would run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pt_is_not_loaded_and_said_so_in_bnstat_words(tmp_path: Path) -> None:
    data_dir, marker = tmp_path / "data", tmp_path / "ran"
    data_dir.mkdir()
    save(data_dir / "good.pt", np.ones((2, 2), np.float32))
    torch.save({"x": torch.ones(2, 2), "payload": RunsCode(marker)}, data_dir / "evil.pt")
    data = FolderData(data_dir, DataOptions())
    assert everything(data).shape == (2, 2)
    assert [(Path(u.path).name, u.reason) for u in data.unreadable] == [("evil.pt", NOT_LOADED)]
    assert NOT_LOADED == "holds objects other than tensors and was not loaded"
    assert not marker.exists()


def test_a_legacy_pt_is_read_whole(tmp_path: Path) -> None:
    torch.save(
        torch.arange(6.0).view(3, 2), tmp_path / "a.pt", _use_new_zipfile_serialization=False
    )
    torch.testing.assert_close(
        everything(FolderData(tmp_path, DataOptions())), torch.arange(6.0).view(3, 2)
    )


# --- folders ---------------------------------------------------------------------------

LIST_UNREADABLE = """
import json, sys
from pathlib import Path
from bnstat.execution.data import DataOptions, FolderData
data = FolderData(Path(sys.argv[1]), DataOptions(channels=1))
samples = sum(len(batch) for batch in data)
print(json.dumps({"samples": samples, "unreadable": [[u.path, u.reason] for u in data.unreadable]}))
"""


@pytest.mark.parametrize("locked", [True, False], ids=["locked", "open"])
def test_a_folder_that_cannot_be_listed_is_named_with_its_reason(
    tmp_path: Path, locked: bool
) -> None:
    write(tmp_path / "data" / "cats" / "a.png", np.full((4, 4), 9, np.uint8))
    hidden = tmp_path / "data" / "dogs"
    write(hidden / "b.png", np.full((4, 4), 9, np.uint8))
    hidden.chmod(0 if locked else 0o755)
    try:
        done = subprocess.run(
            [sys.executable, "-c", LIST_UNREADABLE, str(tmp_path / "data")],
            capture_output=True, text=True, preexec_fn=unprivileged, check=True,
        )  # fmt: skip
    finally:
        hidden.chmod(0o755)
    result = json.loads(done.stdout)
    if locked:
        assert result == {
            "samples": 1,
            "unreadable": [[str(hidden), "folder not searched: permission denied"]],
        }
    else:
        assert result == {"samples": 2, "unreadable": []}


# --- library warnings ------------------------------------------------------------------


def test_an_image_over_pillows_warning_size_is_decoded_without_its_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # warn over 1000, refuse over 2000
    write(tmp_path / "big.png", np.full((40, 40), 9, np.uint8))  # 1600 pixels
    write(tmp_path / "bomb.png", np.full((50, 50), 9, np.uint8))  # 2500 pixels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = FolderData(tmp_path, GRAY)
        assert everything(data).shape == (1, 1, 40, 40)
    assert [str(w.message) for w in caught] == []
    assert [(Path(u.path).name, u.reason) for u in data.unreadable] == [
        (
            "bomb.png",
            "more pixels than the 2000 Pillow decodes (a decompression-bomb guard): not decoded",
        )
    ]


# --- memory of mapped files ------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_mapped_pages_held_stay_bounded_and_the_values_right(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tensor_files, "RENEW_BYTES", 2000)  # mapped anew past 2000 bytes
    array = np.arange(200 * 64, dtype=np.float32).reshape(200, 64)  # 256 bytes a sample
    save(tmp_path / f"a{suffix}", array)
    data = FolderData(tmp_path, DataOptions(batch_size=4, cache_bytes=0))
    held = []
    batches = []
    for batch in data:
        held.append(data.mapped_bytes)
        batches.append(batch)
    torch.testing.assert_close(torch.cat(batches), torch.from_numpy(array))
    assert max(held) <= 2000 + 4 * 256
    assert data.mapped_bytes == 0  # files closed after the pass
    if suffix == ".npy":
        assert max(held) == 0  # its pages go back after every read


def test_a_legacy_pt_counts_as_held_while_a_pass_reads_it(tmp_path: Path) -> None:
    torch.save(torch.ones(10, 8), tmp_path / "a.pt", _use_new_zipfile_serialization=False)
    data = FolderData(tmp_path, DataOptions(batch_size=4, cache_bytes=0))
    held = [data.mapped_bytes for _ in data]
    assert held[0] == 10 * 8 * 4 and data.mapped_bytes == 0  # read whole; let go after the pass


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float16, torch.int64])
def test_held_samples_become_float32_on_another_device(dtype: torch.dtype) -> None:
    values = torch.tensor([0, 1, 2, 3], dtype=torch.int32).to(dtype).view(4, 1, 1, 1)
    for device in ("cpu", "meta"):  # meta: a device that is not the CPU, on any machine
        batch = Normalise(torch.device(device), (0.5,), (0.25,))(Samples(values, 255.0))
        assert (batch.dtype, batch.device.type) == (torch.float32, device)
        assert batch.shape == (4, 1, 1, 1)
    on_cpu = Normalise(torch.device("cpu"), (0.5,), (0.25,))(Samples(values, 255.0))
    torch.testing.assert_close(on_cpu.flatten(), (torch.arange(4.0) / 255 - 0.5) / 0.25)
