"""Inspecting ONNX models: BatchNormalization nodes, however exporters store their tensors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx.helper")

import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx_support import (
    SAMPLES,
    STORAGES,
    layer_values,
    model_of,
    save,
    two_layer_model,
)
from safetensors.numpy import load_file

from bnstat.errors import UnsupportedCheckpointError
from bnstat.readers.base import CheckpointFormat
from bnstat.readers.sniff import Container, sniff
from bnstat.stages.open_checkpoint import open_checkpoint

DIGITS_LAYERS = ("stem.bn", "block1.bn1", "block1.bn2", "block2.bn1", "block2.bn2")
DIGITS_LAYERS += ("block2.shortcut.bn", "fc_bn")
LEAVES = ("weight", "bias", "running_mean", "running_var")


def layers_of(cli, path, *extra):  # type: ignore[no-untyped-def]
    result = cli("inspect", path, "--format", "json", *extra)
    (entry,) = json.loads(result.stdout)["checkpoints"]
    return result, entry


def test_torch_export_reads_as_its_state_dict(cli):
    result, entry = layers_of(cli, SAMPLES / "digits.onnx")
    assert result.exit_code == 0 and entry["format"] == "onnx" and entry["findings"] == []
    state = load_file(SAMPLES / "healthy.safetensors")
    names = [f"/{layer.replace('.', '/')}/BatchNormalization" for layer in DIGITS_LAYERS]
    assert [layer["name"] for layer in entry["layers"]] == names
    with open_checkpoint(SAMPLES / "digits.onnx") as raw:
        assert raw.format is CheckpointFormat.ONNX
        for name, layer in zip(names, DIGITS_LAYERS, strict=True):
            for leaf in LEAVES:  # block2.shortcut.bn.bias is an Identity of block2.bn2.bias
                np.testing.assert_array_equal(
                    raw.root[f"{name}.{leaf}"].read(), state[f"{layer}.{leaf}"]
                )
    eps = {(layer["eps"], layer["eps_source"], layer["kind"]) for layer in entry["layers"]}
    assert eps == {(float(np.float32(1e-5)), "file", "BatchNormalization")}


@pytest.mark.parametrize("storage", STORAGES)
def test_every_way_of_storing_the_tensors_is_read(tmp_path, storage):
    values = [layer_values(1), layer_values(2)]
    path = save(two_layer_model(storage, values=values), tmp_path / "model.onnx")
    with open_checkpoint(path) as raw:
        for index, layer in enumerate(("bn1", "bn2")):
            for leaf, key in zip(LEAVES, values[index], strict=True):
                expected = values[index][key].astype(np.float32)
                if storage == "fill" and leaf == "weight":
                    expected = np.full_like(expected, expected[0])
                np.testing.assert_array_equal(raw.root[f"{layer}.{leaf}"].read(), expected)


def test_typed_fields_and_float16_are_read(tmp_path):
    values = np.array([0.5, 1.5], dtype=np.float16)  # one per input channel
    half = helper.make_tensor("bn.running_var", TensorProto.FLOAT16, [2], values)
    assert not half.raw_data and list(half.int32_data) == values.view(np.uint16).tolist()
    floats = helper.make_tensor("bn.running_mean", TensorProto.FLOAT, [2], [0.1, 0.2])
    weights = [numpy_helper.from_array(np.ones(2, np.float32), f"bn.{k}") for k in ("w", "b")]
    node = helper.make_node(
        "BatchNormalization",
        ["image", "bn.w", "bn.b", "bn.running_mean", "bn.running_var"],
        ["out"],
        name="bn",
    )
    path = save(model_of([node], [half, floats, *weights], "out"), tmp_path / "typed.onnx")
    with open_checkpoint(path) as raw:
        np.testing.assert_array_equal(raw.root["bn.running_var"].read(), values)
        assert raw.root["bn.running_var"].dtype.name == "float16"
        np.testing.assert_allclose(raw.root["bn.running_mean"].read(), [0.1, 0.2])


def test_unnamed_nodes_are_named_by_their_convolution_or_output(tmp_path, cli):
    path = save(two_layer_model(bn_names=("", ""), conv_names=("stem", "")), tmp_path / "m.onnx")
    _, entry = layers_of(cli, path)
    assert [layer["name"] for layer in entry["layers"]] == ["stem", "b1"]


def test_repeated_names_are_numbered(tmp_path, cli):
    path = save(two_layer_model(bn_names=("bn", "bn")), tmp_path / "m.onnx")
    _, entry = layers_of(cli, path)
    assert [layer["name"] for layer in entry["layers"]] == ["bn", "bn#2"]


def test_the_epsilon_attribute_is_used_by_the_rules(tmp_path, cli):
    values = layer_values(1)
    values["var"][2] = 0.0  # collapsed: any variation is amplified by 1 / sqrt(eps)
    model = two_layer_model(eps=(1e-3, None), values=[values, layer_values(2)])
    _, entry = layers_of(cli, save(model, tmp_path / "m.onnx"))
    assert [(layer["eps"], layer["eps_source"]) for layer in entry["layers"]] == [
        (float(np.float32(1e-3)), "file"),
        (1e-5, "file"),  # the operator's default when the attribute is absent
    ]
    (bn005,) = [f for f in entry["findings"] if f["rule"] == "BN005"]
    assert "eps 0.001" in bn005["message"] and "31.62x" in bn005["message"]


@pytest.mark.parametrize(("eps", "fires"), [(1e-5, True), (1e-2, False)])
def test_the_folded_scale_depends_on_the_epsilon_attribute(tmp_path, cli, eps, fires):
    values = layer_values(1)
    values["var"][2] = 1e-6  # |w| / sqrt(1e-6 + eps): 300x the median with 1e-5, 10x with 1e-2
    model = two_layer_model(eps=(eps, eps), values=[values, layer_values(2)])
    _, entry = layers_of(cli, save(model, tmp_path / "m.onnx"))
    assert (("BN009", "bn1") in {(f["rule"], f["layer"]) for f in entry["findings"]}) is fires


def test_external_data_is_read_from_its_side_file(tmp_path, cli):
    model = two_layer_model()
    inline = save(model, tmp_path / "inline.onnx")
    external = tmp_path / "external"
    external.mkdir()
    options = {"save_as_external_data": True, "location": "model.onnx.data", "size_threshold": 0}
    path = save(model, external / "model.onnx", **options)
    stored = onnx.load(path, load_external_data=False).graph.initializer
    assert all(tensor.data_location == TensorProto.EXTERNAL for tensor in stored)
    _, expected = layers_of(cli, inline)
    _, got = layers_of(cli, path)
    assert got["layers"] == expected["layers"]
    report = json.loads(cli("check", external, "--format", "json").stdout)
    assert [entry["path"] for entry in report["checkpoints"]] == [str(path)]  # not the side file


def test_a_side_file_with_a_checkpoint_extension_is_not_scanned_on_its_own(tmp_path, cli):
    """weights.bin would count as an unreadable checkpoint if it were not the model's."""
    options = {"save_as_external_data": True, "location": "weights.bin", "size_threshold": 0}
    path = save(two_layer_model(), tmp_path / "model.onnx", **options)
    result = cli("check", tmp_path, "--format", "json")
    assert result.exit_code == 0, result.stdout
    assert [entry["path"] for entry in json.loads(result.stdout)["checkpoints"]] == [str(path)]


