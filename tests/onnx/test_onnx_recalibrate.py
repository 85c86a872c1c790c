"""Recalibrating ONNX models in onnxruntime: no source code, only the statistics change."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx.helper")
pytest.importorskip("onnxruntime")

import onnx
from onnx import helper, numpy_helper
from onnx_support import (
    SAMPLES,
    accuracy,
    calibration_folder,
    consistency_errors,
    digits_images,
    digits_test_split,
    save,
    two_layer_model,
)

DIGITS = SAMPLES / "digits"
TOLERANCE = 1e-4  # relative; float32 inference measured against float64 sums


def recalibrate(cli, model, data, output, *extra):  # type: ignore[no-untyped-def]
    return cli("recalibrate", model, "--data", data, "--output", output, "--workers", "0", *extra)


def initializers(path):  # type: ignore[no-untyped-def]
    model = onnx.load(str(path), load_external_data=False)
    return {tensor.name: tensor.SerializeToString() for tensor in model.graph.initializer}


def nodes(path):  # type: ignore[no-untyped-def]
    return [node.SerializeToString() for node in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def repaired(tmp_path_factory):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from bnstat.cli import app

    output = tmp_path_factory.mktemp("repaired") / "fixed.onnx"
    arguments = ["recalibrate", str(SAMPLES / "digits_stats_reset.onnx"), "--data", str(DIGITS)]
    result = CliRunner().invoke(app, [*arguments, "--output", str(output), "-f", "json"])
    assert result.exit_code == 0, result.stderr
    return output, json.loads(result.stdout)


def test_reset_statistics_become_the_eval_mode_input_statistics(repaired):
    output, report = repaired
    assert report["samples"] == 300 and len(report["layers"]) == 7
    assert max(consistency_errors(output, digits_images())) < TOLERANCE
    assert report["consistency"] < TOLERANCE


def test_reset_statistics_recover_the_test_accuracy(repaired):
    pytest.importorskip("sklearn")
    images, labels = digits_test_split()
    before = accuracy(SAMPLES / "digits_stats_reset.onnx", images, labels)
    healthy = accuracy(SAMPLES / "digits.onnx", images, labels)
    after = accuracy(repaired[0], images, labels)
    assert before < 0.5 and after >= healthy - 0.005


def test_shared_statistics_get_their_own_constants_and_nothing_else_changes(repaired):
    original, fixed = (
        onnx.load(str(SAMPLES / "digits_stats_reset.onnx")),
        onnx.load(str(repaired[0])),
    )
    for field in ("ir_version", "producer_name", "producer_version", "opset_import"):
        assert getattr(fixed, field) == getattr(original, field)
    assert [n.name for n in fixed.graph.node] == [n.name for n in original.graph.node]
    changed = [
        (old.op_type, new.op_type)
        for old, new in zip(original.graph.node, fixed.graph.node, strict=True)
        if old.SerializeToString() != new.SerializeToString()
    ]
    assert changed == [("Identity", "Constant")] * 8  # the Identity of a shared bias stays
    before, after = initializers(SAMPLES / "digits_stats_reset.onnx"), initializers(repaired[0])
    assert sorted(k for k in before if before[k] != after[k]) == sorted(
        f"{layer}.running_{stat}" for layer in ("stem.bn", "block2.bn1", "fc_bn")
        for stat in ("mean", "var")
    )  # fmt: skip
    assert fixed.graph.input == original.graph.input and fixed.graph.output == original.graph.output


def test_a_healthy_export_changes_only_its_statistic_tensors(cli, tmp_path):
    output = tmp_path / "fixed.onnx"
    assert recalibrate(cli, SAMPLES / "digits.onnx", DIGITS, output).exit_code == 0
    assert nodes(output) == nodes(SAMPLES / "digits.onnx")
    before, after = initializers(SAMPLES / "digits.onnx"), initializers(output)
    assert before.keys() == after.keys()
    assert {k for k in before if before[k] != after[k]} == {
        k for k in before if k.endswith(("running_mean", "running_var"))
    }


@pytest.mark.parametrize("storage", ["initializer", "constant", "value_floats", "identity"])
def test_statistics_are_rewritten_where_they_are_stored(cli, tmp_path, storage):
    folder, samples = calibration_folder(tmp_path / "data")
    model = save(two_layer_model(storage), tmp_path / "model.onnx")
    output = tmp_path / "fixed.onnx"
    result = recalibrate(
        cli, model, folder, output, "--passes", "2", "--report", tmp_path / "r.json"
    )
    assert result.exit_code == 0, result.stderr
    assert max(consistency_errors(output, samples)) < TOLERANCE
    assert [n.op_type for n in onnx.load(str(output)).graph.node] == [
        n.op_type for n in onnx.load(str(model)).graph.node
    ]
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["sweep_changes"]) == 1 and report["sweep_changes"][0] < 1e-6


def test_statistics_read_by_two_layers_are_split(cli, tmp_path):
    folder, samples = calibration_folder(tmp_path / "data")
    model = two_layer_model()
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            node.input[3], node.input[4] = "bn1.mean", "bn1.var"
    path = save(model, tmp_path / "shared.onnx")
    output = tmp_path / "fixed.onnx"
    assert recalibrate(cli, path, folder, output).exit_code == 0
    assert max(consistency_errors(output, samples)) < TOLERANCE
    fixed = onnx.load(str(output))
    added = [n for n in fixed.graph.node if n.op_type == "Constant"]
    assert [n.output[0] for n in added] == ["bn1.running_mean", "bn1.running_var"]
    assert len(fixed.graph.initializer) == len(model.graph.initializer)


def test_a_constant_of_shape_statistic_becomes_a_constant(cli, tmp_path):
    folder, samples = calibration_folder(tmp_path / "data")
    model = two_layer_model()
    shape = numpy_helper.from_array(np.array([4], dtype=np.int64), "bn2.shape")
    fill = helper.make_node(
        "ConstantOfShape",
        ["bn2.shape"],
        ["bn2.filled_var"],
        name="fill",
        value=numpy_helper.from_array(np.ones(1, np.float32)),
    )
    model.graph.initializer.append(shape)
    model.graph.node.insert(0, fill)
    next(n for n in model.graph.node if n.name == "bn2").input[4] = "bn2.filled_var"
    output = tmp_path / "fixed.onnx"
    assert recalibrate(cli, save(model, tmp_path / "m.onnx"), folder, output).exit_code == 0
    assert max(consistency_errors(output, samples)) < TOLERANCE
    node = next(n for n in onnx.load(str(output)).graph.node if n.name == "fill")
    assert node.op_type == "Constant" and list(node.output) == ["bn2.filled_var"]


def test_external_data_stays_in_its_side_file(cli, tmp_path):
    folder, samples = calibration_folder(tmp_path / "data")
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir(), target.mkdir()
    options = {"save_as_external_data": True, "location": "weights.data", "size_threshold": 0}
    model = save(two_layer_model(), source / "model.onnx", **options)
    side = (source / "weights.data").read_bytes()
    for output in (target / "model.onnx", model):  # another folder, then in place
        extra = ("--in-place",) if output == model else ()
        assert recalibrate(cli, model, folder, output, *extra).exit_code == 0
        assert max(consistency_errors(output, samples)) < TOLERANCE
        assert (output.parent / "weights.data").read_bytes() == side
        kept = onnx.load(str(output), load_external_data=False).graph.initializer
        assert {t.name for t in kept if t.external_data} == {"conv1.weight", "conv2.weight"} | {
            f"bn{i}.{leaf}" for i in (1, 2) for leaf in ("weight", "bias")
        }


def test_a_static_batch_runs_whole_batches_only(cli, tmp_path):
    model = onnx.load(str(SAMPLES / "digits_stats_reset.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 32
    output = tmp_path / "fixed.onnx"
    result = recalibrate(cli, save(model, tmp_path / "static.onnx"), DIGITS, output, "-f", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["samples"], report["skipped_samples"]) == (288, 12)


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("digits_folded.onnx", (), "no BatchNormalization nodes"),
        ("digits.onnx", ("--method", "train-average"), "no training mode: use the exact method"),
        ("digits.onnx", ("--arch", "x.py:f"), "an ONNX model runs as it is"),
        ("digits.onnx", ("--output", "out.safetensors"), "bnstat writes .onnx"),
    ],
)
def test_what_cannot_be_done_is_refused(cli, tmp_path, model, extra, message):
    result = recalibrate(cli, SAMPLES / model, DIGITS, tmp_path / "out.onnx", *extra)
    assert result.exit_code == 2 and message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_two_inputs_is_refused(cli, tmp_path):
    model = onnx.load(str(SAMPLES / "digits.onnx"))
    model.graph.input.append(helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, [1]))
    result = recalibrate(cli, save(model, tmp_path / "two.onnx"), DIGITS, tmp_path / "out.onnx")
    assert result.exit_code == 2 and "the model takes the inputs ['image', 'mask']" in result.stderr


def test_without_onnxruntime_the_error_names_the_extra(tmp_path):
    arguments = ["recalibrate", str(SAMPLES / "digits.onnx"), "--data", str(DIGITS)]
    arguments += ["--output", str(tmp_path / "out.onnx")]
    code = (
        "import sys\nsys.modules['onnxruntime'] = None\nfrom bnstat.cli import main\n"
        f"sys.argv = ['bnstat', *{arguments!r}]\nmain()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.endswith(
        "recalibrating ONNX models needs onnxruntime, which is not installed: "
        "pip install 'bnstat[onnx]'"
    )
