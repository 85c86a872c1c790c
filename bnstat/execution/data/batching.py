"""Turning a stream of decoded samples into batches of exactly the requested size."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch


def select_samples(
    pieces: Iterable[torch.Tensor], limit: int | None, rank: int, world_size: int
) -> Iterator[torch.Tensor]:
    """Cut the stream after `limit` samples; keep this rank's share (every world_size-th)."""
    position = 0
    for piece in pieces:
        kept = piece if limit is None else piece[: limit - position]
        yield kept[(rank - position) % world_size :: world_size]
        position += len(kept)
        if limit is not None and position >= limit:
            return


def rechunk(pieces: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Batches of exactly `size` samples, then the rest, from pieces of any length."""
    buffer: list[torch.Tensor] = []
    buffered = 0
    for piece in pieces:
        while len(piece):
            take = min(size - buffered, len(piece))
            buffer.append(piece[:take])
            buffered += take
            piece = piece[take:]
            if buffered == size:
                yield torch.cat(buffer) if len(buffer) > 1 else buffer[0]
                buffer, buffered = [], 0
    if buffer:
        yield torch.cat(buffer)
