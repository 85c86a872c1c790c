"""Turning a stream of decoded samples into batches of exactly the requested size."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from bnstat.execution.data.samples import Samples, join


def rechunk(pieces: Iterable[Samples], size: int) -> Iterator[Samples]:
    """Batches of exactly `size` samples, then the rest, from pieces of any length."""
    buffer: list[Samples] = []
    buffered = 0
    for piece in pieces:
        while len(piece):
            take = min(size - buffered, len(piece))
            buffer.append(piece[:take])
            buffered += take
            piece = piece[take:]
            if buffered == size:
                yield join(buffer)
                buffer, buffered = [], 0
    if buffer:
        yield join(buffer)
