"""`bnstat diff`: per-layer drift between two checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from zoo import SAMPLES


def layers(result) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {layer["name"]: layer for layer in json.loads(result.stdout)["layers"]}


def test_a_file_against_itself_has_no_change(cli):
    result = cli(
        "diff", SAMPLES / "healthy.pt", SAMPLES / "healthy.safetensors", "--fail-on-change"
    )
    assert result.exit_code == 0
    assert "0 of 7 layers changed" in result.stdout


def test_changed_gamma_and_changed_statistics(cli):
    dead = layers(
        cli("diff", SAMPLES / "healthy.pt", SAMPLES / "bn004_dead_channel.pt", "-f", "json")
    )
    assert [name for name, layer in dead.items() if layer["changed"]] == ["block1.bn1"]
    assert dead["block1.bn1"]["weight_change"] > 0.5 and dead["block1.bn1"]["mean_shift"] == 0
    shifted = layers(
        cli(
            "diff",
            SAMPLES / "healthy.safetensors",
            SAMPLES / "stats_inverted.safetensors",
            "-f",
            "json",
        )
    )
    assert all(layer["changed"] and layer["mean_shift"] > 0.1 for layer in shifted.values())
    result = cli(
        "diff",
        SAMPLES / "healthy.safetensors",
        SAMPLES / "stats_inverted.safetensors",
        "--fail-on-change",
    )
    assert result.exit_code == 1


def test_layers_only_in_one_file_or_of_another_size(cli, tmp_path):
    state = torch.load(SAMPLES / "healthy.pt", weights_only=True)
    edited = {k: v for k, v in state.items() if not k.startswith("fc_bn.")}
    for key in ("running_mean", "running_var", "weight", "bias"):
        edited[f"stem.bn.{key}"] = state[f"stem.bn.{key}"][:8].clone()
    edited["extra.running_mean"], edited["extra.running_var"] = torch.zeros(3), torch.ones(3)
    torch.save(edited, tmp_path / "edited.pt")
    diff = layers(cli("diff", SAMPLES / "healthy.pt", tmp_path / "edited.pt", "-f", "json"))
    assert diff["fc_bn"]["channels"] == [64, None] and diff["extra"]["channels"] == [None, 3]
    assert diff["stem.bn"]["channels"] == [16, 8] and diff["stem.bn"]["mean_shift"] is None


def test_diff_needs_no_torch():
    files = [str(SAMPLES / "healthy.pt"), str(SAMPLES / "bn002_negative_variance.safetensors")]
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from bnstat.cli import main\n"
        f"sys.argv = ['bnstat', 'diff', *{files!r}]\n"
        "main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "1 of 7 layers changed" in result.stdout


def test_unreadable_input_is_exit_2(cli):
    result = cli("diff", SAMPLES / "healthy.pt", SAMPLES / "unreadable" / "empty.pt")
    assert result.exit_code == 2 and "empty file" in result.stderr


def report(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_each_side_chooses_its_model(cli):
    """The model against its EMA copy, both in one file."""
    ema_stale = SAMPLES / "ema_stale.pt"
    both = report(
        cli("diff", ema_stale, ema_stale, "--source-a", "model", "--source-b", "ema", "-f", "json")
    )
    assert (both["a"]["source"], both["b"]["source"]) == ("model", "ema")
    assert both["matching"] == "name" and len(both["layers"]) == 7
    # the EMA holds the live model's statistics beside averaged weights: only gamma moved
    assert all(layer["mean_shift"] == 0 for layer in both["layers"])
    assert all(layer["weight_change"] > 0 for layer in both["layers"])
    table = cli("diff", ema_stale, ema_stale, "--source-a", "model", "--source-b", "ema").stdout
    assert "A: " in table and "[model]" in table and "[ema]" in table


def test_a_source_a_file_does_not_hold_is_exit_2(cli):
    result = cli("diff", SAMPLES / "ema_stale.pt", SAMPLES / "healthy.pt", "--source-a", "swa")
    assert result.exit_code == 2
    assert "holds no model 'swa' (it holds 'model', 'ema')" in result.stderr


def test_a_torch_checkpoint_against_its_onnx_export_matches_by_module_path(cli):
    pytest.importorskip("onnx")
    result = cli("diff", SAMPLES / "healthy.pt", SAMPLES / "digits.onnx", "-f", "json")
    diff = report(result)
    assert diff["matching"] == "module-path"
    pairs = [(layer["name"], layer["name_b"]) for layer in diff["layers"]]
    assert pairs[0] == ("stem.bn", "/stem/bn/BatchNormalization") and len(pairs) == 7
    assert diff["changed"] == 0
    table = cli("diff", SAMPLES / "healthy.pt", SAMPLES / "digits.onnx").stdout
    assert "layers matched by the module paths in ONNX node names" in table
    assert "0 of 7 layers changed" in table


def test_layers_without_shared_names_match_by_order_and_channels(cli, tmp_path):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(SAMPLES / "digits.onnx"))
    for node in model.graph.node:
        node.name = ""  # names then come from the convolutions: /stem/conv/Conv, ...
    unnamed = tmp_path / "unnamed.onnx"
    onnx.save(model, str(unnamed))
    diff = report(cli("diff", SAMPLES / "healthy.pt", unnamed, "-f", "json"))
    assert diff["matching"] == "order" and diff["changed"] == 0
    assert [layer["name"] for layer in diff["layers"]][-1] == "fc_bn"
    assert (
        "layers matched by order and channel count"
        in cli("diff", SAMPLES / "healthy.pt", unnamed).stdout
    )


def test_the_eps_comes_from_the_config_file_or_the_flag(cli, tmp_path, monkeypatch, write_st):
    """A mean shift is measured in sqrt(var + eps): with tiny variances eps decides it."""
    before = {"bn.running_mean": torch.zeros(3), "bn.running_var": torch.full((3,), 1e-4)}
    after = {**before, "bn.running_mean": torch.full((3,), 0.01)}
    a, b = write_st(before, name="a.safetensors"), write_st(after, name="b.safetensors")
    monkeypatch.chdir(tmp_path)

    def shift(*extra: object) -> float:
        result = cli("diff", a, b, "-f", "json", *extra)
        assert result.exit_code == 0, result.stderr
        return layers(result)["bn"]["mean_shift"]

    assert shift() == pytest.approx(0.01 / (1e-4 + 1e-5) ** 0.5)
    (tmp_path / "pyproject.toml").write_text("[tool.bnstat]\neps = 0.1\n")
    assert shift() == pytest.approx(0.01 / (1e-4 + 0.1) ** 0.5)
    assert shift("--eps", "1e-3") == pytest.approx(0.01 / (1e-4 + 1e-3) ** 0.5)
    other = tmp_path / "other.toml"
    other.write_text("eps = 0.01\n")
    assert shift("--config", other) == pytest.approx(0.01 / (1e-4 + 0.01) ** 0.5)
    (tmp_path / "pyproject.toml").write_text("[tool.bnstat]\nepsilon = 0.1\n")
    assert cli("diff", a, b).exit_code == 2  # a typo in the file is an error here too
