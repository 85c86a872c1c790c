"""Golden files of `diff`, `rules` and `recalibrate` in every format, through the real CLI.

Each command runs at 80 columns, the width of a pipe without a terminal. The
recalibration's times and its float-rounding residues (the eval-mode mismatch left after
recalibrating, around 1e-7, whose last digit follows the order of float sums) are blanked,
its other numbers rounded to 6 significant digits (float32 convolutions may differ in the
last bit from one CPU to another), and the version is blanked. BNSTAT_UPDATE_GOLDEN=1
rewrites the files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner
from zoo import REPO

from bnstat import __version__
from bnstat.cli import app
from bnstat.formats import (
    DiffFormat,
    RecalibrationFormat,
    RulesFormat,
    diff_emitter,
    recalibration_emitter,
    rules_emitter,
)

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
SUFFIX = {"table": "txt", "text": "txt", "json": "json", "markdown": "md"}
RECALIBRATE = [
    "recalibrate", "sample_checkpoints/stats_reset.safetensors",
    "--arch", "sample_checkpoints/digits_model.py:build_model",
    "--data", "sample_checkpoints/digits", "--workers", "0", "--cache-mb", "2048",
]  # fmt: skip
CASES = {
    "diff": (["diff", "sample_checkpoints/bn004_dead_channel.pt", "sample_checkpoints/healthy.pt"],
             list(DiffFormat)),
    "rules": (["rules"], list(RulesFormat)),
    "rule": (["rules", "BN004"], list(RulesFormat)),
    "recalibrate": (RECALIBRATE, list(RecalibrationFormat)),
}  # fmt: skip
EMITTERS = [
    *((diff_emitter, fmt) for fmt in DiffFormat),
    *((rules_emitter, fmt) for fmt in RulesFormat),
    *((recalibration_emitter, fmt) for fmt in RecalibrationFormat),
]


@pytest.mark.parametrize(("emitter", "fmt"), EMITTERS)
def test_every_format_has_an_emitter(emitter, fmt):
    assert callable(emitter(fmt))


LONG_FLOAT = re.compile(r"-?\d+\.\d{7,}(?:e[-+]?\d+)?")
SECONDS = re.compile(r"(\d+\.\d+ s\b|\"(\w+_)?seconds\": [0-9.e-]+)")
ROUNDING = re.compile(
    r"\b\d\.\de-(0[6-9]|[1-9]\d)\b|\b\d\.\d+e-(0[6-9]|[1-9]\d)\b|\b0\.0e\+00\b"
    r"|(?<=\"consistency\": )0\.0\b"
)
FOLDER = re.compile(r"(?<=\"folder\": )\"[^\"]*\"")


def blanked(text: str) -> str:
    text = text.replace(__version__, "VERSION")
    text = SECONDS.sub(lambda m: f'"{m[2] or ""}seconds": 0' if m[0][0] == '"' else "T s", text)
    text = FOLDER.sub('"TMPDIR"', text)
    text = ROUNDING.sub("ROUNDING", text)
    return LONG_FLOAT.sub(lambda m: f"{float(m[0]):.6g}", text)


@pytest.mark.parametrize(
    ("case", "fmt"), [(case, fmt) for case, (_, formats) in CASES.items() for fmt in formats]
)
def test_golden_output(case, fmt, tmp_path, monkeypatch):
    (tmp_path / "sample_checkpoints").symlink_to(REPO / "sample_checkpoints")
    monkeypatch.chdir(tmp_path)  # paths in the outputs are the relative ones given
    args, _ = CASES[case]
    if case == "recalibrate":
        args = [*args, "--output", "fixed.safetensors"]
    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, [*args, "--format", fmt.value])
    assert result.exit_code == 0, result.stderr
    text = blanked(result.stdout)
    golden = GOLDEN / f"{case}.{SUFFIX[fmt.value]}"
    if os.environ.get("BNSTAT_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
