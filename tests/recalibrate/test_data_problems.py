"""What reading the data meets, as `check --data` and `recalibrate` report it, in every format.

Both commands read data through one source, so a corrupt image, a `.pt` holding objects,
integer tensors, NaN samples and complex tensors are reported the same way by both: the
skipped files named in every output format and counted in the summary, warnings said in
bnstat's words, non-finite and complex data refused with exit 2. The digits saved as
16-bit PNGs and float TIFFs measure what the 8-bit originals measure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from digits_support import ARCH, DIGITS_DIR, SAMPLES, digits_tensor
from PIL import Image

from bnstat.execution.data.tensor_files import NOT_LOADED


def run_on(cli, command: str, data: Path, *extra: object, tmp: Path | None = None):  # type: ignore[no-untyped-def]
    """`check --data` (or `recalibrate`, writing into `tmp`) on the healthy digits model."""
    args: list[object] = [command, SAMPLES / "healthy.pt", "--arch", ARCH, "--data", data]
    if command == "recalibrate":
        args += ["--output", (tmp or data.parent) / "fixed.pt", "--no-verify"]
    return cli(*args, "--workers", "0", *extra)


def copy_digits(target: Path, convert=None) -> Path:  # type: ignore[no-untyped-def]
    """The 300 sample digits under `target`, as they are or through `convert(pixels, path)`."""
    for source in sorted(DIGITS_DIR.rglob("*.png")):
        path = target / source.relative_to(DIGITS_DIR)
        path.parent.mkdir(parents=True, exist_ok=True)
        if convert is None:
            shutil.copy(source, path)
        else:
            convert(np.asarray(Image.open(source).convert("L")), path)
    return target


@pytest.fixture(scope="module")
def with_corrupt_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = copy_digits(tmp_path_factory.mktemp("corrupt") / "data")
    (data / "3" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    return data


def unreadable_of(report: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    runs = [c["data"] for c in report["checkpoints"]]
    return [(Path(u["path"]).name, u["reason"]) for run in runs for u in run["unreadable"]]


MARKS = {  # what each format shows of a skipped data file
    "table": "1 unreadable file skipped: ",
    "markdown": "- data file not read: ",
    "sarif": '"id": "unreadable-data-file"',
    "junit": "<system-err>data file not read: ",
    "github": "title=data file not read::",
    "html": "<li>data file not read: ",
}


@pytest.mark.parametrize("fmt", list(MARKS))
def test_every_format_names_the_skipped_data_file(cli, with_corrupt_jpeg, fmt):
    result = run_on(cli, "check", with_corrupt_jpeg, "-f", fmt)
    assert result.exit_code == 0, result.stderr
    assert MARKS[fmt] in result.stdout and "corrupt.jpg" in result.stdout
    clean = run_on(cli, "check", DIGITS_DIR, "-f", fmt)
    assert MARKS[fmt] not in clean.stdout and "data file" not in clean.stdout


def test_the_json_report_lists_skipped_files_per_run_and_counts_them(cli, with_corrupt_jpeg):
    report = json.loads(run_on(cli, "check", with_corrupt_jpeg, "-f", "json").stdout)
    assert [name for name, _ in unreadable_of(report)] == ["corrupt.jpg"]
    assert report["summary"]["data_unreadable"] == 1 and report["summary"]["unreadable"] == 0
    assert report["checkpoints"][0]["data"]["samples"] == 300
    table = run_on(cli, "check", with_corrupt_jpeg).stdout
    assert "1 unreadable data file skipped" in table.splitlines()[-2]
    clean = json.loads(run_on(cli, "check", DIGITS_DIR, "-f", "json").stdout)
    assert unreadable_of(clean) == [] and clean["summary"]["data_unreadable"] == 0


def test_check_and_recalibrate_report_the_same_problems(cli, with_corrupt_jpeg, tmp_path):
    checked = json.loads(run_on(cli, "check", with_corrupt_jpeg, "-f", "json").stdout)
    recalibrated = run_on(cli, "recalibrate", with_corrupt_jpeg, "-f", "json", tmp=tmp_path)
    assert recalibrated.exit_code == 0, recalibrated.stderr
    listed = json.loads(recalibrated.stdout)["unreadable"]
    assert [(Path(u["path"]).name, u["reason"]) for u in listed] == unreadable_of(checked)


def save_digits_npy(folder: Path, values: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "digits.npy", values)
    return folder


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pt_in_the_data_is_named_and_not_loaded(cli, tmp_path):
    data = save_digits_npy(tmp_path / "data", digits_tensor().numpy())
    marker = tmp_path / "ran"
    torch.save({"x": torch.zeros(1, 1, 8, 8), "payload": RunsCode(marker)}, data / "evil.pt")
    for command in ("check", "recalibrate"):
        result = run_on(cli, command, data, "-f", "json", tmp=tmp_path)
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        listed = unreadable_of(report) if command == "check" else report["unreadable"]
        reasons = [u[1] if command == "check" else u["reason"] for u in listed]
        assert reasons == [NOT_LOADED]
        assert "weights_only" not in result.stdout + result.stderr
    assert not marker.exists()


def test_integer_tensors_are_used_as_stored_with_one_warning(cli, tmp_path):
    data = save_digits_npy(tmp_path / "data", (digits_tensor().numpy() * 255).astype(np.uint8))
    result = run_on(cli, "check", data, "-f", "json")
    warnings = json.loads(result.stdout)["checkpoints"][0]["data"]["warnings"]
    assert len(warnings) == 1 and "uint8 reach the model unscaled" in warnings[0]
    table = run_on(cli, "check", data).stdout
    assert sum("warning: tensor files of uint8" in line for line in table.splitlines()) == 1
    recalibrated = run_on(cli, "recalibrate", data, tmp=tmp_path)
    assert "warning: tensor files of uint8 reach the model unscaled" in recalibrated.stdout
    assert "Warning" not in result.stderr + recalibrated.stderr
    floats = save_digits_npy(tmp_path / "floats", digits_tensor().numpy())
    assert (
        json.loads(run_on(cli, "check", floats, "-f", "json").stdout)["checkpoints"][0]["data"][
            "warnings"
        ]
        == []
    )


@pytest.mark.parametrize("command", ["check", "recalibrate"])
def test_a_nan_sample_is_exit_2_naming_file_and_sample(cli, tmp_path, command):
    values = digits_tensor().numpy()
    values[41, 0, 3, 3] = np.nan
    data = save_digits_npy(tmp_path / "data", values)
    result = run_on(cli, command, data, tmp=tmp_path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1  # check names the checkpoint
    assert result.stderr.startswith("bnstat: error: ")
    assert result.stderr.endswith(
        f"{data / 'digits.npy'}: sample 41 holds NaN: non-finite input would "
        "poison every statistic; fix the step that wrote the data\n"
    )


@pytest.mark.parametrize("command", ["check", "recalibrate"])
def test_complex_tensors_are_exit_2_in_one_line(cli, tmp_path, command):
    data = save_digits_npy(tmp_path / "data", digits_tensor().numpy().astype(np.complex64))
    result = run_on(cli, command, data, tmp=tmp_path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "digits.npy: holds complex numbers (complex64)" in result.stderr
    assert "ComplexWarning" not in result.stderr


def as_16_bit(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels.astype(np.uint16) * 257).save(path)  # 255 -> 65535


def as_float(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels.astype(np.float32) / 255).save(path.with_suffix(".tif"))


@pytest.mark.parametrize("convert", [as_16_bit, as_float], ids=["16-bit png", "float tiff"])
def test_16_bit_and_float_digits_measure_what_the_8_bit_ones_do(cli, tmp_path, convert):
    data = copy_digits(tmp_path / "data", convert)
    original = json.loads(run_on(cli, "check", DIGITS_DIR, "-f", "json").stdout)
    converted = json.loads(run_on(cli, "check", data, "-f", "json").stdout)
    for before, after in zip(
        original["checkpoints"][0]["layers"], converted["checkpoints"][0]["layers"], strict=True
    ):
        assert after["data"]["mean_shift_max"] == pytest.approx(
            before["data"]["mean_shift_max"], abs=1e-4
        )
        assert after["data"]["var_ratio_max"] == pytest.approx(
            before["data"]["var_ratio_max"], rel=1e-4
        )
    assert [f["rule"] for f in converted["checkpoints"][0]["findings"]] == []
    said = converted["checkpoints"][0]["data"]["input"]
    assert ("x / 65535" in said) if convert is as_16_bit else ("taken as they are" in said)


def test_no_raw_library_warning_reaches_the_user(cli, tmp_path):
    too_many = str((os.cpu_count() or 1) + 1)  # torch would advise fewer workers
    result = run_on(cli, "recalibrate", DIGITS_DIR, "--workers", too_many, "--max-samples", "32",
                    tmp=tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