@pytest.mark.parametrize(
    ("location", "message"),
    [("missing.bin", "cannot be read"), ("../outside.bin", "inside the model's folder")],
)
def test_bad_external_data_is_an_error(tmp_path, cli, location, message):
    model = two_layer_model()
    for tensor in model.graph.initializer:
        if tensor.name == "bn1.var":
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            tensor.external_data.add(key="location", value=location)
    (tmp_path / "outside.bin").write_bytes(bytes(64))
    (tmp_path / "inner").mkdir()
    result = cli("inspect", save(model, tmp_path / "inner" / "m.onnx"))
    assert result.exit_code == 2
    assert message in result.stderr and "bn1: running_var" in result.stderr


def test_a_folded_model_has_no_layers_and_an_info(cli):
    result, entry = layers_of(cli, SAMPLES / "digits_folded.onnx")
    assert result.exit_code == 0 and entry["error"] is None and entry["layers"] == []
    assert [(f["rule"], f["severity"]) for f in entry["findings"]] == [("BN013", "info")]
    assert cli("check", SAMPLES / "digits_folded.onnx", "--fail-on", "warning").exit_code == 0


def with_computed_mean(name: str) -> onnx.ModelProto:
    """The two-layer model with bn2's mean computed by an Add node into the value `name`."""
    model = two_layer_model()
    for node in model.graph.node:
        if node.name == "bn2":
            node.input[3] = name
    model.graph.node.insert(0, helper.make_node("Add", ["bn2.mean", "bn2.mean"], [name]))
    return model


def test_computed_statistics_are_a_clear_error(tmp_path, cli):
    result = cli("check", save(with_computed_mean("computed_mean"), tmp_path / "m.onnx"))
    assert result.exit_code == 2
    assert "bn2: its running_mean (computed_mean) comes from a Add node" in result.stderr


