"""The command line: formats, options, configuration and exit codes, run for real."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch

from bnstat.formats import InspectFormat
from bnstat.rules import RULES

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "report-v1.schema.json").read_text())


@pytest.fixture
def dead(state_dict, write_pt) -> Path:
    """A checkpoint with one warning (BN004 in bn2d, channels 1 and 4).

    The InstanceNorm layer is left out: in a bare state dict it is reported by BN003.
    """
    broken = {k: v for k, v in state_dict.items() if not k.startswith("inorm.")}
    weight = broken["bn2d.weight"].clone()
    weight[[1, 4]] = 1e-9
    broken["bn2d.weight"] = weight
    return write_pt(broken, name="dead.pt")


def test_inspect_table_names_layers_and_findings(cli, dead):
    result = cli("inspect", dead)
    assert result.exit_code == 0
    for text in ("bn2d", "bn3d", "frozen", "BN004 dead-channel", "[1, 4]", "fix:",
                 "exit 0: 1 warning below --fail-on error"):  # fmt: skip
        assert text in result.stdout


def test_check_table_lists_findings_without_layer_table(cli, dead):
    result = cli("check", dead)
    assert "BN004" in result.stdout and "running_mean" not in result.stdout


@pytest.mark.parametrize("fmt", list(InspectFormat))
@pytest.mark.parametrize("command", ["inspect", "check"])
def test_every_format_renders(cli, dead, fmt, command):
    result = cli(command, dead, "--format", fmt.value)
    assert result.exit_code == 0
    assert "BN004" in result.stdout


def test_json_matches_the_contract_schema(cli, dead, tmp_path):
    bad = tmp_path / "empty.pt"
    bad.touch()
    result = cli("inspect", dead, bad, "--format", "json")
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["summary"] == {
        "checkpoints": 2, "layers": 4, "error": 0, "warning": 1, "info": 0,
        "unreadable": 1, "skipped": 0, "data_unreadable": 0, "fail_on": "error",
    }  # fmt: skip
    (finding,) = report["checkpoints"][0]["findings"]
    assert finding["rule"] == "BN004" and finding["channels"] == [1, 4]


@pytest.mark.parametrize(
    ("fail_on", "code"), [("error", 0), ("warning", 1), ("info", 1), ("never", 0)]
)
def test_fail_on_sets_the_exit_code(cli, dead, fail_on, code):
    assert cli("check", dead, "--fail-on", fail_on).exit_code == code


def test_output_file_gets_the_report_and_stderr_the_verdict(cli, dead, tmp_path):
    target = tmp_path / "report.json"
    result = cli("check", dead, "--format", "json", "--output", target, "--fail-on", "warning")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert json.loads(target.read_text())["summary"]["warning"] == 1
    assert "exit 1: 1 warning at or above --fail-on warning" in result.stderr


def test_select_and_ignore(cli, dead):
    assert "BN004" not in cli("check", dead, "--ignore", "BN004").stdout
    assert "BN004" not in cli("check", dead, "--select", "BN001,BN002").stdout
    assert "BN004" in cli("check", dead, "--select", "BN00").stdout
    result = cli("check", dead, "--select", "BN999")
    assert result.exit_code == 2 and "unknown rule code" in result.stderr


def test_layers_glob_filters_layers_and_findings(cli, dead):
    report = json.loads(cli("inspect", dead, "--format", "json", "--layers", "bn3*").stdout)
    (entry,) = report["checkpoints"]
    assert [layer["name"] for layer in entry["layers"]] == ["bn3d"]
    assert entry["findings"] == []


def test_threshold_override_and_validation(cli, dead):
    quiet = cli(
        "check",
        dead,
        "--format",
        "json",
        "--threshold",
        "dead-weight-abs=0",
        "--threshold",
        "dead-weight-rel=0",
    )
    assert json.loads(quiet.stdout)["summary"]["warning"] == 0
    for bad in ("nope=1", "dead-weight-abs=abc", "dead-weight-abs", "dead-weight-abs=-1"):
        result = cli("check", dead, "--threshold", bad)
        assert result.exit_code == 2 and "--threshold" in result.stderr


def test_eps_is_used_where_the_file_does_not_record_it(cli, state_dict, write_pt):
    collapsed = {k: v for k, v in state_dict.items() if not k.startswith("inorm.")}
    collapsed["bn2d.running_var"] = torch.zeros(8)
    path = write_pt(collapsed)
    report = json.loads(cli("check", path, "--format", "json", "--eps", "1e-3").stdout)
    layer = next(layer for layer in report["checkpoints"][0]["layers"] if layer["name"] == "bn2d")
    assert layer["eps"] == 1e-3 and layer["eps_source"] == "assumed"
    (bn005,) = [f for f in report["checkpoints"][0]["findings"] if f["rule"] == "BN005"]
    assert "eps 0.001" in bn005["message"]


def test_pyproject_configuration(cli, dead, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[tool.bnstat]\nfail-on = "warning"\n[tool.bnstat.thresholds]\ndead-weight-rel = 0.5\n'
    )
    monkeypatch.chdir(project / "sub")  # the nearest pyproject.toml above the working directory
    assert cli("check", dead).exit_code == 1
    (project / "pyproject.toml").write_text('[tool.bnstat.per-layer-ignores]\n"bn2*" = ["BN004"]\n')
    assert cli("check", dead, "--fail-on", "warning").exit_code == 0
    (project / "pyproject.toml").write_text('[tool.bnstat]\nfail_on = "warning"\n')
    result = cli("check", dead)
    assert result.exit_code == 2 and "unknown key fail_on" in result.stderr


def test_explicit_config_file(cli, dead, tmp_path):
    config = tmp_path / "bnstat.toml"
    config.write_text('ignore = ["BN004"]\nfail-on = "info"\n')
    assert cli("check", dead, "--config", config).exit_code == 0
    config.write_text("eps = 2\n")
    result = cli("check", dead, "--config", config)
    assert result.exit_code == 2 and "eps must be" in result.stderr
    assert cli("check", dead, "--config", tmp_path / "missing.toml").exit_code == 2


def test_rules_command(cli, tmp_path):
    listing = cli("rules").stdout
    assert all(rule.code in listing and rule.name in listing for rule in RULES)
    one = cli("rules", "BN004").stdout
    for section in (
        "What it checks",
        "Why it matters",
        "Example",
        "Fix",
        "dead-weight-abs = 1e-06",
    ):
        assert section in one
    assert cli("rules", "dead-channel").stdout == one
    rules_json = json.loads(cli("rules", "--format", "json").stdout)
    assert [r["code"] for r in rules_json] == [r.code for r in RULES]
    assert "| BN009 | folding-scale-outlier | info |" in cli("rules", "--format", "markdown").stdout
    assert cli("rules", "BN777").exit_code == 2


def test_rules_shows_effective_thresholds(cli):
    text = cli("rules", "BN008", "--threshold", "stale-ratio=0.2").stdout
    assert "stale-ratio = 0.2 (default 0.5)" in text


def test_directory_input_finds_checkpoints_by_content(cli, dead, tmp_path):
    folder = dead.parent
    (folder / "notes.txt").write_text("not a checkpoint")
    (folder / "nested").mkdir()
    (folder / "nested" / "weights.bin").write_bytes(dead.read_bytes())
    (folder / "nested" / "broken.ckpt").write_bytes(b"")
    report = json.loads(cli("check", folder, "--format", "json").stdout)
    paths = [Path(c["path"]).name for c in report["checkpoints"]]
    assert paths == ["dead.pt", "broken.ckpt", "weights.bin"]


def test_version(cli):
    assert cli("--version").stdout.startswith("bnstat ")


def test_parallel_run_gives_the_serial_report_in_the_same_order(cli):
    from zoo import SAMPLES

    serial = cli("check", SAMPLES, "--format", "json", "--jobs", "1")
    parallel = cli("check", SAMPLES, "--format", "json", "--jobs", "2")
    assert serial.exit_code == parallel.exit_code == 2
    assert json.loads(serial.stdout) == json.loads(parallel.stdout)
