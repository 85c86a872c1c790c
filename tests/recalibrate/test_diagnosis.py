"""`inspect`/`check --data`: which layer's statistics do not fit the data, and where it starts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from digits_support import ARCH, DIGITS_DIR, SAMPLES, digits_model
from PIL import Image
from safetensors.torch import load_file, save_file

pytest.importorskip("sklearn")
from make_samples import load_data

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "report-v1.schema.json").read_text())


def write_pngs(folder: Path, pixels: np.ndarray) -> Path:
    """uint8 (N, 8, 8) images as PNGs, the way the sample digits are stored."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    return folder


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 360 test images, none of which the model saw in training."""
    return write_pngs(tmp_path_factory.mktemp("test_split"), load_data().test_pixels)


@pytest.fixture(scope="module")
def inverted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A domain shift: the test images inverted, 255 - x."""
    return write_pngs(tmp_path_factory.mktemp("inverted"), 255 - load_data().test_pixels)


def check(cli, checkpoint, data, *extra):  # type: ignore[no-untyped-def]
    arch = (
        ()
        if str(checkpoint).endswith((".onnx", ".pt2")) or "scripted" in str(checkpoint)
        else ("--arch", ARCH)
    )
    result = cli("check", checkpoint, "--data", data, "--workers", "0", "-f", "json", *arch, *extra)
    assert result.exit_code in (0, 1), result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    return report


def diagnosed(report: dict, source: str | None = None) -> dict:  # type: ignore[type-arg]
    return next(c for c in report["checkpoints"] if c["source"] == source)


def first_off(entry: dict) -> list[str]:  # type: ignore[type-arg]
    return [layer["name"] for layer in entry["layers"] if layer["data"]["first_divergent"]]


def bn014(entry: dict) -> list[str]:  # type: ignore[type-arg]
    return [f["layer"] for f in entry["findings"] if f["rule"] == "BN014"]


@pytest.mark.parametrize("data", ["own", "held-out"])
def test_a_healthy_model_is_quiet_on_data_of_its_own_distribution(cli, held_out, data):
    entry = diagnosed(check(cli, SAMPLES / "healthy.pt", DIGITS_DIR if data == "own" else held_out))
    assert bn014(entry) == [] and first_off(entry) == []
    assert entry["data"]["samples"] == (300 if data == "own" else 360)
    assert all(layer["data"]["channels_off"] == 0 for layer in entry["layers"])


@pytest.mark.parametrize("checkpoint", ["stats_reset.safetensors", "stats_inverted.safetensors"])
def test_broken_statistics_are_flagged_from_the_first_layer(cli, checkpoint):
    entry = diagnosed(check(cli, SAMPLES / checkpoint, DIGITS_DIR))
    assert first_off(entry) == ["stem.bn"]
    assert bn014(entry)[0] == "stem.bn" and len(bn014(entry)) == 7
    first = next(f for f in entry["findings"] if f["rule"] == "BN014")
    assert "the problem starts here" in first["message"]
    assert first["fix"].startswith("recalibrate on this data: bnstat recalibrate ")
    assert f"--arch {ARCH}" in first["fix"] and "--data" in first["fix"]


def test_the_stale_ema_copy_is_flagged_and_the_model_is_not(cli):
    report = check(cli, SAMPLES / "ema_stale.pt", DIGITS_DIR)
    model, ema = diagnosed(report, "model"), diagnosed(report, "ema")
    assert bn014(model) == []
    assert first_off(ema) == ["block1.bn1"] and len(bn014(ema)) >= 4
    assert "--source ema" in next(f for f in ema["findings"] if f["rule"] == "BN014")["fix"]


def test_one_wrong_middle_layer_is_named_first(cli, tmp_path):
    state = load_file(SAMPLES / "healthy.safetensors")
    state["block2.bn1.running_var"] = state["block2.bn1.running_var"] * 9
    planted = tmp_path / "planted.safetensors"
    save_file(state, str(planted))
    entry = diagnosed(check(cli, planted, DIGITS_DIR))
    assert first_off(entry) == ["block2.bn1"]
    assert bn014(entry)[0] == "block2.bn1"
    layer = next(x for x in entry["layers"] if x["name"] == "block2.bn1")["data"]
    assert layer["channels_off"] == 24 and layer["var_ratio_max"] < 0.2
    downstream = next(
        f for f in entry["findings"] if f["rule"] == "BN014" and f["layer"] != "block2.bn1"
    )
    assert "possibly downstream of block2.bn1" in downstream["message"]


def test_a_domain_shift_is_flagged_from_the_first_layer(cli, inverted):
    entry = diagnosed(check(cli, SAMPLES / "healthy.pt", inverted))
    assert first_off(entry) == ["stem.bn"]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traced") / "traced.pt"
    torch.jit.save(torch.jit.trace(digits_model(), torch.rand(4, 1, 8, 8)), str(path))
    return path


def test_every_model_source_gives_the_same_numbers(cli, inverted, traced):
    pytest.importorskip("onnxruntime")
    sources = [SAMPLES / "healthy.pt", SAMPLES / "scripted.pt", traced, SAMPLES / "digits.pt2"]
    sources.append(SAMPLES / "digits.onnx")
    numbers = []
    for source in sources:
        entry = check(cli, source, inverted, *(("--arch", ARCH) if source == traced else ()))
        layers = diagnosed_layers(entry)
        numbers.append([[layer["data"][key] for key in NUMBERS] for layer in layers])
    for other in numbers[1:]:
        np.testing.assert_allclose(other, numbers[0], rtol=1e-5, atol=1e-6)


NUMBERS = ("mean_shift_max", "mean_shift_median", "var_ratio_max", "var_ratio_min")


def diagnosed_layers(report: dict) -> list[dict]:  # type: ignore[type-arg]
    entry = report["checkpoints"][0]
    assert entry["data"] is not None, entry
    return [layer for layer in entry["layers"] if layer["data"] is not None]


def test_every_format_carries_the_finding(cli):
    for fmt, mark in (("sarif", '"ruleId": "BN014"'), ("junit", "BN014"), ("github", "BN014")):
        result = cli(
            "check", SAMPLES / "stats_inverted.safetensors", "--data", DIGITS_DIR, "--arch", ARCH,
            "--workers", "0", "-f", fmt, "--fail-on", "warning",
        )  # fmt: skip
        assert result.exit_code == 1 and mark in result.stdout, fmt


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--arch", ARCH, "--channels", "3"), "the model failed on a batch of shape (32, 3, 8, 8)"),
        (("--arch", f"{SAMPLES / 'digits_model.py'}:missing"), "cannot import"),
        (("--max-samples", "1", "--arch", ARCH), "received 1 value per channel"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(cli, extra, message):
    result = cli("check", SAMPLES / "healthy.pt", "--data", DIGITS_DIR, "--workers", "0", *extra)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_no_data_and_data_options_without_data_are_refused(cli, tmp_path):
    empty = cli("check", SAMPLES / "healthy.pt", "--data", tmp_path, "--arch", ARCH)
    assert empty.exit_code == 2 and "no calibration files" in empty.stderr
    orphan = cli("check", SAMPLES / "healthy.pt", "--arch", ARCH)
    assert orphan.exit_code == 2 and "give --data DIR too" in orphan.stderr


def test_the_table_marks_the_first_layer_off(cli):
    result = cli(
        "inspect", SAMPLES / "stats_inverted.safetensors", "--data", DIGITS_DIR, "--arch", ARCH,
        "--workers", "0",
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert any(line.startswith("stem.bn") and "(first off)" in line for line in lines)
    assert "mean shift" in result.stdout and "var ratio" in result.stdout
