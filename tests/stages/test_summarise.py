"""`stages.summarise` against independent references: numpy's own functions, one layer at
a time, over each layer's finite values; and torch's reductions of a real model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bnstat.dtypes import DTYPES
from bnstat.stages.find_layers import LayerRefs
from bnstat.stages.read_layers import read_layers
from bnstat.stages.summarise import layer_reports
from bnstat.tensor_ref import MemoryRegion, TensorRef


def _ref(values: np.ndarray) -> TensorRef:
    array = np.ascontiguousarray(values, dtype=np.float32)
    return TensorRef(DTYPES["float32"], array.shape, MemoryRegion(array.tobytes()))


def layer_refs(name: str, values: dict[str, np.ndarray]) -> LayerRefs:
    """A layer's tensors as a reader describes them (weight and bias when given)."""
    weight, bias = (_ref(values[key]) if key in values else None for key in ("weight", "bias"))
    return LayerRefs(name, _ref(values["mean"]), _ref(values["var"]), weight, bias, None, None)


def _layers(rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Layers of 1 to 300 channels, with spread-out, negative, NaN and infinite values."""
    layers = []
    for channels in (1, 2, 3, 17, 300):
        mean = rng.normal(0, 10, channels)
        var = np.exp(rng.normal(0, 4, channels))
        weight = rng.normal(1, 0.5, channels)
        if channels >= 3:
            mean[1], var[0], weight[2] = np.nan, np.inf, -np.inf
            var[-1] = -0.5
        bias = rng.normal(size=channels)
        layers.append({"mean": mean, "var": var, "weight": weight, "bias": bias})
    layers.append({"mean": np.full(4, np.nan), "var": np.ones(4)})  # no finite mean, not affine
    return layers


def _expected(values: np.ndarray) -> dict[str, float | None]:
    stored = values.astype(np.float32).astype(np.float64)  # what the file holds
    finite = stored[np.isfinite(stored)]
    if finite.size == 0:
        return dict.fromkeys(("min", "max", "mean", "std", "p01", "p50", "p99"))
    return {
        "min": finite.min(), "max": finite.max(), "mean": finite.mean(), "std": finite.std(),
        "p01": np.percentile(finite, 1), "p50": np.percentile(finite, 50),
        "p99": np.percentile(finite, 99),
    }  # fmt: skip


def test_every_statistic_matches_numpy_layer_by_layer():
    layers = _layers(np.random.default_rng(0))
    refs = [layer_refs(f"layer{i}", layer) for i, layer in enumerate(layers)]
    with np.errstate(all="ignore"):
        reports = layer_reports(read_layers(refs, 1e-5))
    assert [r.name for r in reports] == [f"layer{i}" for i in range(len(layers))]
    for layer, report in zip(layers, reports, strict=True):
        assert report.channels == len(layer["mean"]) and report.affine == ("weight" in layer)
        quantities = [("mean", report.running_mean), ("var", report.running_var)]
        if "weight" in layer:
            quantities += [("weight", report.weight), ("bias", report.bias)]
        else:
            assert report.weight is None and report.bias is None
        for key, got in quantities:
            assert got is not None
            for stat, value in _expected(layer[key]).items():
                if value is None:
                    assert getattr(got, stat) is None, (report.name, key, stat)
                else:
                    assert getattr(got, stat) == pytest.approx(value, rel=1e-12, abs=1e-300)
            assert got.nonfinite == int(np.sum(~np.isfinite(layer[key].astype(np.float32))))
        assert report.running_var.negative == int(np.sum(layer["var"] < 0))
        np.testing.assert_array_equal(report.values.running_var, layer["var"].astype(np.float32))


def test_a_real_model_is_summarised_as_torch_reduces_it(model: nn.Module):
    bn = model.bn2d
    tensors = {"mean": bn.running_mean, "var": bn.running_var, "weight": bn.weight}
    refs = [layer_refs("bn2d", {k: v.detach().numpy() for k, v in tensors.items()})]
    (report,) = layer_reports(read_layers(refs, 1e-5))
    var = bn.running_var.double()
    assert report.running_var.mean == pytest.approx(var.mean().item(), rel=1e-12)
    assert report.running_var.std == pytest.approx(var.std(unbiased=False).item(), rel=1e-12)
    assert report.running_var.p50 == pytest.approx(torch.quantile(var, 0.5).item(), rel=1e-12)
    assert report.running_var.p99 == pytest.approx(torch.quantile(var, 0.99).item(), rel=1e-12)
