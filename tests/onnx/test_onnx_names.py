"""Two exports of one model to one file must name its ONNX layers alike, in JSON and in
SARIF (whose fingerprints also hash the file's path)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("onnx.helper")

import onnx
import torch
from onnx_support import SAMPLES

sys.path.insert(0, str(SAMPLES))
from digits_model import build_model


def export(folder: Path, batch: int, strip_names: bool) -> Path:
    """The sample model with two dead channels (BN004) through torch's exporter."""
    model = build_model()
    model.load_state_dict(torch.load(SAMPLES / "bn004_dead_channel.pt", weights_only=True))
    folder.mkdir(exist_ok=True)
    path = folder / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(), (torch.rand(batch, 1, 8, 8),), path, dynamo=False,
            do_constant_folding=False, input_names=["image"],
            dynamic_axes={"image": {0: "batch"}},
        )  # fmt: skip
    if strip_names:
        exported = onnx.load(str(path))
        for node in exported.graph.node:
            node.name = ""
        onnx.save(exported, str(path))
    return path


def results(cli, path: Path) -> tuple[list[str], list[tuple[str, str, str]]]:  # type: ignore[no-untyped-def]
    report = json.loads(cli("check", path, "--format", "json").stdout)
    names = [layer["name"] for layer in report["checkpoints"][0]["layers"]]
    sarif = json.loads(cli("check", path, "--format", "sarif").stdout)
    return names, [
        (
            result["ruleId"],
            result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
            result["partialFingerprints"]["primaryLocationLineHash"],
        )
        for result in sarif["runs"][0]["results"]
    ]


@pytest.mark.parametrize("strip_names", [False, True], ids=["named", "unnamed"])
def test_layer_names_and_fingerprints_survive_a_second_export(cli, tmp_path, strip_names):
    first = results(cli, export(tmp_path / "model", 2, strip_names))
    second = results(cli, export(tmp_path / "model", 7, strip_names))  # exported again
    assert first == second
    names, findings = first
    assert len(set(names)) == 7
    assert [(rule, where) for rule, where, _ in findings] == [("BN004", names[1])]
    expected = "/block1/bn1/BatchNormalization"
    assert names[1] == (f"{expected}_output_0" if strip_names else expected)
