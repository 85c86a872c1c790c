"""Calibration data: the images or tensor files under a folder, streamed as fixed-size batches.

Recalibration may pass over the data more than once and must see the same samples in the
same order every time, on every rank, for a fixed seed. So the files are discovered and
ordered once, decoded in DataLoader workers, re-chunked to exactly `batch_size` samples
whatever was skipped, and kept in memory between passes when they fit. A file that cannot
be decoded is recorded in `unreadable` and skipped: one corrupt JPEG must not stop a run
over fifty thousand images, but a folder where nothing decodes is an error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from bnstat.errors import DataError
from bnstat.execution.data.batching import rechunk, select_samples
from bnstat.execution.data.decoding import Files, ImageDecoder, Item, collate, load_tensor_file
from bnstat.execution.data.files import IMAGE_EXTENSIONS, TENSOR_EXTENSIONS, discover
from bnstat.execution.data.options import (
    MODES,
    DataOptions,
    check_options,
    describe_fit,
    parse_floats,
    parse_image_size,
)
from bnstat.report.recalibration import Unreadable

__all__ = [
    "IMAGE_EXTENSIONS",
    "TENSOR_EXTENSIONS",
    "DataOptions",
    "FolderData",
    "Unreadable",
    "parse_floats",
    "parse_image_size",
]


KEEP_BYTES = 2 * 2**30  # decoded data kept between passes where no budget is given


class FolderData:
    """The calibration samples under `root`, for this rank, as batches in a fixed order."""

    def __init__(
        self, root: Path, options: DataOptions, rank: int = 0, world_size: int = 1
    ) -> None:
        check_options(options, rank, world_size)
        self.root = root
        self.options = options
        self.rank = rank
        self.world_size = world_size
        self.kind, found = discover(root)
        order = np.random.default_rng(options.seed).permutation(len(found))
        if self.kind == "images":  # tensor files hold many samples: both apply to samples
            order = order[: options.max_samples][rank::world_size]
        self.files = [Path(found[index]) for index in order]
        self.unreadable: list[Unreadable] = []
        self._cache: list[torch.Tensor] | None = None
        self.held_bytes = 0  # decoded batches kept in memory for the next pass
        self.origins: Counter[str] = Counter()  # what the files held: image modes, dtypes
        self.sample_shape: tuple[int, ...] | None = None  # one sample as the model gets it

    @property
    def keep_bytes(self) -> int:
        """Decoded batches are kept between passes while they fit in this."""
        budget = self.options.cache_bytes
        return budget if budget is not None else KEEP_BYTES

    @property
    def samples(self) -> int | None:
        """How many samples a pass yields, where that is known before decoding: one per
        image (fewer if some cannot be read); None for tensor files."""
        return len(self.files) if self.kind == "images" else None

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Yield float32 batches of `batch_size` samples (the last may be smaller).

        The first pass decodes (refilling `unreadable`) and keeps the batches when they fit
        in `cache_bytes` (`held_bytes` says how much it holds); later passes then replay
        them without touching the files, so treat the batches as read-only.
        """
        return iter(self._cache) if self._cache is not None else self._decode_pass()

    def _decode_pass(self) -> Iterator[torch.Tensor]:
        self.unreadable = []
        pieces = self._pieces()
        if self.kind == "tensors":
            pieces = select_samples(pieces, self.options.max_samples, self.rank, self.world_size)
        cache: list[torch.Tensor] | None = []
        cached_bytes = count = self.held_bytes = 0
        for batch in rechunk(pieces, self.options.batch_size):
            count += len(batch)
            cached_bytes += batch.element_size() * batch.nelement()
            if cache is not None and cached_bytes <= self.keep_bytes:
                cache.append(batch)
                self.held_bytes = cached_bytes
            else:
                cache, self.held_bytes = None, 0
            yield batch
        if count == 0:
            raise self._nothing_read()
        self._cache = cache

    def _pieces(self) -> Iterator[torch.Tensor]:
        """Decoded samples in file order; records unreadable files, refuses mixed shapes."""
        first: tuple[Path, torch.Size] | None = None
        self.origins.clear()
        for chunk in self._loader():
            self.origins.update(chunk.origins)
            for item in chunk.failed:
                if item.fatal:
                    raise DataError(f"{self.files[item.index]}: {item.reason}")
                self.unreadable.append(Unreadable(str(self.files[item.index]), item.reason))
            for index, samples in chunk.pieces:
                first = first or (self.files[index], samples.shape[1:])
                self.sample_shape = tuple(first[1])
                if samples.shape[1:] != first[1]:
                    raise self._mismatch(first, (self.files[index], samples.shape[1:]))
                yield samples

    def _loader(self) -> DataLoader[Item]:
        """Images are decoded in `workers` processes; tensor files, which need no decoding,
        are read here (starting workers would cost more than it saves)."""
        images = self.kind == "images"
        decode = ImageDecoder(self.options) if images else load_tensor_file
        return DataLoader(
            Files(self.files, decode),
            batch_size=self.options.batch_size if images else 1,
            num_workers=self.options.workers if images else 0,
            collate_fn=collate,
        )

    def describe(self) -> str:
        """What the model was fed, in words: file contents, conversions, the sample shape."""
        shape = "x".join(str(n) for n in self.sample_shape) if self.sample_shape else "?"
        held = ", ".join(f"{count} {name}" for name, count in self.origins.most_common())
        if self.kind == "tensors":
            return f"tensor files ({held}) as float32; one sample is {shape}"
        options, target = self.options, MODES[self.options.channels]
        changed = "converted to" if set(self.origins) - {target} else "kept as"
        return (
            f"images ({held}) {changed} {target}, {describe_fit(options)}, normalised as "
            f"(x / 255 - {_listed(options.mean)}) / {_listed(options.std)}; one sample is {shape}"
        )

    def _mismatch(
        self, first: tuple[Path, torch.Size], other: tuple[Path, torch.Size]
    ) -> DataError:
        if self.kind == "images":
            (a, (_, h1, w1)), (b, (_, h2, w2)) = first, other
            return DataError(
                f"images differ in size: {a} is {h1}x{w1}, {b} is {h2}x{w2}; "
                "pass --image-size to bring them to one size"
            )
        return DataError(
            "tensor files disagree on the sample shape: "
            f"{first[0]} has {tuple(first[1])}, {other[0]} has {tuple(other[1])}"
        )

    def _nothing_read(self) -> DataError:
        if self.unreadable:
            first = self.unreadable[0]
            return DataError(
                f"no sample could be read: {len(self.unreadable)} of {len(self.files)} files "
                f"failed, the first being {first.path}: {first.reason}"
            )
        shard = f" for rank {self.rank} of {self.world_size}" if self.world_size > 1 else ""
        return DataError(f"the {self.kind} files under {self.root} hold no samples{shard}")


def _listed(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in values) if len(values) > 1 else f"{values[0]:g}"
