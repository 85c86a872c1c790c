"""GitHub Actions workflow commands: one annotation per finding on the checkpoint file.

`::error file=model.pt,title=BN004 dead-channel::block1.bn1: ...` shows up in the job
summary and on the pull request's changed files. Severities map to error, warning and
notice; unreadable checkpoints are errors, data files a run on data skipped are
warnings on those files. Property and message text are escaped as the
workflow command syntax requires.
"""

from __future__ import annotations

from bnstat.formats.display import Display
from bnstat.formats.text import exit_reason, qualified_location
from bnstat.report.inspection import Report
from bnstat.report.severity import Severity

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(report: Report, display: Display) -> str:
    lines = []
    for entry in report.checkpoints:
        file = _property(entry.path)
        if entry.error is not None:
            lines.append(
                f"::error file={file},title=unreadable checkpoint::{_data(entry.error.message)}"
            )
        for unreadable in entry.data.unreadable if entry.data else ():
            lines.append(
                f"::warning file={_property(unreadable.path)},title=data file not read::"
                f"{_data(unreadable.reason)}"
            )
        for warning in entry.data.warnings if entry.data else ():
            lines.append(f"::warning file={file},title=bnstat data::{_data(warning)}")
        for finding in entry.findings:
            where = qualified_location(entry, finding)
            title = _property(f"{finding.rule} {finding.name}")
            message = _data(f"{where}: {finding.message}. Fix: {finding.fix}")
            lines.append(f"::{COMMANDS[finding.severity]} file={file},title={title}::{message}")
    for side in report.no_model:
        file = _property(side.path)
        lines.append(f"::notice file={file},title=skipped: no model::{_data(side.contents)}")
    lines.append(f"::notice title=bnstat::{_data(exit_reason(report, display.exit_code))}")
    return "\n".join(lines) + "\n"
