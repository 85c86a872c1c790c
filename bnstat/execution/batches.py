"""What a batch is made of, whatever shape the caller's data gives it.

A batch from the image folder is one tensor; a caller's `DataLoader` gives tensors,
`(input, label, ...)` tuples or lists, dicts (a Hugging Face collator's `BatchEncoding`
is a mapping too), or lists of per-sample dicts as detection models take them. The pass
loop and the caller's data source need the same few answers about any of them, given
here once: how many samples it holds (the first dimension of its first tensor; a list
of dicts holds one sample per dict), its first samples, two batches joined, its bytes,
a short description for messages, and a checksum that tells whether an iteration of the
data gave the same batch again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from bnstat.errors import DataError

Batch = Any  # a tensor, a tuple, list or mapping of them (nested), or what a call_fn takes


def _is_samples(batch: Any) -> bool:
    """A list or tuple of per-sample mappings: one sample per element."""
    return isinstance(batch, list | tuple) and bool(batch) and isinstance(batch[0], Mapping)


def tensors_in(batch: Batch) -> Iterator[torch.Tensor]:
    """Every tensor in the batch, depth first, in order."""
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for value in batch.values():
            yield from tensors_in(value)
    elif isinstance(batch, list | tuple):
        for value in batch:
            yield from tensors_in(value)


def batch_size(batch: Batch) -> int:
    """Samples in the batch: the first dimension of its first tensor (see the docstring)."""
    if _is_samples(batch):
        return len(batch)
    for tensor in tensors_in(batch):
        if tensor.dim() >= 1:
            return int(tensor.shape[0])
    raise DataError(
        f"cannot tell how many samples a batch of {type(batch).__name__} holds: yield "
        "tensors, or tuples, lists or dicts of tensors with the samples along dimension 0"
    )


def map_samples(batch: Batch, size: int, change: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    """The batch with `change` applied to every tensor that has `size` samples along
    dimension 0; other values (a label count, a flag) are kept. Mappings become dicts."""
    if isinstance(batch, torch.Tensor):
        return change(batch) if batch.dim() >= 1 and batch.shape[0] == size else batch
    if isinstance(batch, Mapping):
        return {key: map_samples(value, size, change) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        items = [map_samples(value, size, change) for value in batch]
        return _rebuilt(batch, items)
    return batch


def _rebuilt(original: Sequence[Any], items: list[Any]) -> Any:
    """A list or tuple of the same kind (a named tuple keeps its type)."""
    if isinstance(original, tuple):
        return type(original)(*items) if hasattr(original, "_fields") else tuple(items)
    return items


def head(batch: Batch, count: int) -> Batch:
    """The batch's first `count` samples."""
    if _is_samples(batch):
        return batch[:count]
    return map_samples(batch, batch_size(batch), lambda tensor: tensor[:count])


def joined(first: Batch, second: Batch) -> Batch | None:
    """The two batches as one (samples of `first`, then `second`), or None where their
    structures differ or a value that is not per sample differs."""
    if _is_samples(first) and _is_samples(second):
        return [*first, *second]
    sizes = batch_size(first), batch_size(second)
    return _join(first, second, sizes)


def _join(first: Any, second: Any, sizes: tuple[int, int]) -> Any | None:
    if isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor):
        per_sample = first.dim() >= 1 and (first.shape[0], second.shape[0]) == sizes
        if per_sample and first.shape[1:] == second.shape[1:]:
            return torch.cat([first, second])
        return first if torch.equal(first, second) else None
    if isinstance(first, Mapping) and isinstance(second, Mapping):
        if list(first) != list(second):
            return None
        values = {key: _join(first[key], second[key], sizes) for key in first}
        return None if any(value is None for value in values.values()) else values
    if isinstance(first, list | tuple) and type(first) is type(second):
        if len(first) != len(second):
            return None
        items = [_join(a, b, sizes) for a, b in zip(first, second, strict=True)]
        return None if any(item is None for item in items) else _rebuilt(first, items)
    return first if first == second else None


def nbytes(batch: Batch) -> int:
    """Bytes held by the batch's tensors."""
    return sum(tensor.element_size() * tensor.nelement() for tensor in tensors_in(batch))


def described(batch: Batch) -> str:
    """The batch for a message: `a batch of shape (32, 3, 8, 8)`, or its parts' shapes."""
    if isinstance(batch, torch.Tensor):
        return f"a batch of shape {tuple(batch.shape)}"
    return f"a batch of {_parts(batch)}"


def _parts(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(tuple(value.shape))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_parts(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        shown = ", ".join(_parts(item) for item in value[:4])
        more = f", ... {len(value)} in all" if len(value) > 4 else ""
        return f"({shown}{more})" if isinstance(value, tuple) else f"[{shown}{more}]"
    return type(value).__name__


Checksum = tuple[tuple[tuple[int, ...], str, str, str], ...]


def checksum(batch: Batch) -> Checksum:
    """Per tensor: shape, dtype, the sum of its values and a sum weighted by position
    along the last dimension and across the others (a flip or another order of samples
    changes it). The same batch read again gives the same numbers to the last bit."""
    sums = []
    for tensor in tensors_in(batch):
        last = tensor.shape[-1] if tensor.dim() else 1
        values = tensor.detach().to(torch.float64).reshape(-1, last)
        device = values.device
        across = torch.arange(1, last + 1, dtype=torch.float64, device=device)
        down = torch.arange(1, len(values) + 1, dtype=torch.float64, device=device).sqrt()
        weighted = ((values * across).sum(dim=1) * down).sum()
        total = float(values.sum()).hex()
        sums.append((tuple(tensor.shape), str(tensor.dtype), total, float(weighted).hex()))
    return tuple(sums)
