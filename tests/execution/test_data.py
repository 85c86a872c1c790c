"""Calibration data: real image and tensor files written to disk, decoded and batched."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence, features
from safetensors.torch import load_file, save_file

from bnstat.errors import ArgumentError, DataError
from bnstat.execution.data import (
    DataOptions,
    FolderData,
    parse_floats,
    parse_image_size,
)
from bnstat.execution.loop import DataLoop, merge_last_singleton


def write_image(path: Path, value: int | tuple[int, ...], size: tuple[int, int] = (4, 4)) -> Path:
    """A solid image of `size` (H, W); the mode follows the value (int = L, 3 = RGB, 4 = RGBA)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if isinstance(value, int) else {3: "RGB", 4: "RGBA"}[len(value)]
    Image.new(mode, (size[1], size[0]), value).save(path, lossless=True)  # lossless: webp
    return path


def write_array(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def collect(data: FolderData, merge_singleton: bool = False) -> list[torch.Tensor]:
    return list(merge_last_singleton(data) if merge_singleton else data)


def everything(data: FolderData) -> torch.Tensor:
    return torch.cat(collect(data))


def gray_values(data: FolderData) -> list[int]:
    """The gray level of each (solid, one-channel) sample, in delivery order."""
    return [round(float(v) * 255) for v in everything(data)[:, 0, 0, 0]]


def gray_folder(root: Path, count: int) -> Path:
    for value in range(count):
        write_image(root / f"img{value:03d}.png", value)
    return root


GRAY = DataOptions(channels=1)


# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [("224", (224, 224)), ("32x48", (32, 48))])
def test_parse_image_size(text: str, size: tuple[int, int]) -> None:
    assert parse_image_size(text) == size


@pytest.mark.parametrize("text", ["", "x", "0", "32x", "3x4x5", "-2", "big"])
def test_parse_image_size_rejects_junk(text: str) -> None:
    with pytest.raises(DataError, match="image size"):
        parse_image_size(text)


def test_parse_floats() -> None:
    assert parse_floats("0.485,0.456,0.406") == (0.485, 0.456, 0.406)
    assert parse_floats("1") == (1.0,)


@pytest.mark.parametrize("text", ["", "0.5,", "a,b", "nan"])
def test_parse_floats_rejects_junk(text: str) -> None:
    with pytest.raises(DataError, match="number list"):
        parse_floats(text)


# --- discovery -------------------------------------------------------------------------


def test_nested_class_folders_are_found_and_other_files_ignored(tmp_path: Path) -> None:
    write_image(tmp_path / "cat" / "a.png", 10)
    write_image(tmp_path / "dog" / "deep" / "b.PNG", 20)
    write_image(tmp_path / ".hidden" / "c.png", 30)
    write_image(tmp_path / "dog" / ".d.png", 40)
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    data = FolderData(tmp_path, GRAY)
    assert data.kind == "images"
    assert sorted(path.name for path in data.files) == ["a.png", "b.PNG"]
    assert sorted(gray_values(data)) == [10, 20]


def test_every_image_extension(tmp_path: Path) -> None:
    lossless = ["png", "bmp", "tif", "tiff", "gif"] + (["webp"] if features.check("webp") else [])
    for extension in lossless:
        write_image(tmp_path / f"img.{extension}", (200, 100, 50), (3, 5))
    for extension in ["jpg", "JPEG"]:
        write_image(tmp_path / f"img.{extension}", (200, 100, 50), (3, 5))
    data = FolderData(tmp_path, DataOptions())
    assert len(data.files) == len(lossless) + 2
    batch = everything(data)
    assert batch.shape == (len(lossless) + 2, 3, 3, 5)
    expected = torch.tensor([200, 100, 50]).view(3, 1, 1) / 255
    for sample, path in zip(batch, data.files, strict=True):
        tolerance = 3 / 255 if path.suffix.lower() in {".jpg", ".jpeg"} else 1e-6
        torch.testing.assert_close(sample, expected.expand(3, 3, 5), atol=tolerance, rtol=0)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow without webp")
def test_lossless_webp_pixels(tmp_path: Path) -> None:
    pixels = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3) * 7
    Image.fromarray(pixels).save(tmp_path / "a.webp", lossless=True)
    sample = everything(FolderData(tmp_path, DataOptions()))[0]
    torch.testing.assert_close(sample, torch.from_numpy(pixels).permute(2, 0, 1) / 255)


