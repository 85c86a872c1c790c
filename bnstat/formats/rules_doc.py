"""`bnstat rules`: the rule table, or one rule's documentation, with effective thresholds.

Everything comes from the rule modules' docstrings and parameters, so the CLI, the
README table and SARIF rule metadata cannot drift apart.
"""

from __future__ import annotations

import json

from bnstat.errors import UsageError
from bnstat.rules import RULES, rule_named
from bnstat.rules.base import Rule
from bnstat.settings import Settings

SECTION_TITLES = ("What it checks", "Why it matters", "Example", "Fix")


def render_rules(code: str | None, fmt: str, settings: Settings) -> str:
    selected = RULES if code is None else (_one(code),)
    if fmt == "json":
        return json.dumps([_rule_dict(r, settings) for r in selected], indent=2) + "\n"
    if fmt == "markdown":
        return _markdown_table(settings) if code is None else _markdown_rule(selected[0], settings)
    if fmt == "text":
        return _text_table(settings) if code is None else _text_rule(selected[0], settings)
    raise UsageError(f"--format {fmt!r}: expected text, markdown or json")


def _one(code: str) -> Rule:
    rule = rule_named(code)
    if rule is None:
        raise UsageError(f"unknown rule {code!r}; `bnstat rules` lists them")
    return rule


def _thresholds(rule: Rule, settings: Settings) -> list[str]:
    return [
        f"{p.name} = {settings.thresholds[p.name]:g}"
        + ("" if settings.thresholds[p.name] == p.default else f" (default {p.default:g})")
        for p in rule.params
    ]


def _rule_dict(rule: Rule, settings: Settings) -> dict[str, object]:
    return {
        "code": rule.code,
        "name": rule.name,
        "severity": rule.severity.value,
        "enabled": settings.rule_enabled(rule.code),
        "summary": rule.doc.summary,
        "what_it_checks": rule.doc.what,
        "why_it_matters": rule.doc.why,
        "example": rule.doc.example,
        "fix": rule.doc.fix,
        "thresholds": {p.name: settings.thresholds[p.name] for p in rule.params},
    }


def _text_table(settings: Settings) -> str:
    lines = []
    for rule in RULES:
        state = "" if settings.rule_enabled(rule.code) else "  (disabled)"
        lines.append(
            f"{rule.code}  {rule.name:<24} {rule.severity.value:<8} {rule.doc.summary}{state}"
        )
        lines += [f"{'':<36}{t}" for t in _thresholds(rule, settings)]
    return "\n".join(lines) + "\n"


def _sections(rule: Rule) -> list[tuple[str, str]]:
    doc = rule.doc
    return list(zip(SECTION_TITLES, (doc.what, doc.why, doc.example, doc.fix), strict=True))


def _text_rule(rule: Rule, settings: Settings) -> str:
    lines = [f"{rule.code} {rule.name} ({rule.severity.value})", rule.doc.summary, ""]
    for title, body in _sections(rule):
        lines += [title, *(f"  {line}" for line in body.splitlines()), ""]
    thresholds = _thresholds(rule, settings)
    if thresholds:
        lines += [
            "Thresholds (set with --threshold NAME=VALUE or [tool.bnstat.thresholds])",
            *(f"  {t}" for t in thresholds),
        ]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_table(settings: Settings) -> str:
    lines = ["| code | name | severity | fires when | thresholds |", "|---|---|---|---|---|"]
    for rule in RULES:
        thresholds = "; ".join(_thresholds(rule, settings)) or "-"
        cells = (rule.code, rule.name, rule.severity.value, rule.doc.summary, thresholds)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown_rule(rule: Rule, settings: Settings) -> str:
    lines = [f"### {rule.code} {rule.name} ({rule.severity.value})", "", rule.doc.summary, ""]
    for title, body in _sections(rule):
        lines += [f"#### {title}", "", body, ""]
    return "\n".join(lines)
