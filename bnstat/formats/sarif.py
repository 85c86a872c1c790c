"""SARIF 2.1.0, as GitHub code scanning and other SARIF viewers read it.

One run; every rule as a reporting descriptor whose texts come from the rule's
docstring; every finding as a result located in its checkpoint file (no region: a binary
file has no lines; `sarif_locations`) and, logically, in its layer. Fingerprints are
computed from the rule, the file's URI (relative to the working directory, as in the
location), the model in the file and the layer, so an alert keeps its identity from run
to run and two checkpoints' identical findings stay apart. Unreadable checkpoints
are tool execution notifications, and make the invocation unsuccessful; files a folder
scan skipped because they hold no model are notifications too, notes, and data files a
run on data skipped are warning notifications.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bnstat.formats.display import Display
from bnstat.formats.sarif_locations import artifact, base_ids
from bnstat.formats.text import qualified_location
from bnstat.report.inspection import CheckpointReport, Finding, Report
from bnstat.report.severity import Severity
from bnstat.rules import RULES
from bnstat.rules.base import Rule

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
SECURITY_RULES = {"BN011": "8.0"}  # a pickle that runs code when loaded


def render_sarif(report: Report, display: Display) -> str:
    directory = display.directory
    run = {
        "tool": {"driver": _driver(report.tool_version)},
        "invocations": [_invocation(report, directory)],
        "originalUriBaseIds": base_ids(directory),
        "results": [
            _result(entry, finding, directory)
            for entry in report.checkpoints
            for finding in entry.findings
        ],
        "columnKind": "unicodeCodePoints",
    }
    log = {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(log, indent=2) + "\n"


def _driver(version: str) -> dict[str, Any]:
    return {
        "name": "bnstat",
        "version": version,
        "rules": [_rule(rule) for rule in RULES],
    }


def _rule(rule: Rule) -> dict[str, Any]:
    doc = rule.doc
    properties: dict[str, Any] = {"tags": ["batchnorm"], "precision": "high"}
    if rule.code in SECURITY_RULES:
        properties["tags"].append("security")
        properties["security-severity"] = SECURITY_RULES[rule.code]
    help_markdown = "\n\n".join(
        f"**{title}**\n\n{body}"
        for title, body in (
            ("What it checks", doc.what), ("Why it matters", doc.why),
            ("Example", doc.example), ("Fix", doc.fix),
        )
    )  # fmt: skip
    return {
        "id": rule.code,
        "name": _pascal(rule.name),
        "shortDescription": {"text": doc.summary},
        "fullDescription": {"text": " ".join(doc.what.split())},
        "help": {"text": " ".join(doc.fix.split()), "markdown": help_markdown},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": properties,
    }


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def _result(entry: CheckpointReport, finding: Finding, directory: str) -> dict[str, Any]:
    where = qualified_location(entry, finding)
    location = artifact(entry.path, directory)
    identity = "\0".join((finding.rule, location["uri"], entry.source or "", finding.layer or ""))
    fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:32]
    place: dict[str, Any] = {"physicalLocation": {"artifactLocation": location}}
    if finding.layer is not None:
        qualified = f"{entry.source}/{finding.layer}" if entry.source else finding.layer
        place["logicalLocations"] = [
            {"name": finding.layer, "fullyQualifiedName": qualified, "kind": "module"}
        ]
    return {
        "ruleId": finding.rule,
        "ruleIndex": [rule.code for rule in RULES].index(finding.rule),
        "level": LEVELS[finding.severity],
        "message": {"text": f"{where}: {finding.message}"},
        "locations": [place],
        "partialFingerprints": {"primaryLocationLineHash": fingerprint},
        "properties": {"channels": list(finding.channels), "fix": finding.fix},
    }


def _invocation(report: Report, directory: str) -> dict[str, Any]:
    failures = [(entry.path, entry.error) for entry in report.checkpoints if entry.error]
    runs = [entry.data for entry in report.checkpoints if entry.data is not None]
    unread = {u.path: u for run in runs for u in run.unreadable}  # once, if several runs
    notes = [
        ("unreadable-checkpoint", "error", f"could not be read: {error.message}", path)
        for path, error in failures
    ]
    notes += [("no-model", "note", f"skipped: {s.contents}", s.path) for s in report.no_model]
    notes += [
        ("unreadable-data-file", "warning", f"data file not read: {u.reason}", u.path)
        for u in unread.values()
    ]
    return {
        "executionSuccessful": not failures,
        "toolExecutionNotifications": [
            {
                "descriptor": {"id": kind},
                "level": level,
                "message": {"text": text},
                "locations": [
                    {"physicalLocation": {"artifactLocation": artifact(path, directory)}}
                ],
            }
            for kind, level, text, path in notes
        ],
    }