def test_gif_uses_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("L", (4, 4), 60), Image.new("L", (4, 4), 180)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "anim.gif") as gif:
        assert len(list(ImageSequence.Iterator(gif))) == 2
    assert gray_values(FolderData(tmp_path, GRAY)) == [60]


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        FolderData(tmp_path / "missing", DataOptions())
    with pytest.raises(DataError, match="no calibration files"):
        FolderData(tmp_path, DataOptions())
    (tmp_path / "notes.txt").write_text("no data here")
    with pytest.raises(DataError, match="no calibration files"):
        FolderData(tmp_path, DataOptions())


def test_images_and_tensor_files_do_not_mix(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 1)
    np.save(tmp_path / "b.npy", np.zeros((1, 3)))
    with pytest.raises(DataError, match="mixes 1 images and 1 tensor files"):
        FolderData(tmp_path, DataOptions())


def test_symlink_loop_terminates(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_image(root / "sub" / "a.png", 5)
    os.symlink(root, root / "sub" / "loop")
    os.symlink(root / "sub", root / "alias")
    os.symlink(root / "self", root / "self")
    assert [path.name for path in FolderData(root, GRAY).files] == ["a.png"]


# --- pixels and geometry ---------------------------------------------------------------

RGBA = np.array([[[10, 20, 30, 40], [250, 128, 0, 255]]], dtype=np.uint8)  # H=1, W=2


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channel_conversion_and_normalisation(tmp_path: Path, channels: int) -> None:
    write_array(tmp_path / "a.png", RGBA)
    mean, std = (0.5, 0.25, 0.125, 0.0)[:channels], (0.5, 2.0, 4.0, 1.0)[:channels]
    options = DataOptions(channels=channels, mean=mean, std=std)
    sample = everything(FolderData(tmp_path, options))[0]
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    converted = np.asarray(Image.fromarray(RGBA).convert(mode), dtype=np.float32)
    scaled = converted.reshape(1, 2, channels).transpose(2, 0, 1) / 255
    view = (channels, 1, 1)
    expected = (scaled - np.reshape(mean, view)) / np.reshape(std, view)
    torch.testing.assert_close(sample, torch.from_numpy(expected.astype(np.float32)))


def test_gray_image_to_rgb_repeats_the_level_and_one_mean_broadcasts(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 51)
    sample = everything(FolderData(tmp_path, DataOptions(mean=(0.1,), std=(0.5,))))[0]
    torch.testing.assert_close(sample, torch.full((3, 4, 4), (0.2 - 0.1) / 0.5))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DataOptions(channels=2), "channels must be 1, 3 or 4, not 2"),
        (DataOptions(resize=0), "resize must be positive"),
        (DataOptions(image_size=(4, 0)), "image_size must be positive"),
        (DataOptions(std=(1.0, 0.0, 1.0)), "std must not contain 0"),
        (DataOptions(batch_size=0), "batch_size must be at least 1"),
        (DataOptions(max_samples=0), "max_samples must be at least 1"),
        (DataOptions(workers=-1), "workers must not be negative"),
    ],
)
def test_invalid_options_name_the_argument(
    tmp_path: Path, options: DataOptions, message: str
) -> None:
    write_image(tmp_path / "a.png", 1)
    with pytest.raises(ArgumentError, match=f"^{message}$"):
        FolderData(tmp_path, options)


def test_mean_and_std_lengths_must_match_channels(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 1)
    with pytest.raises(ArgumentError, match=r"^mean needs 1 or 3 values$"):
        FolderData(tmp_path, DataOptions(mean=(0.5, 0.5)))
    with pytest.raises(ArgumentError, match=r"^std needs 1 value$"):
        FolderData(tmp_path, DataOptions(channels=1, std=(0.5, 0.5, 0.5)))


