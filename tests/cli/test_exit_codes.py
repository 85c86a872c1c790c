"""Every command's exit code comes from its result or from what stopped it, in one place:
0 passed, 1 failed the gate, 2 an unreadable input, a bad invocation or a bug (said as
"internal error, please report", with the traceback under --debug)."""

from __future__ import annotations

import pytest
from zoo import SAMPLES

import bnstat.analysis
import bnstat.formats.json_report
from bnstat.cli.app import EXIT_CODES
from bnstat.report.verdict import Verdict


def test_every_verdict_has_an_exit_code():
    assert {verdict: EXIT_CODES[verdict] for verdict in Verdict} == {
        Verdict.PASSED: 0,
        Verdict.FAILED: 1,
        Verdict.UNREADABLE: 2,
    }


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["check", SAMPLES / "healthy.pt"], 0),
        (["check", SAMPLES / "bn001_non_finite.pt"], 1),
        (["check", SAMPLES / "bn004_dead_channel.pt", "--fail-on", "warning"], 1),
        (["check", SAMPLES / "unreadable" / "empty.pt", SAMPLES / "healthy.pt"], 2),
        (["diff", SAMPLES / "healthy.pt", SAMPLES / "bn004_dead_channel.pt"], 0),
        (["diff", SAMPLES / "healthy.pt", SAMPLES / "healthy.pt", "--fail-on-change"], 0),
        (
            ["diff", SAMPLES / "healthy.pt", SAMPLES / "bn004_dead_channel.pt", "--fail-on-change"],
            1,
        ),
        (["rules"], 0),
        (["rules", "BN999"], 2),
        (["check", "--no-such-option", SAMPLES / "healthy.pt"], 2),
    ],
)
def test_exit_codes(cli, args, code):
    assert cli(*args).exit_code == code


def test_the_report_shows_the_exit_code_the_run_ends_with(cli):
    result = cli("check", SAMPLES / "bn001_non_finite.pt")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1].startswith("exit 1: 1 error at or above --fail-on")


def _bug(*args: object, **kwargs: object) -> None:
    raise ZeroDivisionError("a bug")


def test_a_bug_while_reading_one_checkpoint_is_an_internal_error(cli, monkeypatch):
    """The other checkpoints still run; the bug is reported as one to report, not as a
    bad file, and its kind says so."""
    from bnstat.analysis import analyze
    from bnstat.report.inspection import ErrorKind
    from bnstat.settings import Settings

    monkeypatch.setattr(bnstat.analysis, "layer_reports", _bug)
    report = analyze([SAMPLES / "healthy.pt", SAMPLES / "unreadable" / "empty.pt"], Settings())
    assert [entry.error.kind for entry in report.checkpoints if entry.error] == [
        ErrorKind.INTERNAL,
        ErrorKind.UNREADABLE,
    ]
    result = cli("check", SAMPLES / "healthy.pt")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"bnstat: error: {SAMPLES / 'healthy.pt'}: internal error, please report: "
        "ZeroDivisionError: a bug (rerun with --debug for the traceback)"
    )


def test_a_bug_in_a_command_is_an_internal_error_with_its_traceback_under_debug(cli, monkeypatch):
    monkeypatch.setattr(bnstat.formats.json_report, "render_json", _bug)
    quiet = cli("check", SAMPLES / "healthy.pt", "--format", "json")
    assert quiet.exit_code == 2 and "Traceback" not in quiet.stderr
    assert quiet.stderr == (
        "bnstat: error: internal error, please report: ZeroDivisionError: a bug "
        "(rerun with --debug for the traceback)\n"
    )
    loud = cli("check", SAMPLES / "healthy.pt", "--format", "json", "--debug")
    assert loud.exit_code == 2
    assert "Traceback" in loud.stderr and 'raise ZeroDivisionError("a bug")' in loud.stderr
    assert loud.stderr.splitlines()[-1] == (
        "bnstat: error: internal error, please report: ZeroDivisionError: a bug"
    )


def test_ctrl_c_is_exit_130(cli, monkeypatch):
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bnstat.analysis, "analyze", interrupted)
    result = cli("check", SAMPLES / "healthy.pt")
    assert (result.exit_code, result.stderr) == (130, "bnstat: interrupted\n")
