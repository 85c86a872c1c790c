"""eps from a model hub folder's `config.json`, and the documented precedence: what the
file records, then `config.json`, then `--eps` / `[tool.bnstat]`, then 1e-5.

The model is a TensorFlow port's stem as a hub folder holds it: BatchNorm with eps 1e-3,
two dead filters whose variance collapsed to 0, `batch_norm_eps` in the config. BN005's
amplification is 1/sqrt(eps): about 32x, not the 316x that eps 1e-5 would claim.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from repositories import SPLITS_A_LAYER, healthy_state_dict, write_sharded
from safetensors.torch import load_file, save_file
from torch import nn

from bnstat.readers.model_config import config_eps

TF_EPS = 1e-3


def _stem() -> nn.Module:
    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8, eps=TF_EPS))
    stem.train()
    with torch.no_grad():
        for _ in range(4):
            stem(torch.randn(4, 3, 8, 8))
        stem[1].running_var[:2] = 0.0  # two dead filters
    return stem.eval()


def _hub_folder(folder: Path, config: dict[str, object] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in _stem().state_dict().items()}, path)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    return path


EFFICIENTNET = {
    "architectures": ["EfficientNetForImageClassification"],
    "model_type": "efficientnet",
    "batch_norm_eps": TF_EPS,
    "layer_norm_eps": 0.1,
}


def _checked(cli, *arguments: object) -> dict:  # type: ignore[no-untyped-def,type-arg]
    result = cli("check", *arguments, "--format", "json")
    assert result.exit_code == 0, result.stdout
    (entry,) = json.loads(result.stdout)["checkpoints"]
    return entry  # type: ignore[no-any-return]


def _bn005(entry: dict) -> str:  # type: ignore[type-arg]
    (message,) = [f["message"] for f in entry["findings"] if f["rule"] == "BN005"]
    return message  # type: ignore[no-any-return]


def test_batch_norm_eps_from_the_config_gives_the_true_amplification(cli, tmp_path):
    path = _hub_folder(tmp_path / "hub", EFFICIENTNET)
    entry = _checked(cli, path)
    assert "(eps 0.001)" in _bn005(entry) and "amplified up to 31.62x" in _bn005(entry)
    assert {(layer["eps"], layer["eps_source"]) for layer in entry["layers"]} == {
        (TF_EPS, "config")
    }
    config = str(tmp_path / "hub" / "config.json")
    assert entry["eps_config"] == {"path": config, "key": "batch_norm_eps", "eps": TF_EPS}


def test_without_a_config_the_eps_is_assumed(cli, tmp_path):
    entry = _checked(cli, _hub_folder(tmp_path / "hub", None))
    assert "amplified up to 316.2x" in _bn005(entry)
    assert entry["eps_config"] is None and entry["layers"][0]["eps_source"] == "assumed"


def test_the_table_says_where_the_eps_came_from(cli, tmp_path):
    result = cli("inspect", _hub_folder(tmp_path / "hub", EFFICIENTNET))
    assert "safetensors · 1 layer · eps 0.001 from config.json (batch_norm_eps)" in result.stdout


def test_the_config_wins_over_eps_and_the_settings_file(cli, tmp_path):
    path = _hub_folder(tmp_path / "hub", EFFICIENTNET)
    settings = tmp_path / "bnstat.toml"
    settings.write_text("eps = 0.5\n")
    entry = _checked(cli, path, "--eps", "1e-4", "--config", settings)
    assert entry["layers"][0]["eps"] == TF_EPS


def test_eps_and_the_settings_file_apply_without_a_config(cli, tmp_path):
    path = _hub_folder(tmp_path / "hub", {"model_type": "resnet"})
    settings = tmp_path / "bnstat.toml"
    settings.write_text("eps = 0.5\n")
    assert _checked(cli, path, "--config", settings)["layers"][0]["eps"] == 0.5
    assert _checked(cli, path, "--eps", "1e-4", "--config", settings)["layers"][0]["eps"] == 1e-4


def test_what_the_file_records_wins_over_the_config(cli, tmp_path):
    folder = tmp_path / "hub"
    _hub_folder(folder, {"batch_norm_eps": 0.25})
    torch.jit.script(_stem()).save(str(folder / "scripted.pt"))
    entry = _checked(cli, folder / "scripted.pt")
    assert (entry["layers"][0]["eps"], entry["layers"][0]["eps_source"]) == (TF_EPS, "file")


def test_a_sharded_model_takes_the_config_beside_its_index(cli, tmp_path):
    index = write_sharded(tmp_path / "hub", healthy_state_dict(), SPLITS_A_LAYER, "bin")
    (tmp_path / "hub" / "config.json").write_text(json.dumps({"batch_norm_eps": TF_EPS}))
    entry = _checked(cli, index)
    assert {layer["eps_source"] for layer in entry["layers"]} == {"config"}


@pytest.mark.parametrize(
    ("config", "eps"),
    [
        ({"model_type": "mobilenet_v2", "layer_norm_eps": 0.001}, 0.001),
        ({"model_type": "mobilenet_v1", "layer_norm_eps": 0.001}, 0.001),
        # the segmentation head's BatchNorm keeps 1e-5: the key is not the model's eps
        ({"model_type": "mobilenet_v2", "layer_norm_eps": 0.001,
          "architectures": ["MobileNetV2ForSemanticSegmentation"]}, None),
        ({"model_type": "vit", "layer_norm_eps": 1e-12}, None),  # LayerNorm's eps
        ({"model_type": "resnet"}, None),
        ({"batch_norm_eps": "1e-3"}, None),  # not a number
        ({"batch_norm_eps": 0}, None),
        ({"batch_norm_eps": True}, None),
        ({"backbone_config": {"batch_norm_eps": 0.001}}, None),  # only the top level counts
        ([0.001], None),  # not an object
    ],
)  # fmt: skip
def test_which_keys_state_the_batchnorm_eps(tmp_path, config, eps):
    (tmp_path / "config.json").write_text(json.dumps(config))
    found = config_eps(tmp_path / "model.safetensors")
    assert (found.eps if found is not None else None) == eps


def test_a_config_that_is_not_json_is_ignored(cli, tmp_path):
    path = _hub_folder(tmp_path / "hub", None)
    (tmp_path / "hub" / "config.json").write_text("{not json")
    assert _checked(cli, path)["layers"][0]["eps_source"] == "assumed"


def test_diff_uses_the_config_too(cli, tmp_path):
    """A dead filter's mean moved by 0.01: 0.01 / sqrt(0 + eps) standard deviations."""
    path = _hub_folder(tmp_path / "a", EFFICIENTNET)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = tmp_path / "b" / "model.safetensors"
    state = load_file(moved)
    state["1.running_mean"][0] += 0.01
    save_file(state, moved)
    result = cli("diff", path, moved, "--format", "json")
    assert result.exit_code == 0, result.stdout
    (layer,) = json.loads(result.stdout)["layers"]
    assert layer["mean_shift"] == pytest.approx(0.01 / TF_EPS**0.5, rel=1e-3)