def test_resize_then_center_crop_on_a_wide_image(tmp_path: Path) -> None:
    columns = np.tile(np.arange(8, dtype=np.uint8) * 10, (4, 1))  # H=4, W=8, value = 10 * column
    write_array(tmp_path / "wide.png", columns)
    options = DataOptions(channels=1, resize=4, image_size=(4, 4))
    sample = everything(FolderData(tmp_path, options))[0, 0]
    torch.testing.assert_close(sample, torch.tensor([20.0, 30, 40, 50]).expand(4, 4) / 255)


def test_resize_keeps_aspect_ratio_then_crops(tmp_path: Path) -> None:
    write_image(tmp_path / "tall.png", 90, (20, 10))
    write_image(tmp_path / "wide.png", 90, (10, 30))
    both = FolderData(tmp_path, DataOptions(channels=1, resize=5, image_size=(3, 4)))
    assert everything(both).shape == (2, 1, 3, 4)
    write_image(tmp_path / "wide.png", 90, (10, 20))  # now both give 5 x 10 / 10 x 5
    with pytest.raises(DataError, match="--image-size"):
        collect(FolderData(tmp_path, DataOptions(channels=1, resize=5)))
    (tmp_path / "wide.png").unlink()
    only_tall = everything(FolderData(tmp_path, DataOptions(channels=1, resize=5)))
    assert only_tall.shape == (1, 1, 10, 5)
    torch.testing.assert_close(only_tall, torch.full((1, 1, 10, 5), 90 / 255))


def test_image_size_alone_resizes_directly(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (30, 60, 90), (10, 10))
    write_image(tmp_path / "b.png", (30, 60, 90), (6, 17))
    batch = everything(FolderData(tmp_path, DataOptions(image_size=(5, 7))))
    assert batch.shape == (2, 3, 5, 7)
    expected = (torch.tensor([30.0, 60, 90]) / 255).view(1, 3, 1, 1).expand(2, 3, 5, 7)
    torch.testing.assert_close(batch, expected)


def test_different_sizes_need_image_size(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 1, (4, 4))
    write_image(tmp_path / "b.png", 1, (4, 6))
    with pytest.raises(DataError, match=r"a.png is 4x4, .*b.png is 4x6; pass --image-size"):
        collect(FolderData(tmp_path, DataOptions(batch_size=1)))
    with pytest.raises(DataError, match="pass --image-size"):
        collect(FolderData(tmp_path, DataOptions(batch_size=2)))


# --- selection -------------------------------------------------------------------------


def test_max_samples_and_seed_are_deterministic(tmp_path: Path) -> None:
    gray_folder(tmp_path, 12)
    first = FolderData(tmp_path, DataOptions(channels=1, max_samples=5, seed=1))
    again = FolderData(tmp_path, DataOptions(channels=1, max_samples=5, seed=1))
    other = FolderData(tmp_path, DataOptions(channels=1, max_samples=5, seed=2))
    assert len(first.files) == 5
    assert first.files == again.files != other.files
    assert gray_values(first) == gray_values(again) == [int(p.stem[3:]) for p in first.files]
    assert len(gray_values(first)) == 5
    everyone = FolderData(tmp_path, DataOptions(channels=1, seed=1))
    assert everyone.files[:5] == first.files
    assert sorted(gray_values(everyone)) == list(range(12))


def test_ranks_partition_the_files(tmp_path: Path) -> None:
    gray_folder(tmp_path, 9)
    options = DataOptions(channels=1, max_samples=7, seed=3)
    ranks = [FolderData(tmp_path, options, rank, 2) for rank in (0, 1)]
    single = FolderData(tmp_path, options)
    assert [len(data.files) for data in ranks] == [4, 3]
    assert set(ranks[0].files).isdisjoint(ranks[1].files)
    assert set(ranks[0].files) | set(ranks[1].files) == set(single.files)
    with pytest.raises(DataError, match="rank 2"):
        FolderData(tmp_path, options, 2, 2)


