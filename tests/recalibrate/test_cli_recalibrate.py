"""`bnstat recalibrate` end to end: model sources, data kinds, reports and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from digits_support import (
    ARCH,
    DIGITS_DIR,
    SAMPLES,
    accuracy_on_digits,
    consistency_violations,
    digits_model,
    digits_tensor,
)
from safetensors.torch import load_file, save_file

DIGITS = DIGITS_DIR
accuracy = accuracy_on_digits


def recalibrate(cli, checkpoint, output, *extra):
    return cli(
        "recalibrate", checkpoint, "--data", DIGITS, "--output", output, "--workers", "0", *extra
    )


def test_broken_statistics_are_repaired(cli, tmp_path, digits):
    output = tmp_path / "fixed.safetensors"
    report = tmp_path / "report.json"
    result = recalibrate(
        cli, SAMPLES / "stats_reset.safetensors", output, "--arch", ARCH, "--report", report
    )
    assert result.exit_code == 0, result.stderr
    assert "written to" in result.stdout and "fc_bn" in result.stdout
    fixed = digits_model(output)
    assert consistency_violations(fixed, digits) == []
    assert accuracy(fixed, digits) >= accuracy(digits_model(), digits) - 0.01
    assert accuracy(digits_model("stats_reset.safetensors"), digits) < 0.5
    data = json.loads(report.read_text())
    assert data["samples"] == 300 and data["consistency"] < 1e-5 and data["method"] == "exact"
    assert {layer["name"] for layer in data["layers"]} >= {"stem.bn", "fc_bn"}
    assert cli("inspect", output).exit_code == 0 and "no findings" in cli("inspect", output).stdout


def as_eager(archive: Path) -> torch.nn.Module:
    """The statistics of a TorchScript archive in the eager digits model, to check them."""
    model = digits_model()
    model.load_state_dict(torch.jit.load(str(archive)).state_dict())
    return model


def test_torchscript_needs_no_source(cli, tmp_path, digits):
    output = tmp_path / "fixed.pt"
    result = recalibrate(cli, SAMPLES / "scripted.pt", output, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "torchscript" and report["strategy"].startswith("segmented")
    assert consistency_violations(as_eager(output), digits) == []


def test_traced_torchscript_is_recalibrated_with_the_eps_of_its_graph(cli, tmp_path, digits):
    model = digits_model("stats_reset.safetensors")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 1e-3  # a constant of the traced graph, not an attribute
    archive, output = tmp_path / "traced.pt", tmp_path / "fixed.pt"
    torch.jit.save(torch.jit.trace(model, digits[:4]), str(archive))
    result = recalibrate(cli, archive, output, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["strategy"].startswith("segmented") and report["consistency"] < 1e-5
    fixed = as_eager(output)
    for module in fixed.modules():  # what the traced graph normalises with
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 1e-3
    assert consistency_violations(fixed, digits) == []
    assert accuracy(fixed, digits) >= accuracy(digits_model(), digits) - 0.02


def test_arch_as_module_path_with_kwargs(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(SAMPLES)
    output = tmp_path / "fixed.pt"
    result = recalibrate(
        cli,
        SAMPLES / "healthy.pt",
        output,
        "--arch",
        "digits_model:build_model",
        "--arch-kwargs",
        '{"num_classes": 10}',
    )
    assert result.exit_code == 0, result.stderr
    wrong = recalibrate(
        cli,
        SAMPLES / "healthy.pt",
        output,
        "--arch",
        "digits_model:build_model",
        "--arch-kwargs",
        '{"num_classes": 5}',
    )
    assert wrong.exit_code == 2 and "does not match the model" in wrong.stderr


def test_pickled_module_needs_unsafe_load(cli, tmp_path):
    output = tmp_path / "fixed.pt"
    refused = recalibrate(cli, SAMPLES / "full_module.pt", output)
    assert refused.exit_code == 2 and "--unsafe-load" in refused.stderr and not output.exists()
    allowed = recalibrate(
        cli, SAMPLES / "full_module.pt", output, "--unsafe-load", "--format", "json"
    )
    assert allowed.exit_code == 0, allowed.stderr
    assert json.loads(allowed.stdout)["model"] == "pickled module"


def test_several_models_need_source(cli, tmp_path, digits):
    output = tmp_path / "fixed.pt"
    ambiguous = recalibrate(cli, SAMPLES / "ema_stale.pt", output, "--arch", ARCH)
    assert ambiguous.exit_code == 2 and "--source" in ambiguous.stderr
    chosen = recalibrate(cli, SAMPLES / "ema_stale.pt", output, "--arch", ARCH, "--source", "ema")
    assert chosen.exit_code == 0, chosen.stderr
    saved = torch.load(output, weights_only=True)
    ema = {k.removeprefix("module."): v for k, v in saved["ema"].items() if k != "n_averaged"}
    model = digits_model()
    model.load_state_dict(ema)
    assert consistency_violations(model, digits) == []
    assert torch.equal(
        saved["model"]["fc_bn.running_var"],
        torch.load(SAMPLES / "ema_stale.pt")["model"]["fc_bn.running_var"],
    )


def write_tensor_folders(root: Path) -> dict[str, Path]:
    """The 300 digits as .npy (one batch), .pt (two batches) and .safetensors (30 files)."""
    images = digits_tensor()
    folders = {kind: root / kind for kind in ("npy", "pt", "safetensors")}
    for folder in folders.values():
        folder.mkdir()
    np.save(folders["npy"] / "all.npy", images.numpy())
    torch.save(images[:128].clone(), folders["pt"] / "a.pt")
    torch.save({"x": images[128:].clone()}, folders["pt"] / "b.pt")
    for index, chunk in enumerate(images.split(10)):
        save_file(
            {"images": chunk.contiguous()}, folders["safetensors"] / f"{index:02d}.safetensors"
        )
    return folders


def test_every_data_kind_gives_the_same_statistics(cli, tmp_path):
    reference = tmp_path / "from_images.safetensors"
    recalibrate(cli, SAMPLES / "stats_reset.safetensors", reference, "--arch", ARCH)
    expected = load_file(reference)
    for kind, folder in write_tensor_folders(tmp_path).items():
        output = tmp_path / f"from_{kind}.safetensors"
        result = cli(
            "recalibrate",
            SAMPLES / "stats_reset.safetensors",
            "--arch",
            ARCH,
            "--data",
            folder,
            "--output",
            output,
        )
        assert result.exit_code == 0, (kind, result.stderr)
        for key, value in load_file(output).items():
            torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-7)  # float32 ulps


def test_unreadable_images_are_skipped_and_named(cli, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DIGITS, data)
    (data / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (data / "empty.jpg").write_bytes(b"")
    output, report = tmp_path / "fixed.pt", tmp_path / "report.json"
    result = cli(
        "recalibrate",
        SAMPLES / "healthy.pt",
        "--arch",
        ARCH,
        "--data",
        data,
        "--output",
        output,
        "--report",
        report,
    )
    assert result.exit_code == 0, result.stderr
    assert "2 unreadable files skipped" in result.stdout
    report_data = json.loads(report.read_text())
    assert report_data["samples"] == 300
    assert sorted(Path(u["path"]).name for u in report_data["unreadable"]) == [
        "broken.png",
        "empty.jpg",
    ]


@pytest.mark.parametrize(
    ("setup", "extra", "needle"),
    [
        ("empty", (), "no"),
        ("all_bad", (), "could be read"),
        ("digits", ("--channels", "3"), "expected input"),
        ("digits", ("--arch", "no_such_module:build"), "cannot import"),
        ("digits", ("--arch", "bad_file.py:build"), "cannot import"),
        ("digits", ("--arch", f"{SAMPLES / 'digits_model.py'}:DigitsNet.forward"), "model"),
        ("digits", ("--arch-kwargs", "[1, 2]"), "JSON object"),
        ("digits", ("--method", "median"), "--method"),
        ("digits", ("--device", "cuda:7"), "--device"),
        ("digits", ("--device", "tpu"), "--device"),
        ("digits", ("--max-samples", "0"), "error: --max-samples must be at least 1\n"),
        ("digits", ("--std", "0"), "error: --std must not contain 0\n"),
        ("digits", ("--mean", "0.5,0.5"), "error: --mean needs 1 value\n"),
        ("digits", ("--sweeps", "0"), "error: --sweeps must be at least 1\n"),
        ("digits", ("--passes", "0"), "error: --sweeps must be at least 1\n"),
        ("digits", ("--source", "ema"), "error: --source 'ema': no such model"),
    ],
)
def test_bad_input_is_a_clean_error(cli, tmp_path, monkeypatch, setup, extra, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_file.py").write_text("def build(:\n")
    data = tmp_path / "data"
    data.mkdir()
    if setup == "digits":
        data = DIGITS
    elif setup == "all_bad":
        (data / "a.png").write_bytes(b"junk")
        (data / "b.png").write_bytes(b"")
    arch = () if "--arch" in extra else ("--arch", ARCH)
    result = cli(
        "recalibrate",
        SAMPLES / "stats_reset.safetensors",
        *arch,
        "--data",
        data,
        "--output",
        tmp_path / "out.pt",
        *extra,
    )
    assert result.exit_code == 2, result.stdout
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.pt").exists()


def test_missing_keys_are_listed(cli, tmp_path):
    partial = {
        k: v
        for k, v in torch.load(SAMPLES / "healthy.pt", weights_only=True).items()
        if not k.startswith("fc_bn")
    }
    checkpoint = tmp_path / "partial.pt"
    torch.save(partial, checkpoint)
    result = recalibrate(cli, checkpoint, tmp_path / "out.pt", "--arch", ARCH)
    assert result.exit_code == 2
    assert "missing keys: fc_bn.bias, fc_bn.num_batches_tracked" in result.stderr


def test_output_and_in_place(cli, tmp_path):
    checkpoint = tmp_path / "model.pt"
    shutil.copy(SAMPLES / "stats_reset.safetensors", checkpoint)
    assert cli("recalibrate", checkpoint, "--arch", ARCH, "--data", DIGITS).exit_code == 2
    same = recalibrate(cli, checkpoint, checkpoint, "--arch", ARCH)
    assert same.exit_code == 2 and "--in-place" in same.stderr
    in_place = cli("recalibrate", checkpoint, "--arch", ARCH, "--data", DIGITS, "--in-place")
    assert in_place.exit_code == 0, in_place.stderr
    assert (
        cli("check", checkpoint).exit_code == 0 and "BN003" not in cli("check", checkpoint).stdout
    )


def test_train_average_method_is_offered(cli, tmp_path):
    result = recalibrate(
        cli,
        SAMPLES / "stats_reset.safetensors",
        tmp_path / "avg.pt",
        "--arch",
        ARCH,
        "--method",
        "train-average",
        "--format",
        "json",
    )
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["method"] == "train-average" and report["consistency"] > 1e-3


def test_without_torch_the_command_names_the_extra():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from bnstat.cli import main\n"
        "sys.argv = ['bnstat', 'recalibrate', 'x.pt', '--data', '.', '--output', 'y.pt']\n"
        "main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "bnstat: error: bnstat recalibrate needs torch, which is not installed: "
        "pip install 'bnstat[torch]'"
    )


def test_a_pickle_that_runs_code_is_copied_only_under_unsafe_load(cli, tmp_path):
    output = tmp_path / "fixed.pt"
    refused = recalibrate(cli, SAMPLES / "pickle_payload.pt", output, "--arch", ARCH)
    assert refused.exit_code == 2 and "posix.getcwd" in refused.stderr and not output.exists()
    trusted = recalibrate(
        cli, SAMPLES / "pickle_payload.pt", output, "--arch", ARCH, "--unsafe-load"
    )
    assert trusted.exit_code == 0, trusted.stderr


def test_the_report_says_what_the_model_was_fed(cli, tmp_path):
    from PIL import Image

    folder = tmp_path / "rgb"
    folder.mkdir()
    generator = np.random.default_rng(0)
    for index in range(12):
        pixels = generator.integers(0, 256, size=(13, 7, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    result = cli(
        "recalibrate", SAMPLES / "stats_reset.safetensors", "--arch", ARCH, "--data", folder,
        "--output", tmp_path / "out.safetensors", "--workers", "0", "-f", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["input_shape"] == [1, 13, 7] and report["processes"] == 1
    assert "12 RGB" in report["input"] and "converted to L" in report["input"]
    table = cli(
        "recalibrate", SAMPLES / "stats_reset.safetensors", "--arch", ARCH, "--data", folder,
        "--output", tmp_path / "out2.safetensors", "--workers", "0", "--image-size", "8",
        "--mean", "0.5", "--std", "0.25",
    )  # fmt: skip
    assert "resized to 8x8" in table.stdout and "(x / 255 - 0.5) / 0.25" in table.stdout


@pytest.mark.parametrize("suffix", [".onnx", ".txt", ""])
def test_an_output_extension_bnstat_cannot_write_is_refused(cli, tmp_path, suffix):
    output = tmp_path / f"fixed{suffix}"
    result = recalibrate(cli, SAMPLES / "stats_reset.safetensors", output, "--arch", ARCH)
    assert result.exit_code == 2 and "bnstat writes .pt, .pth, .bin" in result.stderr
    assert ".safetensors" in result.stderr and not output.exists()


def test_a_single_sample_is_too_few_for_a_batchnorm1d_head(cli, tmp_path):
    output = tmp_path / "fixed.safetensors"
    result = recalibrate(
        cli, SAMPLES / "stats_reset.safetensors", output, "--arch", ARCH, "--max-samples", "1"
    )
    assert result.exit_code == 2, result.stderr
    assert "layer fc_bn received 1 value per channel" in result.stderr
    assert "non-finite" not in result.stderr and not output.exists()
