"""SARIF 2.1.0, as GitHub code scanning and other SARIF viewers read it.

One run; every rule as a reporting descriptor whose texts come from the rule's
docstring; every finding as a result located in its checkpoint file (line 1: a binary
file has no lines) and, logically, in its layer. Fingerprints are computed from the rule,
the model in the file and the layer, so an alert keeps its identity from run to run
(GitHub would otherwise hash "source lines" of a binary file). Unreadable checkpoints
are tool execution notifications, and make the invocation unsuccessful; data files a run
on data skipped are warning notifications.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from bnstat.formats.display import Display
from bnstat.formats.text import qualified_location
from bnstat.report.inspection import CheckpointReport, Finding, Report
from bnstat.report.severity import Severity
from bnstat.rules import RULES
from bnstat.rules.base import Rule

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
SECURITY_RULES = {"BN011": "8.0"}  # a pickle that runs code when loaded


def render_sarif(report: Report, display: Display) -> str:
    run = {
        "tool": {"driver": _driver(report.tool_version)},
        "invocations": [_invocation(report)],
        "results": [
            _result(entry, finding) for entry in report.checkpoints for finding in entry.findings
        ],
        "columnKind": "unicodeCodePoints",
    }
    log = {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(log, indent=2) + "\n"


def _driver(version: str) -> dict[str, Any]:
    return {
        "name": "bnstat",
        "version": version,
        "informationUri": "https://pypi.org/project/bnstat/",
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


def _uri(path: str) -> str:
    pure = PurePath(path)
    return pure.as_uri() if pure.is_absolute() else quote(pure.as_posix())


def _physical(path: str) -> dict[str, Any]:
    return {"artifactLocation": {"uri": _uri(path)}, "region": {"startLine": 1}}


def _result(entry: CheckpointReport, finding: Finding) -> dict[str, Any]:
    where = qualified_location(entry, finding)
    identity = "\0".join((finding.rule, entry.source or "", finding.layer or ""))
    fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:32]
    place: dict[str, Any] = {"physicalLocation": _physical(entry.path)}
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


def _invocation(report: Report) -> dict[str, Any]:
    failures = [(entry, entry.error) for entry in report.checkpoints if entry.error is not None]
    runs = [entry.data for entry in report.checkpoints if entry.data is not None]
    skipped = {u.path: u for run in runs for u in run.unreadable}  # once, if several runs
    notifications = [
        _notification(
            "unreadable-checkpoint", "error", f"could not be read: {error.message}", entry.path
        )
        for entry, error in failures
    ]
    notifications += [
        _notification("unreadable-data-file", "warning", f"data file not read: {u.reason}", u.path)
        for u in skipped.values()
    ]
    return {"executionSuccessful": not failures, "toolExecutionNotifications": notifications}


def _notification(kind: str, level: str, text: str, path: str) -> dict[str, Any]:
    return {
        "descriptor": {"id": kind},
        "level": level,
        "message": {"text": text},
        "locations": [{"physicalLocation": _physical(path)}],
    }
