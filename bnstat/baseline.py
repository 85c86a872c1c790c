"""Baselines: accept today's findings once, then report only new ones.

A team adopting bnstat on an existing model zoo records the current findings with
`--write-baseline`; later runs with `--baseline` hide every finding whose key is in the
file. A key is the checkpoint's path relative to the baseline file (a URL as shown, without
credentials or query string, so that a presigned URL signed anew still matches), the model
inside the file, the layer and the rule code: never the message, whose numbers move. A new defect
in a layer already listed for another rule, or in another layer, is still reported.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bnstat.errors import ConfigError
from bnstat.remote.url import looks_like_url
from bnstat.report.inspection import CheckpointReport, Finding, Report
from bnstat.report.verdict import Verdict

BASELINE_VERSION = 1
Key = tuple[str, str, str, str]  # path relative to the baseline, source, layer, rule


def _relative(checkpoint: str, baseline: Path) -> str:
    if looks_like_url(checkpoint):  # shown without credentials or query: a stable key
        return checkpoint
    target = Path(checkpoint).resolve()
    return Path(os.path.relpath(target, baseline.resolve().parent)).as_posix()


def _key(entry: CheckpointReport, finding: Finding, baseline: Path) -> Key:
    return (_relative(entry.path, baseline), entry.source or "", finding.layer or "", finding.rule)


def render_baseline(report: Report, baseline: Path) -> str:
    """The baseline file for every finding in `report`, keyed relative to `baseline`."""
    findings = sorted(
        {
            _key(entry, finding, baseline)
            for entry in report.checkpoints
            for finding in entry.findings
        }
    )
    body = {
        "bnstat_baseline": BASELINE_VERSION,
        "findings": [
            {"path": path, "source": source or None, "layer": layer or None, "rule": rule}
            for path, source, layer, rule in findings
        ],
    }
    return json.dumps(body, indent=2) + "\n"


def load_baseline(baseline: Path) -> set[Key]:
    try:
        body = json.loads(baseline.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--baseline {baseline}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--baseline {baseline}: not a bnstat baseline: {err}") from err
    if not isinstance(body, dict) or body.get("bnstat_baseline") != BASELINE_VERSION:
        raise ConfigError(
            f"--baseline {baseline}: not a bnstat baseline (version {BASELINE_VERSION})"
        )
    return {_entry_key(item, baseline) for item in body.get("findings", [])}


def _entry_key(item: Any, baseline: Path) -> Key:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("path"), str)
        or not isinstance(item.get("rule"), str)
    ):
        raise ConfigError(f"--baseline {baseline}: malformed entry {str(item)[:80]}")
    return (item["path"], item.get("source") or "", item.get("layer") or "", item["rule"])


def without_baseline(report: Report, known: set[Key], baseline: Path) -> Report:
    """The report with every finding of the baseline removed."""
    entries = tuple(
        replace(
            entry,
            findings=tuple(f for f in entry.findings if _key(entry, f, baseline) not in known),
        )
        for entry in report.checkpoints
    )
    return replace(report, checkpoints=entries)


@dataclass(frozen=True)
class Recorded:
    """A run whose findings were just recorded as the baseline: they do not fail it."""

    report: Report

    @property
    def verdict(self) -> Verdict:
        verdict = self.report.verdict
        return Verdict.PASSED if verdict is Verdict.FAILED else verdict
