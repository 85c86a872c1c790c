"""`settings`: defaults, then the nearest `[tool.bnstat]` (or a given file), then flags;
every bad key or value is an error that names where it is."""

from __future__ import annotations

import pytest

from bnstat.errors import ConfigError
from bnstat.report.severity import FailOn
from bnstat.rules import default_thresholds
from bnstat.settings import Settings, find_pyproject, load_config, with_overrides

CONFIG = """
[tool.bnstat]
fail-on = "warning"
select = ["BN00"]
ignore = "BN006"
eps = 1e-3
[tool.bnstat.thresholds]
dead-weight-rel = 1e-2
[tool.bnstat.per-layer-ignores]
"head.*" = ["BN008"]
"""


def test_the_file_overrides_the_defaults_and_the_flags_override_the_file(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text(CONFIG)
    loaded = load_config(path)
    assert (loaded.fail_on, loaded.select, loaded.ignore, loaded.eps) == (
        FailOn.WARNING, ("BN00",), ("BN006",), 1e-3,
    )  # fmt: skip
    assert loaded.thresholds == {**default_thresholds(), "dead-weight-rel": 1e-2}
    assert loaded.ignored_at("BN008", "head.fc") and not loaded.ignored_at("BN008", "body")
    flagged = with_overrides(
        loaded, select=["BN004,BN005"], ignore=["BN005"], fail_on="error", eps=0.5,
        thresholds=["dead-weight-rel=0.5"], layers=["body.*"],
    )  # fmt: skip
    assert (flagged.select, flagged.ignore, flagged.fail_on, flagged.eps) == (
        ("BN004", "BN005"), ("BN006", "BN005"), FailOn.ERROR, 0.5,
    )  # fmt: skip
    assert flagged.thresholds["dead-weight-rel"] == 0.5
    assert flagged.rule_enabled("BN004") and not flagged.rule_enabled("BN005")
    assert flagged.shows_layer("body.bn") and not flagged.shows_layer("head.bn")
    assert with_overrides(loaded) == loaded


def test_the_nearest_pyproject_with_a_bnstat_table_is_found(tmp_path):
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(CONFIG)
    (tmp_path / "a" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert find_pyproject(inner) == tmp_path / "pyproject.toml"
    (inner / "pyproject.toml").write_text("[tool.bnstat]\n")
    assert find_pyproject(inner) == inner / "pyproject.toml"
    assert load_config(inner / "pyproject.toml") == Settings(source=str(inner / "pyproject.toml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tool.bnstat]\nfail_on = 'error'\n", "unknown key fail_on"),
        ("[tool.bnstat]\nselect = ['BN999']\n", "unknown rule code 'BN999'"),
        ("[tool.bnstat]\neps = 2\n", "eps must be a number between 0 and 1"),
        ("[tool.bnstat]\nfail-on = 'sometimes'\n", "fail-on must be error, warning"),
        ("[tool.bnstat.thresholds]\nno-such = 1\n", "unknown threshold 'no-such'"),
        ("[tool.bnstat.thresholds]\nstale-ratio = -1\n", "must be a finite number >= 0"),
        ("[tool.bnstat]\nthresholds = 3\n", "thresholds must be a table"),
        ("[tool.bnstat\n", "invalid TOML"),
    ],
)
def test_a_bad_file_names_itself_and_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"thresholds": ["dead-weight-rel"]}, "expected NAME=VALUE"),
        ({"thresholds": ["dead-weight-rel=x"]}, "is not a number"),
        ({"select": ["XX"]}, "--select: unknown rule code"),
        ({"eps": 0.0}, "--eps: eps must be"),
    ],
)
def test_bad_flags_name_the_flag(flags, message):
    with pytest.raises(ConfigError, match=message):
        with_overrides(Settings(), **flags)
