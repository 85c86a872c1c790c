"""A misused command is one line on stderr with the hint to --help, exit code 2; the help
describes every argument and option and shows the choices."""

from __future__ import annotations

import re

import pytest
import typer
from zoo import SAMPLES

from bnstat.cli import app

HEALTHY = SAMPLES / "healthy.pt"
MISUSES = [
    (["inspect", HEALTHY, "--format", "nonsense"], "inspect", "'nonsense' is not one of 'table'"),
    (["inspect"], "inspect", "missing argument 'CHECKPOINT...'"),
    (["inspect", HEALTHY, "--nope"], "inspect", "no such option: --nope"),
    (["check", HEALTHY, "--jobs", "0"], "check", "0 is not in the range x>=1"),
    (["check", HEALTHY, "--jobs", "-3"], "check", "-3 is not in the range x>=1"),
    (["check", HEALTHY, "--fail-on", "sometimes"], "check", "'sometimes' is not one of"),
    (["check", HEALTHY, "--eps", "small"], "check", "'small' is not a valid float"),
    (["diff", HEALTHY], "diff", "missing argument 'B'"),
    (["diff", HEALTHY, HEALTHY, "-f", "csv"], "diff", "'csv' is not one of 'table', 'json'"),
    (["rules", "--format", "html"], "rules", "'html' is not one of 'text', 'markdown', 'json'"),
    (["recalibrate", HEALTHY, "--data", SAMPLES / "digits", "--cache-mb", "-1"], "recalibrate",
     "-1 is not in the range x>=0"),
    (["recalibrate", HEALTHY], "recalibrate", "missing option '--data'"),
    (["nonsense"], "", "no such command 'nonsense'"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "command", "needle"), MISUSES, ids=[m[2] for m in MISUSES])
def test_a_usage_error_is_one_line_with_a_hint_and_exit_2(cli, args, command, needle):
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("bnstat: error: ") and needle in line, line
    assert line.endswith(f"; see '{' '.join(['bnstat', command]).strip()} --help'"), line


def test_bnstat_alone_shows_the_help(cli):
    result = cli()
    assert "Usage: bnstat [OPTIONS] COMMAND" in result.output and "Commands:" in result.output


def commands() -> dict[str, typer.core.TyperCommand]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["inspect", "check", "rules", "diff", "recalibrate"])
def test_every_argument_and_option_has_a_description(cli, name):
    for param in commands()[name].params:
        assert (getattr(param, "help", "") or "").strip(), (name, param.name)
    text = cli(name, "--help").stdout
    usage = text.splitlines()[0]
    assert "{" not in usage and not re.search(r"\b[a-z_]+\.\.\.", usage), usage
    assert "<str>" not in text and "<path>" not in text and "<int>" not in text, text


@pytest.mark.parametrize(
    ("name", "choices"),
    [
        (
            "inspect",
            ["<table|json|markdown|sarif|junit|github|html>", "<error|warning|info|never>"],
        ),
        ("check", ["<error|warning|info|never>"]),
        ("rules", ["<text|markdown|json>"]),
        ("diff", ["<table|json>"]),
        ("recalibrate", ["<table|json>", "<exact|train-average>", "<1|3|4>"]),
    ],
)
def test_options_with_choices_show_them(cli, name, choices):
    text = cli(name, "--help").stdout
    assert all(choice in text for choice in choices), text


def test_command_summaries_are_whole(cli):
    text = cli("--help").stdout
    listed = text.split("Commands:")[1].splitlines()
    summaries = {line.split()[0]: " ".join(line.split()[1:]) for line in listed if line.strip()}
    assert set(summaries) == set(commands())
    for name, summary in summaries.items():
        assert summary == commands()[name].short_help, (name, summary)
        assert not summary.endswith(("...", "…")), summary
