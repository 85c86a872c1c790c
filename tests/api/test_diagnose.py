"""`bnstat.diagnose`: the report of `check --data`, from a module and batches in memory,
scored against hooks on the eager model and against the command line on the same data."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import torch
from digits_support import ARCH, DIGITS_DIR, SAMPLES, digits_model, digits_tensor
from reference import eval_inputs
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

import bnstat
from bnstat.formats.json_report import report_dict

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "report-v1.schema.json").read_text())


def dict_loader(pixels: torch.Tensor) -> DataLoader[Any]:
    samples = [{"image": image, "label": 0} for image in pixels]
    return DataLoader(samples, batch_size=32, shuffle=True)  # type: ignore[arg-type]


def by_image(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Any:
    return model(batch["image"])


def test_diagnose_finds_what_check_data_finds_on_the_same_data(cli):
    model = digits_model("stats_inverted.safetensors")
    report = bnstat.diagnose(model, dict_loader(digits_tensor()), call_fn=by_image)
    result = cli(
        "check", SAMPLES / "stats_inverted.safetensors", "--arch", ARCH, "--data", DIGITS_DIR,
        "--workers", "0", "-f", "json",
    )  # fmt: skip
    from_cli = json.loads(result.stdout)["checkpoints"][0]
    entry = report.checkpoints[0]
    assert [(f.rule, f.layer, list(f.channels)) for f in report.findings] == [
        (f["rule"], f["layer"], f["channels"]) for f in from_cli["findings"]
    ]
    assert {f.rule for f in report.findings} == {"BN014"}
    assert [layer.name for layer in entry.layers] == [layer["name"] for layer in from_cli["layers"]]
    first = [layer.name for layer in entry.layers if layer.data and layer.data.first_divergent]
    assert first == ["stem.bn"] and entry.data is not None and entry.data.samples == 300
    assert "bnstat.recalibrate(model, data)" in report.findings[0].fix
    jsonschema.validate(json.loads(json.dumps(report_dict(report))), SCHEMA)


def test_the_data_fit_is_what_hooks_measure():
    model, pixels = digits_model("stats_inverted.safetensors"), digits_tensor()
    entry = bnstat.diagnose(model, DataLoader(pixels, batch_size=50)).checkpoints[0]
    measured = eval_inputs(model, [pixels])
    modules = dict(model.named_modules())
    for layer in entry.layers:
        mean, _ = measured[layer.name]
        stored = modules[layer.name]
        shift = (mean - stored.running_mean.double()).abs() / (
            stored.running_var.double() + stored.eps
        ).sqrt()
        assert layer.data is not None and layer.data.samples == 300
        assert abs(layer.data.mean_shift_max - float(shift.max())) < 1e-4 * float(shift.max())


def test_a_healthy_model_on_its_own_data_is_quiet_and_nothing_changes():
    model = digits_model()
    before = copy.deepcopy(model.state_dict())
    report = bnstat.diagnose(AveragedModel(model), DataLoader(digits_tensor(), batch_size=64))
    assert report.findings == () and report.verdict.value == "passed"
    entry = report.checkpoints[0]
    assert entry.format == "module" and all(layer.data is not None for layer in entry.layers)
    for name, value in before.items():
        assert torch.equal(model.state_dict()[name], value), name
