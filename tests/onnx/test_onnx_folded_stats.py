"""ONNX models whose exporter folded the statistics into scale and bias: one note, no BN003.

Converters such as Keras-to-ONNX write every BatchNormalization with mean 0 and variance
1 and put `gamma / sqrt(var + eps)` into the scale. The sample `digits_folded_stats.onnx`
is `digits.onnx` written that way (make_samples.py); it computes what `digits.onnx`
computes, and BN003 on each of its layers would be a false alarm.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx.helper")

import onnxruntime
from onnx_support import SAMPLES, layer_values, save, two_layer_model

FOLDED = SAMPLES / "digits_folded_stats.onnx"


def findings(cli, path):  # type: ignore[no-untyped-def]
    result = cli("check", path, "--format", "json", "--fail-on", "warning")
    (entry,) = json.loads(result.stdout)["checkpoints"]
    return result.exit_code, [(f["rule"], f["layer"], f["message"]) for f in entry["findings"]]


def test_the_folded_sample_computes_what_the_export_computes():
    image = np.random.default_rng(0).uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)
    outputs = [
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"image": image}
        )[0]
        for path in (SAMPLES / "digits.onnx", FOLDED)
    ]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)


def test_folded_statistics_get_one_note_and_no_bn003(cli):
    code, found = findings(cli, FOLDED)
    assert code == 0
    ((rule, layer, message),) = found
    assert (rule, layer) == ("BN013", None)
    assert "all 7 BatchNormalization layers read mean 0 and variance 1" in message
    assert "folded the statistics into scale and bias" in message


def zero_one(seed: int, weight: float | None = None) -> dict[str, np.ndarray]:
    values = layer_values(seed) | {"mean": np.zeros(4), "var": np.ones(4)}
    return values | ({"weight": np.full(4, weight)} if weight is not None else {})


def test_the_pattern_needs_every_layer_at_zero_and_one(cli, tmp_path):
    folded = save(two_layer_model(values=[zero_one(1), zero_one(2)]), tmp_path / "f.onnx")
    assert [rule for rule, *_ in findings(cli, folded)[1]] == ["BN013"]
    one_reset = save(two_layer_model(values=[zero_one(1), layer_values(2)]), tmp_path / "r.onnx")
    assert [(rule, layer) for rule, layer, _ in findings(cli, one_reset)[1]] == [("BN003", "bn1")]


def test_untrained_scales_are_an_untrained_export_not_a_folded_one(cli, tmp_path):
    untrained = [zero_one(1, weight=1.0), zero_one(2, weight=1.0)]
    path = save(two_layer_model(values=untrained), tmp_path / "untrained.onnx")
    code, found = findings(cli, path)
    assert code == 1
    assert [(rule, layer) for rule, layer, _ in found] == [("BN003", "bn1"), ("BN003", "bn2")]


def test_a_torch_file_with_reset_statistics_keeps_bn003(cli):
    code, found = findings(cli, SAMPLES / "stats_reset.safetensors")
    assert code == 1 and {rule for rule, *_ in found} == {"BN003"} and len(found) == 7
