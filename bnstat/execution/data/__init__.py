"""Calibration data: the images or tensor files under a folder, streamed as fixed-size batches.

Recalibration may pass over the data more than once and must see the same samples in the
same order every time, on every rank, for a fixed seed. So the files are discovered and
ordered once (`selection`), images decoded in DataLoader workers (`images`, `decoding`),
tensor files memory-mapped and only the samples used read (`tensor_files`), everything
re-chunked to exactly `batch_size` samples whatever was skipped, and kept in memory
between passes, in its own integer type, when it fits (`samples`). A batch becomes the
model's float32 input on the model's device as it is handed over.

What reading the data meets is reported the same way by every command that runs a model
on it: a file (or folder) that cannot be read is recorded in `unreadable` and skipped (one
corrupt JPEG must not stop a run over fifty thousand images, but a folder where nothing
decodes is an error); data bnstat must not guess about (a non-finite sample, complex
numbers, an image mode without a fixed range) stops the run with a `DataError` naming the
file; what was used but deserves a word (integer tensors fed unscaled) is in `warnings`.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from bnstat.errors import DataError
from bnstat.execution.data.batching import rechunk
from bnstat.execution.data.decoding import Chunk, Files, collate, reason_of, start_worker
from bnstat.execution.data.describe import describe_images, describe_tensors
from bnstat.execution.data.files import IMAGE_EXTENSIONS, TENSOR_EXTENSIONS, discover
from bnstat.execution.data.images import DEPTHS, ImageDecoder
from bnstat.execution.data.options import (
    DataOptions,
    check_options,
    parse_floats,
    parse_image_size,
)
from bnstat.execution.data.samples import Normalise, Samples
from bnstat.execution.data.selection import chosen_rows, file_order
from bnstat.execution.data.tensor_files import TensorFile, open_tensor_file
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

SCALES = {np.dtype(d.dtype): d for d in DEPTHS.values()}  # what decoded pixels' type says


KEEP_BYTES = 2 * 2**30  # decoded data kept between passes where no budget is given


class FolderData:
    """The calibration samples under `root`, for this rank, as batches in a fixed order,
    handed over as float32 on `device`."""

    def __init__(
        self, root: Path, options: DataOptions, rank: int = 0, world_size: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:  # fmt: skip
        check_options(options, rank, world_size)
        self.root, self.options, self.rank, self.world_size = root, options, rank, world_size
        found = discover(root)
        self.kind, self._unlisted = found.kind, found.unlisted
        order = file_order(len(found.files), options.seed)
        if self.kind == "images":  # tensor files hold many samples: both apply to samples
            order = order[: options.max_samples][rank::world_size]
        self.files = [Path(found.files[index]) for index in order]
        self.unreadable: list[Unreadable] = list(found.unlisted)
        self.warnings: list[str] = []  # one line each: what was used but deserves a word
        self._cache: list[Samples] | None = None
        self.held_bytes = 0  # decoded batches kept in memory for the next pass
        self.kept_sample_bytes: int | None = None  # one sample as kept, once one is decoded
        self._opened: list[TensorFile] = []
        self.origins: Counter[str] = Counter()  # what the files held: image modes, dtypes
        self.depths: set[str] = set()  # of the images decoded: 8-bit, 16-bit, float
        self.sample_shape: tuple[int, ...] | None = None  # one sample as the model gets it
        images = self.kind == "images"
        self._normalise = Normalise(
            torch.device(device), *((options.mean, options.std) if images else (None, None))
        )

    @property
    def mapped_bytes(self) -> int:
        """Bytes of memory-mapped tensor files that this process holds now (pages read
        and not yet handed back); with `held_bytes`, the memory the data costs."""
        return sum(file.mapped_bytes for file in self._opened)

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

        The first pass decodes (refilling `unreadable` and `warnings`) and keeps the
        batches, in their stored types, when they fit in `cache_bytes` (`held_bytes` says
        how much it holds); later passes then replay them without touching the files.
        """
        held = iter(self._cache) if self._cache is not None else self._decode_pass()
        return map(self._normalise, held)

    def _decode_pass(self) -> Iterator[Samples]:
        self.unreadable, self.warnings = list(self._unlisted), []
        self.origins.clear()
        self.depths.clear()
        pieces = self._images() if self.kind == "images" else self._tensors()
        cache: list[Samples] | None = []
        cached_bytes = count = self.held_bytes = 0
        for batch in rechunk(self._same_shape(pieces), self.options.batch_size):
            count += len(batch)
            cached_bytes += batch.nbytes
            self.kept_sample_bytes = batch.nbytes // max(len(batch), 1)
            if cache is not None and cached_bytes <= self.keep_bytes:
                cache.append(batch)
                self.held_bytes = cached_bytes
            else:
                cache, self.held_bytes = None, 0
            yield batch
        if count == 0:
            raise self._nothing_read()
        self._cache = cache

    def _same_shape(self, pieces: Iterable[tuple[Path, Samples]]) -> Iterator[Samples]:
        """The samples, refused when a file's sample shape differs from the first file's."""
        first: tuple[Path, torch.Size] | None = None
        for path, samples in pieces:
            first = first or (path, samples.values.shape[1:])
            self.sample_shape = tuple(first[1])
            if samples.values.shape[1:] != first[1]:
                raise self._mismatch(first, (path, samples.values.shape[1:]))
            yield samples

    def _images(self) -> Iterator[tuple[Path, Samples]]:
        """Decoded images in file order; records unreadable files."""
        for chunk in self._loader():
            self._record(chunk)
            for index, pixels in chunk.pieces:
                depth = SCALES[pixels.dtype]
                self.depths.add(depth.name)
                yield self.files[index], Samples(torch.from_numpy(pixels), depth.scale)

    def _record(self, chunk: Chunk) -> None:
        self.origins.update(chunk.origins)
        for item in chunk.failed:
            if item.fatal:
                raise DataError(f"{self.files[item.index]}: {item.reason}")
            self.unreadable.append(Unreadable(str(self.files[item.index]), item.reason))

    def _loader(self) -> Iterator[Chunk]:
        """Images decoded in `workers` processes (none: here), `batch_size` files a chunk."""
        loader = DataLoader(
            Files(self.files, ImageDecoder(self.options)),
            batch_size=self.options.batch_size,
            num_workers=self.options.workers,
            collate_fn=collate,
            worker_init_fn=start_worker if self.options.workers else None,
        )
        with warnings.catch_warnings():  # torch's advice on worker counts
            warnings.simplefilter("ignore", UserWarning)
            return iter(loader)

    def _tensors(self) -> Iterator[tuple[Path, Samples]]:
        """The chosen samples of every tensor file, read in file order, `batch_size` rows
        at a time; records unreadable files."""
        self._opened = [opened for path in self.files if (opened := self._open(path))]
        try:
            counts = [file.count for file in self._opened]
            options = self.options
            rows = chosen_rows(
                counts, options.max_samples, options.seed, self.rank, self.world_size
            )
            used = [
                (file, chosen)
                for file, chosen in zip(self._opened, rows, strict=True)
                if len(chosen)
            ]
            self._note_integers([file for file, _ in used])
            for file, chosen in used:
                for start in range(0, len(chosen), options.batch_size):
                    yield (
                        file.path,
                        Samples(self._take(file, chosen[start : start + options.batch_size])),
                    )
        finally:
            for file in self._opened:
                file.close()
            self._opened = []

    def _open(self, path: Path) -> TensorFile | None:
        try:
            opened = open_tensor_file(path)
        except DataError as err:
            raise DataError(f"{path}: {err}") from err
        except Exception as err:  # whatever the file holds, it holds no usable samples
            self.unreadable.append(Unreadable(str(path), reason_of(err)))
            return None
        self.origins[opened.stored] += 1
        return opened

    @staticmethod
    def _take(file: TensorFile, rows: range | np.ndarray) -> torch.Tensor:
        try:
            return file.take(rows)
        except DataError as err:
            raise DataError(f"{file.path}: {err}") from err

    def _note_integers(self, files: list[TensorFile]) -> None:
        stored = sorted({file.stored for file in files if file.integer})
        if stored:
            self.warnings.append(
                f"tensor files of {', '.join(stored)} reach the model unscaled, as stored "
                "(not divided by their type's range): scale them before saving if the "
                "model expects values in 0..1"
            )

    def describe(self) -> str:
        """What the model was fed, in words: file contents, conversions, the sample shape."""
        shape = "x".join(str(n) for n in self.sample_shape) if self.sample_shape else "?"
        if self.kind == "tensors":
            return describe_tensors(self.origins, shape)
        return describe_images(self.origins, self.depths, self.options, shape)

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
        failed = self.unreadable[len(self._unlisted) :] or self.unreadable
        if failed:
            return DataError(
                f"no sample could be read: {len(failed)} of {len(self.files)} files "
                f"failed, the first being {failed[0].path}: {failed[0].reason}"
            )
        shard = f" for rank {self.rank} of {self.world_size}" if self.world_size > 1 else ""
        return DataError(f"the {self.kind} files under {self.root} hold no samples{shard}")
