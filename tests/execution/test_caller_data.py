"""The caller's data is iterated once; a later pass never mixes in another iteration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bnstat.errors import DataError
from bnstat.execution.batches import batch_size
from bnstat.execution.caller_data import CallerData

MB = 2**20


class Counted:
    """An iterable that counts how often it is iterated (a DataLoader starts workers each time)."""

    def __init__(self, batches: object) -> None:
        self.batches, self.iterations = batches, 0

    def __iter__(self) -> Iterator[object]:
        self.iterations += 1
        return iter(self.batches)  # type: ignore[call-overload]


def shuffling_loader(samples: int = 64) -> DataLoader[tuple[torch.Tensor, ...]]:
    dataset = TensorDataset(torch.arange(samples * 2.0).view(samples, 2), torch.arange(samples))
    return DataLoader(dataset, batch_size=8, shuffle=True)


def same(a: list[object], b: list[object]) -> bool:
    return len(a) == len(b) and all(
        all(torch.equal(x, y) for x, y in zip(p, q, strict=True))  # type: ignore[call-overload]
        for p, q in zip(a, b, strict=True)
    )


def test_a_shuffling_loader_that_fits_is_iterated_once_and_replayed():
    loader = Counted(shuffling_loader())
    data = CallerData(loader, budget=64 * MB)
    first = next(iter(data))  # the layer search's look at the first batch
    passes = [list(data), list(data), list(data)]
    assert loader.iterations == 1
    assert same(passes[0], passes[1]) and same(passes[1], passes[2])
    assert torch.equal(first[0], passes[0][0][0])
    assert data.held_bytes == sum(b[0].nbytes + b[1].nbytes for b in passes[0])


def test_a_shuffling_loader_that_does_not_fit_is_refused_on_its_second_pass():
    data = CallerData(shuffling_loader(), budget=0)
    assert len(list(data)) == 8
    with pytest.raises(DataError, match=r"changed between two passes \(batch 1 differs\)"):
        list(data)


def test_data_that_repeats_itself_may_be_iterated_again_without_being_kept():
    batches = [torch.full((4, 2), float(i)) for i in range(5)]
    source = Counted(batches)
    data = CallerData(source, budget=0)
    assert next(iter(data)) is batches[0]
    assert [list(data), list(data)] == [batches, batches]
    assert source.iterations == 2 and data.held_bytes == 0  # the first pass was resumed


def test_data_that_ends_early_or_late_the_second_time_is_refused():
    shrinking = iter([[torch.ones(2)] * 3, [torch.ones(2)] * 2])
    data = CallerData(lambda: next(shrinking), budget=0)
    list(data)
    with pytest.raises(DataError, match="ended after 2 batches"):
        list(data)
    growing = iter([[torch.ones(2)] * 2, [torch.ones(2)] * 3])
    data = CallerData(lambda: next(growing), budget=0)
    list(data)
    with pytest.raises(DataError, match="more than 2 batches"):
        list(data)


def test_an_iterator_is_read_once_and_kept_or_refused():
    kept = CallerData(iter([torch.ones(3, 2), torch.zeros(3, 2)]), budget=MB)
    assert len(list(kept)) == len(list(kept)) == 2
    dropped = CallerData(iter([torch.ones(3, 2), torch.zeros(3, 2)]), budget=0)
    list(dropped)
    with pytest.raises(DataError, match="iterator, which can be read only once"):
        list(dropped)


def test_max_samples_cuts_the_data_inside_a_batch():
    data = CallerData(shuffling_loader(), budget=MB, max_samples=20)
    sizes = [batch_size(batch) for batch in data]
    assert sizes == [8, 8, 4]