# --- unreadable files ------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_files_are_recorded_and_skipped(tmp_path: Path, workers: int) -> None:
    gray_folder(tmp_path, 7)
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image at all")
    good = (tmp_path / "img000.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    options = DataOptions(channels=1, batch_size=3, workers=workers)
    data = FolderData(tmp_path, options)
    batches = collect(data)
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert sorted(Path(bad.path).name for bad in data.unreadable) == [
        "text.jpg",
        "truncated.png",
        "zero.png",
    ]
    assert all(bad.reason for bad in data.unreadable)
    good_order = [int(path.stem[3:]) for path in data.files if path.stem.startswith("img")]
    assert gray_values(FolderData(tmp_path, options)) == good_order


def test_nothing_readable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_text("text")
    data = FolderData(tmp_path, DataOptions())
    with pytest.raises(DataError, match=r"2 of 2 files failed, the first being .*\.png: \w+"):
        collect(data)


# --- tensor files ----------------------------------------------------------------------


def save_tensor(path: Path, tensor: torch.Tensor) -> None:
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, tensor.numpy())
    elif suffix == ".safetensors":
        save_file({"samples": tensor}, path)
    else:
        torch.save(tensor, path)


def test_one_sample_in_each_kind_of_tensor_file(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.full((1, 2, 3), 1, dtype=np.float64))
    torch.save(torch.full((1, 2, 3), 2.0), tmp_path / "b.pt")
    torch.save({"x": torch.full((1, 2, 3), 3, dtype=torch.int32), "n": 1}, tmp_path / "c.pth")
    torch.save([torch.full((1, 2, 3), 4.0, dtype=torch.float16)], tmp_path / "d.pt")
    save_file({"x": torch.full((1, 2, 3), 5.0, dtype=torch.bfloat16)}, tmp_path / "e.safetensors")
    data = FolderData(tmp_path, DataOptions(batch_size=8, mean=(9.0,), std=(9.0,)))
    assert data.kind == "tensors"
    batch = everything(data)
    assert batch.dtype == torch.float32 and batch.shape == (5, 2, 3)
    by_file = {
        path.stem: float(sample[0, 0]) for path, sample in zip(data.files, batch, strict=True)
    }
    assert by_file == {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}  # no /255, no mean/std


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors"])
def test_tensor_files_are_rechunked_across_files(tmp_path: Path, suffix: str) -> None:
    sizes = {"a": 3, "b": 5, "c": 2, "d": 1}
    start = 0
    for name, size in sizes.items():
        save_tensor(tmp_path / f"{name}{suffix}", torch.arange(start, start + size).view(size, 1))
        start += size
    data = FolderData(tmp_path, DataOptions(batch_size=4, seed=5))
    batches = collect(data)
    assert [len(batch) for batch in batches] == [4, 4, 3]
    expected = torch.cat([load_samples(path) for path in data.files]).float()
    torch.testing.assert_close(torch.cat(batches), expected)


def load_samples(path: Path) -> torch.Tensor:
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path))
    if path.suffix == ".safetensors":
        return load_file(path)["samples"]
    loaded: torch.Tensor = torch.load(path)
    return loaded


def test_tensor_max_samples_and_ranks_count_samples(tmp_path: Path) -> None:
    for name, size in {"a": 4, "b": 3, "c": 5}.items():
        np.save(tmp_path / f"{name}.npy", np.arange(size, dtype=np.float32)[:, None])
    options = DataOptions(batch_size=2, max_samples=9, seed=7)
    single = FolderData(tmp_path, options)
    assert len(single.files) == 3
    whole = everything(single)
    assert len(whole) == 9
    shards = [everything(FolderData(tmp_path, options, rank, 2)) for rank in (0, 1)]
    torch.testing.assert_close(shards[0], whole[0::2])
    torch.testing.assert_close(shards[1], whole[1::2])


