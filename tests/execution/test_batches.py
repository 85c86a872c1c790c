"""Batches of every shape a caller's data gives: their size, first samples and joins."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

from bnstat.errors import DataError
from bnstat.execution.batches import batch_size, described, head, joined
from bnstat.execution.loop import merge_last_singleton

Pair = namedtuple("Pair", "image label")


def test_the_size_is_the_first_dimension_of_the_first_tensor():
    images, labels = torch.zeros(5, 3, 2, 2), torch.zeros(5)
    assert batch_size(images) == 5
    assert batch_size((images, labels)) == 5
    assert batch_size({"meta": "x", "pixel_values": images}) == 5
    assert batch_size([{"image": images[0]}, {"image": images[1]}]) == 2  # one sample each
    assert batch_size(Pair(images, labels)) == 5
    with pytest.raises(DataError, match="how many samples"):
        batch_size(["a", "b"])


def test_the_first_samples_keep_values_that_are_not_per_sample():
    images, labels, scale = torch.arange(5.0).view(5, 1), torch.arange(5), torch.tensor(2.0)
    cut = head((images, labels, scale), 2)
    assert torch.equal(cut[0], images[:2]) and torch.equal(cut[1], labels[:2])
    assert cut[2] is scale
    assert head(Pair(images, labels), 3).image.shape == (3, 1)


def test_two_batches_join_where_only_their_samples_differ():
    a, b = (torch.zeros(4, 2), torch.zeros(4)), (torch.ones(1, 2), torch.ones(1))
    both = joined(a, b)
    assert both is not None and both[0].shape == (5, 2) and both[1].shape == (5,)
    assert joined({"x": a[0], "tag": "u"}, {"x": b[0], "tag": "v"}) is None
    assert joined([{"x": 1}], [{"x": 2}]) == [{"x": 1}, {"x": 2}]


def test_a_last_single_sample_tuple_is_folded_into_the_batch_before():
    batches = [(torch.zeros(4, 2), torch.zeros(4)), (torch.zeros(4, 2), torch.zeros(4))]
    batches.append((torch.ones(1, 2), torch.ones(1)))
    merged = list(merge_last_singleton(batches))
    assert [batch_size(batch) for batch in merged] == [4, 5]


def test_a_batch_is_described_by_its_parts():
    assert described(torch.zeros(2, 3)) == "a batch of shape (2, 3)"
    text = described({"image": torch.zeros(2, 3), "label": torch.zeros(2)})
    assert text == "a batch of {image: (2, 3), label: (2,)}"
