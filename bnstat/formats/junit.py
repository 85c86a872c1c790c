"""JUnit XML, so CI dashboards show one test per layer.

One testsuite per checkpoint (per model in the file), one testcase for the file itself
and one per layer; findings at or above --fail-on are failures, those below are written
to the testcase's system-out; an unreadable checkpoint is an errored testcase, and a file
a folder scan skipped because it holds no model a skipped one. The data files a run on
data skipped, and its warnings, go to the suite's system-err.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from bnstat.formats.display import Display
from bnstat.formats.text import checkpoint_title, data_problems
from bnstat.report.inspection import CheckpointReport, Finding, Report
from bnstat.report.severity import FailOn

FILE_CASE = "(checkpoint)"


def render_junit(report: Report, display: Display) -> str:
    suites = ElementTree.Element("testsuites", name="bnstat")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    skipped = [_skipped_suite(side.path, side.contents) for side in report.no_model]
    for suite in [*(_suite(entry, report.fail_on) for entry in report.checkpoints), *skipped]:
        suites.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        suites.set(key, str(value))
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _skipped_suite(path: str, contents: str) -> ElementTree.Element:
    """A file a folder scan skipped because it holds no model: one skipped testcase."""
    suite = ElementTree.Element("testsuite", name=path)
    case = ElementTree.SubElement(suite, "testcase", classname=path, name=FILE_CASE)
    ElementTree.SubElement(case, "skipped", message=contents)
    _count(suite, tests=1, failures=0, errors=0, skipped=1)
    return suite


def _suite(entry: CheckpointReport, fail_on: FailOn) -> ElementTree.Element:
    suite = ElementTree.Element("testsuite", name=checkpoint_title(entry))
    if entry.error is not None:
        case = ElementTree.SubElement(suite, "testcase", classname=entry.path, name=FILE_CASE)
        ElementTree.SubElement(
            case, "error", type="unreadable", message=entry.error.message
        ).text = entry.error.message
        _count(suite, tests=1, failures=0, errors=1)
        return suite
    by_layer: dict[str | None, list[Finding]] = {None: []}
    by_layer.update((layer_report.name, []) for layer_report in entry.layers)
    for finding in entry.findings:
        by_layer.setdefault(finding.layer, []).append(finding)
    failures = 0
    for layer, findings in by_layer.items():
        failures += _case(suite, entry, layer, findings, fail_on)
    if entry.data is not None and (problems := data_problems(entry.data)):
        ElementTree.SubElement(suite, "system-err").text = "\n".join(problems)
    _count(suite, tests=len(by_layer), failures=failures, errors=0)
    return suite


def _case(
    suite: ElementTree.Element, entry: CheckpointReport, layer: str | None,
    findings: list[Finding], fail_on: FailOn,
) -> int:  # fmt: skip
    """Add a testcase; return 1 if it failed."""
    name = FILE_CASE if layer is None else (layer or "(top level)")
    case = ElementTree.SubElement(suite, "testcase", classname=checkpoint_title(entry), name=name)
    failing = [f for f in findings if fail_on.fails(f.severity)]
    if failing:
        failure = ElementTree.SubElement(
            case, "failure", type=" ".join(f.rule for f in failing), message=failing[0].message
        )
        failure.text = "\n".join(_line(f) for f in failing)
    passing = [f for f in findings if not fail_on.fails(f.severity)]
    if passing:
        ElementTree.SubElement(case, "system-out").text = "\n".join(_line(f) for f in passing)
    return 1 if failing else 0


def _line(finding: Finding) -> str:
    head = f"{finding.severity.value} {finding.rule} {finding.name}"
    return f"{head}: {finding.message} (fix: {finding.fix})"


def _count(
    suite: ElementTree.Element, tests: int, failures: int, errors: int, skipped: int = 0
) -> None:
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
