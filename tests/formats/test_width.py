"""Terminal output fits the width it is printed at (80, 100 and 160 columns, on a
terminal as in a pipe). Layer names stay recognisable, whole or as `…` and an end that
no other layer shares, and every finding code stays in its layer's row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.cells import cell_len
from safetensors.numpy import save_file
from torch import nn
from typer.testing import CliRunner
from zoo import REPO, SAMPLES

from bnstat.cli import app
from bnstat.formats.columns import Column, column_widths
from bnstat.formats.names import abbreviate, distinguishing_width

WIDTHS = (80, 100, 160)
PYRAMID = "model.backbone.feature_pyramid.lateral_connections.stage_four"
NAMES = [
    "stem.bn",
    "encoder.layers.0.blocks.1.mlp.norm",
    "encoder.layers.1.blocks.1.mlp.norm",
    "encoder.layers.11.blocks.1.mlp.norm",
    f"{PYRAMID}.output_projection.norm",
    f"{PYRAMID}.input_projection.norm",
    "head.bn",
]
DROPPED_IN_ORDER = ["log10 var", "running_mean", "batches", "min|weight|", "C", "running_var"]
SECTIONS = ("errors (", "warnings (", "infos (", "no findings")  # what follows a table
Run = Callable[..., str]


@pytest.fixture
def at_width() -> Run:
    """The CLI's stdout with COLUMNS set to `width`."""

    def run(width: int, *args: object) -> str:
        env = {"COLUMNS": str(width)}
        result = CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
        return result.stdout

    return run


@pytest.fixture(scope="module")
def long_names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven layers with long names that differ in the middle; findings on five of them,
    three on one."""
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {}
    for name in NAMES:
        tensors |= {
            f"{name}.running_mean": rng.normal(0, 0.5, 32).astype(np.float32),
            f"{name}.running_var": rng.lognormal(0, 0.3, 32).astype(np.float32),
            f"{name}.weight": rng.normal(1, 0.1, 32).astype(np.float32),
            f"{name}.bias": np.abs(rng.normal(0, 0.1, 32)).astype(np.float32),
            f"{name}.num_batches_tracked": np.array(500),
        }
    tensors[f"{NAMES[1]}.weight"][3] = 0.0  # BN004
    tensors[f"{NAMES[3]}.running_var"][[1, 2]] = 0.0  # BN005, BN009
    tensors[f"{NAMES[3]}.running_mean"][7] = np.nan  # BN001
    tensors[f"{NAMES[4]}.running_var"][5] = 1e6  # BN006, BN007
    tensors[f"{NAMES[5]}.num_batches_tracked"] = np.array(20)  # BN008
    path = tmp_path_factory.mktemp("wide") / "long_names.safetensors"
    save_file(tensors, str(path))
    return path


def assert_fits(text: str, width: int) -> None:
    too_wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert not too_wide, "\n".join(too_wide)


def table_rows(text: str) -> list[str]:
    """The rows under the header line that starts with `layer`, each with the lines it
    wraps onto (which start with a space) joined on."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer ")) + 1
    rows: list[str] = []
    for line in lines[start:]:
        if not line.strip() or line.startswith(SECTIONS) or line[0].isdigit():
            break  # the findings, or the line under a diff or a recalibration table
        if line.startswith(" "):
            rows[-1] += line
        else:
            rows.append(line)
    return rows


def identifies(shown: str, name: str, names: list[str]) -> bool:
    """Whether `shown` is `name`, or `…` and an end of `name` that no other name has."""
    tail = shown.removeprefix("…")
    return shown == name or (tail != shown and [n for n in names if n.endswith(tail)] == [name])


def assert_rows_name_their_layers(text: str, names: list[str]) -> list[str]:
    rows = table_rows(text)
    assert len(rows) == len(names), rows
    for row, name in zip(rows, names, strict=True):
        assert identifies(row.split()[0], name, names), (row, name)
    return rows


def codes_by_layer(path: Path) -> dict[str, set[str]]:
    """Layer names in the report's order, each with the codes of its findings."""
    result = CliRunner().invoke(app, ["inspect", str(path), "--format", "json"])
    (entry,) = json.loads(result.stdout)["checkpoints"]
    codes: dict[str, set[str]] = {layer["name"]: set() for layer in entry["layers"]}
    for finding in entry["findings"]:
        codes[finding["layer"]].add(finding["rule"])
    return codes


@pytest.mark.parametrize("width", WIDTHS)
def test_the_inspect_table_fits_and_keeps_every_name_and_finding(at_width, long_names, width):
    text = at_width(width, "inspect", long_names)
    assert_fits(text, width)
    codes = codes_by_layer(long_names)
    assert sorted(codes) == sorted(NAMES)
    assert sum(len(c) for c in codes.values()) >= 7 and len(codes[NAMES[3]]) >= 3
    rows = assert_rows_name_their_layers(text, list(codes))
    for row, (name, found) in zip(rows, codes.items(), strict=True):
        assert found <= set(row.split()), (row, name, found)
    header = next(line for line in text.splitlines() if line.startswith("layer "))
    assert "findings" in header and "running_var" in header
    shown = ["log10" in text, *(title in header.split() for title in DROPPED_IN_ORDER[1:])]
    assert shown == sorted(shown), shown  # a column stays only if every more useful one does


