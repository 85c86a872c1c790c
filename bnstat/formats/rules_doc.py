"""`bnstat rules` as text, markdown or JSON: the rule table, or one rule's documentation,
with the thresholds in effect.

Everything comes from the rule modules' docstrings and parameters, so the CLI, the
README table and SARIF rule metadata cannot drift apart.
"""

from __future__ import annotations

import json
import textwrap

from bnstat.formats.display import Display
from bnstat.rules import RULES
from bnstat.rules.base import Rule
from bnstat.rules.listing import RuleListing
from bnstat.settings import Settings

SECTION_TITLES = ("What it checks", "Why it matters", "Example", "Fix")


def render_rules_text(listing: RuleListing, display: Display) -> str:
    """Text wrapped between words to the display's width."""
    if listing.explained:
        return _text_rule(listing.rules[0], listing.settings, display.width)
    return _text_table(listing.settings, display.width)


def render_rules_markdown(listing: RuleListing, display: Display) -> str:
    if listing.explained:
        return _markdown_rule(listing.rules[0], listing.settings)
    return _markdown_table(listing.settings)


def render_rules_json(listing: RuleListing, display: Display) -> str:
    return json.dumps([_rule_dict(r, listing.settings) for r in listing.rules], indent=2) + "\n"


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


def _wrap(text: str, width: int, first: str, indent: int) -> list[str]:
    """`text` after `first`, wrapped between words, later lines indented by `indent`."""
    wrapper = textwrap.TextWrapper(
        max(width, indent + 20), initial_indent=first, subsequent_indent=" " * indent,
        break_long_words=False, break_on_hyphens=False,
    )  # fmt: skip
    return wrapper.wrap(text) or [first.rstrip()]


def _text_table(settings: Settings, width: int) -> str:
    """One rule per entry: code, name and severity, then its summary beside them on a wide
    line or under them on a narrow one, and its thresholds."""
    lines = []
    for rule in RULES:
        state = "" if settings.rule_enabled(rule.code) else " (disabled)"
        head = f"{rule.code}  {rule.name:<24} {rule.severity.value:<8} "
        indent = len(head) if width - len(head) >= 30 else 7
        if indent < len(head):
            lines.append(head.rstrip())
            head = " " * indent
        lines += _wrap(rule.doc.summary + state, width, head, indent)
        lines += [" " * indent + t for t in _thresholds(rule, settings)]
    return "\n".join(lines) + "\n"


def _sections(rule: Rule) -> list[tuple[str, str]]:
    doc = rule.doc
    return list(zip(SECTION_TITLES, (doc.what, doc.why, doc.example, doc.fix), strict=True))


def _text_rule(rule: Rule, settings: Settings, width: int) -> str:
    lines = [f"{rule.code} {rule.name} ({rule.severity.value})"]
    lines += [*_wrap(rule.doc.summary, width, "", 0), ""]
    for title, body in _sections(rule):
        lines.append(title)
        for paragraph in body.split("\n\n"):
            lines += _wrap(" ".join(paragraph.split()), width, "  ", 2)
        lines.append("")
    thresholds = _thresholds(rule, settings)
    if thresholds:
        title = "Thresholds (set with --threshold NAME=VALUE or [tool.bnstat.thresholds])"
        lines += [*_wrap(title, width, "", 0), *(f"  {t}" for t in thresholds)]
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