def test_tensor_shapes_must_agree(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    np.save(tmp_path / "b.npy", np.zeros((1, 4)))
    with pytest.raises(DataError, match=r"disagree on the sample shape: .* has \(\d,\), .*\(\d,\)"):
        collect(FolderData(tmp_path, DataOptions()))


@pytest.mark.parametrize(
    "content",
    [{"x": torch.zeros(1, 2), "y": torch.zeros(1, 2)}, (torch.zeros(1), torch.zeros(1)), {}],
)
def test_a_torch_file_must_hold_one_tensor(tmp_path: Path, content: object) -> None:
    torch.save(content, tmp_path / "two.pt")
    with pytest.raises(DataError, match=r"two.pt: holds \d tensors"):
        collect(FolderData(tmp_path, DataOptions()))


def test_unreadable_tensor_files_are_recorded(tmp_path: Path) -> None:
    np.save(tmp_path / "good.npy", np.ones((2, 3)))
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "bad.pt").write_bytes(b"")
    (tmp_path / "bad.safetensors").write_text("{}")
    data = FolderData(tmp_path, DataOptions())
    assert everything(data).shape == (2, 3)
    assert sorted(Path(bad.path).name for bad in data.unreadable) == [
        "bad.npy",
        "bad.pt",
        "bad.safetensors",
    ]


# --- batching, caching, progress -------------------------------------------------------


def test_merge_singleton(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(9, dtype=np.float32)[:, None])
    data = FolderData(tmp_path, DataOptions(batch_size=4))
    assert [len(b) for b in collect(data)] == [4, 4, 1]
    merged = collect(data, merge_singleton=True)
    assert [len(b) for b in merged] == [4, 5]
    torch.testing.assert_close(torch.cat(merged)[:, 0], torch.arange(9.0))
    (tmp_path / "a.npy").unlink()
    np.save(tmp_path / "one.npy", np.zeros((1, 2), dtype=np.float32))
    alone = FolderData(tmp_path, DataOptions(batch_size=4))
    assert [len(b) for b in collect(alone, merge_singleton=True)] == [1]


def test_cached_batches_are_replayed_without_the_files(tmp_path: Path) -> None:
    gray_folder(tmp_path, 5)
    data = FolderData(tmp_path, DataOptions(channels=1, batch_size=2))
    first = collect(data)
    for path in data.files:
        path.unlink()
    second = collect(data)
    assert len(first) == len(second) == 3
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert data.unreadable == []


def test_without_cache_every_pass_decodes_again(tmp_path: Path) -> None:
    gray_folder(tmp_path, 5)
    data = FolderData(tmp_path, DataOptions(channels=1, batch_size=2, cache_bytes=0))
    assert gray_values(data) == gray_values(data)
    data.files[0].unlink()
    assert len(everything(data)) == 4
    assert [bad.path for bad in data.unreadable] == [str(data.files[0])]
    for path in data.files[1:]:
        path.unlink()
    with pytest.raises(DataError, match="5 of 5 files failed"):
        collect(data)


def test_batches_that_do_not_fit_are_not_cached(tmp_path: Path) -> None:
    gray_folder(tmp_path, 5)
    one_batch = 2 * 4 * 4  # two 1x4x4 samples held as uint8
    data = FolderData(tmp_path, DataOptions(channels=1, batch_size=2, cache_bytes=one_batch))
    collect(data)
    data.files[-1].unlink()
    assert len(everything(data)) == 4


class Recorded:
    """A progress display that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def start(self, label: str, total: int | None = None) -> None:
        self.events.append(("start", (label, total)))

    def advance(self, samples: int) -> None:
        self.events.append(("advance", samples))

    def finish(self) -> None:
        self.events.append(("finish", None))

    def note(self, text: str) -> None:
        self.events.append(("note", text))


def test_the_loop_reports_each_batch_while_decoding_and_replaying(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((7, 2), dtype=np.float32))
    data = FolderData(tmp_path, DataOptions(batch_size=3))
    progress = Recorded()
    loop = DataLoop(data, progress)
    for label, total in (("decoding", None), ("replaying", 7)):  # known after one pass
        progress.events.clear()
        seen: list[int] = []
        record = loop.over_data(label, lambda _i, b, s=seen: s.append(len(b)))
        assert seen == [3, 3, 1] and (record.samples, record.batches) == (7, 3)
        advances = [("advance", 3), ("advance", 3), ("advance", 1)]
        assert progress.events == [("start", (label, total)), *advances, ("finish", None)]
