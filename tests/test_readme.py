"""The README's example output is what the command prints at the width the README states."""

from __future__ import annotations

from typer.testing import CliRunner
from zoo import REPO

from bnstat.cli import app

COMMAND = "$ bnstat inspect sample_checkpoints/bn004_dead_channel.pt\n"


def test_the_inspect_example_is_the_real_output_at_80_columns(monkeypatch):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "In an 80-column terminal" in readme
    shown = readme.split(COMMAND, 1)[1].split("```", 1)[0]
    monkeypatch.chdir(REPO)
    args = COMMAND.removeprefix("$ bnstat ").split()
    printed = CliRunner().invoke(app, args, env={"COLUMNS": "80"}).stdout
    assert shown == printed


def test_ci_runs_the_readmes_test_command_then_the_slow_tests():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = readme.split("# set up and run the tests\n", 1)[1].splitlines()[0]
    test_command = command.rsplit(" && ", 1)[1]
    steps = [line.split("#")[0].strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test_command == "python -m pytest -q"
    assert steps.index(test_command) < steps.index(f"{test_command} -m slow")
