"""torch.export archives: tensors, layer classes and real eps, read without torch."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bnstat.analysis import analyze
from bnstat.readers.base import CheckpointFormat
from bnstat.settings import Settings
from bnstat.stages.find_state_dicts import find_state_dicts
from bnstat.stages.open_checkpoint import open_checkpoint


class Exportable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8, eps=1e-3)
        self.fc = nn.Linear(8, 5)
        self.head_bn = nn.BatchNorm1d(5, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))
        return self.head_bn(self.fc(x))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = Exportable().train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(6, 3, 5, 5) * 2 + 1)
    model.eval()
    path = tmp_path_factory.mktemp("pt2") / "model.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(2, 3, 5, 5),)), path)
    return path, model


def test_tensors_match_the_program(exported):
    path, _ = exported
    program_state = torch.export.load(path).state_dict
    with open_checkpoint(path) as raw:
        assert raw.format is CheckpointFormat.PT2
        (state,) = find_state_dicts(raw)
        buffers = dict(torch.export.load(path).module().named_buffers())
        expected = {**program_state, **buffers}
        assert set(state.tensors) == set(expected)
        for key, ref in state.tensors.items():
            np.testing.assert_array_equal(ref.read(), expected[key].detach().numpy(), err_msg=key)


def test_layers_have_their_classes_and_real_eps(exported):
    path, _ = exported
    (entry,) = analyze([path], Settings()).checkpoints
    layers = {layer.name: layer for layer in entry.layers}
    assert (layers["bn"].kind, layers["bn"].eps, layers["bn"].eps_from_file) == (
        "BatchNorm2d",
        1e-3,
        True,
    )
    assert (layers["head_bn"].kind, layers["head_bn"].affine) == ("BatchNorm1d", False)
    assert layers["bn"].num_batches_tracked == 3
    assert entry.findings == ()


def _rewrite(source: Path, target: Path, member_suffix: str, edit) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(member_suffix):
                data = json.dumps(edit(json.loads(data))).encode()
            zout.writestr(info.filename, data)


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (
            lambda c: {
                "config": {k: dict(v, path_name="../../etc/passwd") for k, v in c["config"].items()}
            },
            "not a plain name",
        ),
        (
            lambda c: {
                "config": {
                    k: dict(v, tensor_meta=dict(v["tensor_meta"], dtype=99))
                    for k, v in c["config"].items()
                }
            },
            "dtype code",
        ),
        (
            lambda c: {"config": {k: dict(v, use_pickle=True) for k, v in c["config"].items()}},
            "pickled",
        ),
    ],
)
def test_damaged_weight_configs_are_clean_errors(cli, exported, tmp_path, damage, needle):
    path, _ = exported
    broken = tmp_path / "broken.pt2"
    _rewrite(path, broken, "model_weights_config.json", damage)
    result = cli("inspect", broken)
    assert result.exit_code == 2 and needle in result.stderr
