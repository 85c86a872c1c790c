"""Recalibrating torch.export programs: no source code, only the BatchNorm buffers change."""

from __future__ import annotations

import zipfile

import pytest
import torch
from digits_support import DIGITS_DIR, accuracy_on_digits, consistency_violations, digits_model


@pytest.fixture(scope="module")
def broken_programs(tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("programs")
    model = digits_model("stats_reset.safetensors")
    dynamic = torch.export.export(
        model,
        (torch.rand(4, 1, 8, 8),),
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=2)}},
    )
    torch.export.save(dynamic, folder / "dynamic.pt2")
    for batch in (30, 32):  # 300 samples: whole batches of 30; 12 left over with 32
        program = torch.export.export(model, (torch.rand(batch, 1, 8, 8),))
        torch.export.save(program, folder / f"static{batch}.pt2")
    return folder


@pytest.mark.parametrize("program", ["dynamic.pt2", "static30.pt2"])
def test_program_is_repaired_without_source(cli, broken_programs, tmp_path, digits, program):
    output = tmp_path / "fixed.pt2"
    result = cli(
        "recalibrate",
        broken_programs / program,
        "--data",
        DIGITS_DIR,
        "--output",
        output,
        "-f",
        "json",
        "--workers",
        "0",
    )
    assert result.exit_code == 0, result.stderr
    assert '"samples": 300' in result.stdout
    fixed = torch.export.load(output).module()
    reference = digits_model()
    reference.load_state_dict({k: v for k, v in fixed.state_dict().items()})
    assert consistency_violations(reference, digits) == []
    assert (
        accuracy_on_digits(reference, digits) >= accuracy_on_digits(digits_model(), digits) - 0.01
    )
    assert zipfile.ZipFile(output).testzip() is None


def test_a_program_with_a_static_batch_runs_only_whole_batches(cli, broken_programs, tmp_path):
    output = tmp_path / "fixed.pt2"
    result = cli(
        "recalibrate", broken_programs / "static32.pt2", "--data", DIGITS_DIR, "--output", output
    )
    assert result.exit_code == 0, result.stderr
    assert "288 samples in 9 batches of 32" in result.stdout
    assert "12 samples left out: the model was exported for batches of exactly 32" in result.stdout


def test_only_batchnorm_buffers_change(cli, broken_programs, tmp_path):
    output = tmp_path / "fixed.pt2"
    cli("recalibrate", broken_programs / "dynamic.pt2", "--data", DIGITS_DIR, "--output", output)
    with (
        zipfile.ZipFile(broken_programs / "dynamic.pt2") as before,
        zipfile.ZipFile(output) as after,
    ):
        changed = {
            i.filename for i in before.infolist() if before.read(i) != after.read(i.filename)
        }
    assert all("/data/weights/weight_" in name for name in changed)
    assert len(changed) == 3 * 7  # running_mean, running_var, num_batches_tracked of 7 layers


def test_train_average_is_refused_for_programs(cli, broken_programs, tmp_path):
    result = cli(
        "recalibrate",
        broken_programs / "dynamic.pt2",
        "--data",
        DIGITS_DIR,
        "--output",
        tmp_path / "x.pt2",
        "--method",
        "train-average",
    )
    assert result.exit_code == 2 and "training mode" in result.stderr
