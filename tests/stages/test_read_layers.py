"""`stages.read_layers` against torch: every layer's values, widened to float64, are the
tensors torch loads, back to back; eps and batch counts come from the file when it has
them."""

from __future__ import annotations

import numpy as np
import torch
from zoo import ManyNorms, trained

from bnstat.stages.find_layers import find_layers
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint
from bnstat.stages.read_layers import read_layers


def _batch(path, eps=1e-5):  # type: ignore[no-untyped-def]
    with open_checkpoint(path) as raw:
        (state,) = find_state_dicts(raw)
        return read_layers(find_layers(state), eps)


def test_values_are_torchs_tensors_in_float64(write_st):
    model = trained(ManyNorms())
    loaded = {k: v.to(torch.bfloat16) if v.is_floating_point() else v
              for k, v in model.state_dict().items()}  # fmt: skip
    batch = _batch(write_st(loaded))
    for i, name in enumerate(batch.names):
        for attr, leaf in (("mean", "running_mean"), ("var", "running_var")):
            want = loaded[f"{name}.{leaf}"].double().numpy()
            np.testing.assert_array_equal(batch.of_layer(getattr(batch, attr), i), want)
        affine = f"{name}.weight" in loaded
        assert batch.affine[i] == affine
        weight = batch.of_layer(batch.weight, i)
        want_weight = loaded[f"{name}.weight"].double().numpy() if affine else np.ones(len(weight))
        np.testing.assert_array_equal(weight, want_weight)
        count = loaded.get(f"{name}.num_batches_tracked")
        assert np.isnan(batch.count[i]) if count is None else batch.count[i] == int(count)
    assert set(batch.dtypes) == {"bfloat16"}
    assert batch.offsets[-1] == sum(loaded[f"{n}.running_mean"].numel() for n in batch.names)


def test_the_files_eps_wins_over_the_default(tmp_path):
    model = ManyNorms().eval()
    path = tmp_path / "scripted.pt"
    torch.jit.script(model).save(str(path))
    batch = _batch(path, eps=0.5)
    eps = dict(zip(batch.names, batch.eps.tolist(), strict=True))
    assert eps["bn3d"] == model.bn3d.eps == 1e-3 and eps["bn2d"] == model.bn2d.eps
    assert batch.eps_from_file[batch.names.index("bn3d")]
    frozen = batch.names.index("frozen")  # a class of the test's own, without an eps
    assert (batch.eps[frozen], batch.eps_from_file[frozen]) == (0.5, False)


def test_a_state_dict_takes_the_default_eps(write_pt):
    batch = _batch(write_pt(ManyNorms().state_dict()), eps=0.25)
    assert set(batch.eps.tolist()) == {0.25} and not batch.eps_from_file.any()
