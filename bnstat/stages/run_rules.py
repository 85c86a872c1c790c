"""Run every enabled rule over a model's layers and turn their hits into findings.

The rules themselves live in `bnstat.rules`, one module each; this is the engine: it
skips disabled rules, per-layer ignores and layers not shown, names each hit's layer,
gives it its rule's fix unless the hit knows better, and orders the findings.
"""

from __future__ import annotations

from bnstat.report.inspection import Finding
from bnstat.rules import RULES
from bnstat.rules.base import RuleInput
from bnstat.settings import Settings


def run_rules(rule_input: RuleInput, settings: Settings) -> list[Finding]:
    """Every enabled rule's findings, ordered by layer (in execution order when a data
    pass gave it, else as stored) then rule code."""
    names = rule_input.layers.names
    order = rule_input.data.order if rule_input.data is not None else ()
    rank = {layer: position for position, layer in enumerate(order)}
    keyed: list[tuple[int, str, Finding]] = []
    for rule in RULES:
        if not settings.rule_enabled(rule.code):
            continue
        for hit in rule.check(rule_input):
            layer = names[hit.layer] if hit.layer is not None else None
            if settings.ignored_at(rule.code, layer) or not settings.shows_layer(layer):
                continue
            finding = Finding(
                rule.code,
                rule.name,
                rule.severity,
                layer,
                hit.channels,
                hit.message,
                hit.fix or rule.doc.short_fix,
            )
            position = -1 if hit.layer is None else rank.get(hit.layer, len(rank) + hit.layer)
            keyed.append((position, rule.code, finding))
    keyed.sort(key=lambda item: item[:2])
    return [finding for *_, finding in keyed]
