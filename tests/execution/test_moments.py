"""`recalibrate.accumulator`: per-channel mean and unbiased variance over a data set,
against torch's own `var_mean` of all the values at once, whatever the batching."""

from __future__ import annotations

import pytest
import torch

from bnstat.errors import DataError, ModelError
from bnstat.execution.moments import CPU_CHUNK_VALUES, FLUSH_EVERY, ChannelMoments, Moments

CPU = torch.device("cpu")


def _reference(batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.cat(batches).double().transpose(0, 1).reshape(batches[0].shape[1], -1)
    var, mean = torch.var_mean(values, dim=1, correction=1)
    return mean, var


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 5), (2, 3, 4, 4), (2, 3, 2, 2, 2)])
@pytest.mark.parametrize("sizes", [[7], [1, 2, 3, 1], [FLUSH_EVERY + 3] * 1], ids=str)
def test_moments_match_torch_whatever_the_batching(shape, sizes):
    generator = torch.Generator().manual_seed(0)
    full = torch.randn(sum(sizes), *shape[1:], generator=generator) * 3 + 100
    moments = ChannelMoments(shape[1], CPU)
    for batch in full.split(sizes):
        moments.update(batch)
    got = moments.compute()
    mean, var = _reference([full])
    # float32 sums of the shifted values: errors near 1e-7 of the spread (std 3), not of 100
    torch.testing.assert_close(got.mean, mean, rtol=0, atol=3e-6)
    torch.testing.assert_close(got.var, var, rtol=1e-6, atol=0)
    assert got.count == full.numel() // shape[1]


@pytest.mark.parametrize("samples_per_chunk", [1, 3])
def test_large_activations_summed_a_few_samples_at_a_time_are_exact(samples_per_chunk):
    """Samples bigger than a chunk are shifted in a reused buffer; a last partial chunk too."""
    per_sample = CPU_CHUNK_VALUES // samples_per_chunk + 1  # one sample short of a full chunk
    channels = 4
    generator = torch.Generator().manual_seed(2)
    batch = torch.randn(7, channels, per_sample // channels + 1, generator=generator) * 2 - 5
    moments = ChannelMoments(channels, CPU)
    moments.update(batch[:5])
    moments.update(batch[5:].transpose(1, 2).contiguous().transpose(1, 2))  # strided input
    mean, var = _reference([batch])
    got = moments.compute()
    torch.testing.assert_close(got.mean, mean, rtol=0, atol=2e-6)
    torch.testing.assert_close(got.var, var, rtol=1e-6, atol=0)
    assert got.count == batch.numel() // channels


def test_many_single_sample_batches_cross_the_flush():
    values = torch.arange(2 * (FLUSH_EVERY + 5), dtype=torch.float32).reshape(-1, 2)
    moments = ChannelMoments(2, CPU)
    for row in values:
        moments.update(row[None])
    mean, var = _reference([values])
    got = moments.compute()
    torch.testing.assert_close(got.mean, mean)
    torch.testing.assert_close(got.var, var)


def test_a_large_offset_does_not_cost_precision():
    """Values near 1e6 with unit spread: float32 sums of raw values would lose it."""
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(64, 2, generator=generator) + 1e6 for _ in range(20)]
    moments = ChannelMoments(2, CPU)
    for batch in batches:
        moments.update(batch.double())
    _, var = _reference(batches)
    torch.testing.assert_close(moments.compute().var, var, rtol=1e-9, atol=0)


def test_reset_forgets_and_nothing_seen_is_nan():
    moments = ChannelMoments(3, CPU)
    moments.update(torch.ones(2, 3))
    moments.reset()
    empty = moments.compute()
    assert empty.count == 0 and torch.isnan(empty.mean).all() and torch.isnan(empty.var).all()


def test_a_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match="expected 3 channels"):
        ChannelMoments(3, CPU).update(torch.ones(2, 4))


def test_too_few_values_or_non_finite_ones_are_errors():
    one = Moments(torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), 1)
    with pytest.raises(DataError, match="fc_bn received 1 value per channel"):
        one.require_variance("fc_bn")
    bad = Moments(torch.tensor([0.0, float("nan")]), torch.ones(2), 10)
    with pytest.raises(ModelError, match="non-finite activations reach layer bn"):
        bad.require_finite("bn")