@pytest.mark.parametrize("width", WIDTHS)
def test_short_names_stay_whole_and_the_histogram_goes_first(at_width, width):
    text = at_width(width, "inspect", SAMPLES / "bn004_dead_channel.pt")
    assert_fits(text, width)
    assert "block2.shortcut.bn " in text and "…" not in text
    header = next(line for line in text.splitlines() if line.startswith("layer "))
    titles = ["layer", "C", "batches", "running_mean", "running_var", "min|weight|", "findings"]
    kept = {80: ["layer", "C", "batches", "running_var", "min|weight|", "findings"], 100: titles}
    assert header.split() == kept.get(width, [*titles[:5], "log10", "var", "-3..1", *titles[5:]])


@pytest.mark.parametrize("width", WIDTHS)
def test_check_and_diff_fit(at_width, long_names, width):
    assert_fits(at_width(width, "check", long_names, SAMPLES / "bn004_dead_channel.pt"), width)
    text = at_width(width, "diff", long_names, long_names)
    assert_fits(text, width)
    assert_rows_name_their_layers(text, sorted(NAMES))


def test_a_pipe_takes_columns_or_80(long_names):
    """`COLUMNS=100 bnstat inspect ... | cat`, and the same with COLUMNS unset."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    command = [sys.executable, "-m", "bnstat", "inspect", str(long_names)]
    for columns, width in (("100", 100), (None, 80)):
        run_env = env if columns is None else {**env, "COLUMNS": columns}
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=run_env,
            cwd=REPO, check=False,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert_fits(result.stdout, width)
        assert max(cell_len(line) for line in result.stdout.splitlines()) > width - 10


@pytest.mark.parametrize("width", WIDTHS)
def test_rules_wrap_between_words(at_width, width):
    for args in (("rules",), ("rules", "BN004"), ("rules", "BN009")):
        text = at_width(width, *args)
        assert_fits(text, width)
        words = " ".join(text.split())
        assert "per-tensor quantization" in words or "median `|weight|` of the layer" in words


class Pyramid(nn.Module):
    """Long module names: `lateral_connections_of_stage_four.0.normalisation_after_conv`."""

    def __init__(self) -> None:
        super().__init__()
        self.lateral_connections_of_stage_four = nn.Sequential(
            *(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)) for _ in range(3))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lateral_connections_of_stage_four(x)


class LongNamedModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.feature_pyramid_backbone_with_a_long_name = Pyramid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_pyramid_backbone_with_a_long_name(torch.relu(self.stem(x)))


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    folder = tmp_path_factory.mktemp("scripted")
    torch.manual_seed(0)
    model = LongNamedModel().eval()
    torch.jit.save(torch.jit.script(model), str(folder / "model.pt"))
    (folder / "data").mkdir()
    np.save(folder / "data" / "batch.npy", np.random.default_rng(0).normal(size=(24, 1, 6, 6)))
    names = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    return folder / "model.pt", folder / "data", names


@pytest.mark.parametrize("width", WIDTHS)
def test_the_recalibrate_table_fits_and_keeps_every_name(at_width, scripted, tmp_path, width):
    model, data, names = scripted
    assert max(len(n) for n in names) > 70
    output = tmp_path / "out.pt"
    text = at_width(width, "recalibrate", model, "--data", data, "--output", output,
                    "--workers", "0", "--batch-size", "8")  # fmt: skip
    assert "written to" in text
    assert_fits(text, width)
    rows = assert_rows_name_their_layers(text, names)
    assert all(len(row.split()) >= 3 for row in rows)  # numbers beside every name


def test_names_are_shortened_from_the_left_keeping_what_tells_them_apart():
    assert abbreviate("encoder.layers.11.mlp.norm", 40) == "encoder.layers.11.mlp.norm"
    assert abbreviate("encoder.layers.11.mlp.norm", 16) == "…11.mlp.norm"
    assert abbreviate("backbone_with_a_long_name.connections_of_stage_four.0.1", 20) == (
        "…s_of_stage_four.0.1"
    )  # no separator keeps two thirds of the room: cut inside a word
    assert distinguishing_width(["a.layers.1.norm", "a.layers.11.norm"]) == len("…11.norm")
    assert distinguishing_width(["bn", "block.bn"]) == len("block.bn")  # "bn" is another name


def test_long_titles_take_two_lines_each_before_one_takes_one():
    columns = [
        Column("layer", ["block2.shortcut.bn"], "left", kind="name"),
        Column("mean shift (std)", ["1.79"], drop=2),
        Column("eval mismatch after", ["5.9e-08"], drop=3),
    ]
    assert column_widths(columns, 18 + 2 + 10 + 2 + 13)[1] == [
        18,
        10,
        13,
    ]  # "mean shift", "eval mismatch"
    assert column_widths(columns, 18 + 2 + 16 + 2 + 19)[1] == [18, 16, 19]  # everything on one line