def test_onnx_is_sniffed_by_content_whatever_the_name(tmp_path):
    named_bin = save(two_layer_model(), tmp_path / "model.bin")
    assert sniff(named_bin) is Container.ONNX
    bare = two_layer_model()
    bare.ClearField("producer_name")  # ir_version followed directly by the graph
    assert sniff(save(bare, tmp_path / "bare.data")) is Container.ONNX


@pytest.mark.parametrize(
    "head",
    [
        b"\x08\x01\x12\x40\x0a\x3e\x0a\x05serve",  # a TensorFlow SavedModel
        np.array([1.1e-34, 0.5, 0.25, 2.0] * 8, dtype="<f4").tobytes(),  # raw float32 weights
        b"\x08\x07\x12\xff\xff\x03pytorch",  # a producer name longer than the file
        b"\x08\x07\x9a\x01\x02ab",  # field 19, which ModelProto does not have
    ],
)
def test_other_files_are_not_taken_for_onnx(tmp_path, head):
    """Each is refused as what it is: a file bnstat does not read, with its first bytes."""
    path = tmp_path / "file.onnx"
    path.write_bytes(head)
    with pytest.raises(UnsupportedCheckpointError, match="not a checkpoint format bnstat reads"):
        sniff(path)


def test_without_the_onnx_package_the_error_names_the_extra():
    code = (
        "import sys\nsys.modules['onnx'] = None\nfrom bnstat.cli import main\n"
        f"sys.argv = ['bnstat', 'inspect', {str(SAMPLES / 'digits.onnx')!r}]\nmain()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.endswith(
        "reading ONNX models needs onnx, which is not installed: pip install 'bnstat[onnx]'"
    )


def test_a_tensor_shorter_than_its_shape_is_an_error(tmp_path, cli):
    model = two_layer_model()
    var = next(t for t in model.graph.initializer if t.name == "bn2.var")
    var.raw_data = var.raw_data[:-4]
    result = cli("check", save(model, tmp_path / "m.onnx"))
    assert result.exit_code == 2 and "bn2: running_var: its shape needs 16 bytes" in result.stderr


def test_a_huge_constant_of_shape_is_refused_not_expanded(tmp_path, cli):
    model = two_layer_model("fill")
    shape = next(t for t in model.graph.initializer if t.name == "bn1.weight.shape")
    shape.CopyFrom(numpy_helper.from_array(np.array([2**40], dtype=np.int64), shape.name))
    bn1 = next(n for n in model.graph.node if n.name == "bn1")
    bn1.input[3] = bn1.input[4] = "bn1.weight"  # 2**40 channels of one stored value
    result = cli("check", save(model, tmp_path / "m.onnx"))
    assert result.exit_code == 2 and "over the limit" in result.stderr


def with_bytes_in(path: Path, placeholder: str) -> Path:
    """The saved model with `placeholder` (a name in it) overwritten by invalid UTF-8."""
    data = path.read_bytes()
    assert placeholder.encode() in data
    path.write_bytes(
        data.replace(placeholder.encode(), b"\xff\xfe" + b"X" * (len(placeholder) - 2))
    )
    return path


def test_a_node_name_that_is_not_utf8_is_read_as_text(tmp_path, cli):
    """protobuf hands such a name out as bytes: it is decoded, not a crash."""
    path = with_bytes_in(
        save(two_layer_model(bn_names=("bnNAME", "bn2")), tmp_path / "m.onnx"), "bnNAME"
    )
    assert isinstance(
        next(n for n in onnx.load(path).graph.node if n.op_type == "BatchNormalization").name, bytes
    )
    result, entry = layers_of(cli, path)
    assert result.exit_code == 0, result.stderr
    assert [layer["name"] for layer in entry["layers"]] == ["\ufffd\ufffdXXXX", "bn2"]


def test_a_computed_input_whose_name_is_not_utf8_is_a_clean_error(tmp_path, cli):
    path = with_bytes_in(save(with_computed_mean("INPUTNAME"), tmp_path / "m.onnx"), "INPUTNAME")
    result = cli("check", path)
    assert result.exit_code == 2
    assert "bn2: its running_mean (\ufffd\ufffdXXXXXXX) comes from a Add node" in result.stderr


def test_an_external_location_that_is_not_utf8_is_a_clean_error(tmp_path, cli):
    model = two_layer_model()
    for tensor in model.graph.initializer:
        if tensor.name == "bn1.var":
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            tensor.external_data.add(key="location", value="LOCATION.bin")
    path = with_bytes_in(save(model, tmp_path / "m.onnx"), "LOCATION.bin")
    result = cli("check", path)
    assert result.exit_code == 2 and "unexpected" not in result.stderr
    assert "external data file \ufffd\ufffdXXXXXXXXXX cannot be read" in result.stderr
