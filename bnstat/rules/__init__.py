"""The rule registry: every rule bnstat knows, in code order.

Adding a rule means adding a module with a `RULE`, importing it here and listing its
`RULE`; the CLI, the configuration and every output format pick it up from this table.
"""

from __future__ import annotations

from bnstat.rules import (
    bn001_non_finite,
    bn002_negative_variance,
    bn003_untrained_stats,
    bn004_dead_channel,
    bn005_collapsed_variance,
    bn006_variance_outlier,
    bn007_half_precision_overflow,
    bn008_stale_layer,
    bn009_folding_scale_outlier,
    bn010_dormant_channel,
    bn011_code_in_pickle,
    bn012_unknown_global,
    bn013_no_batchnorm,
    bn014_stats_data_mismatch,
)
from bnstat.rules.base import Param, Rule

RULES: tuple[Rule, ...] = (
    bn001_non_finite.RULE,
    bn002_negative_variance.RULE,
    bn003_untrained_stats.RULE,
    bn004_dead_channel.RULE,
    bn005_collapsed_variance.RULE,
    bn006_variance_outlier.RULE,
    bn007_half_precision_overflow.RULE,
    bn008_stale_layer.RULE,
    bn009_folding_scale_outlier.RULE,
    bn010_dormant_channel.RULE,
    bn011_code_in_pickle.RULE,
    bn012_unknown_global.RULE,
    bn013_no_batchnorm.RULE,
    bn014_stats_data_mismatch.RULE,
)
RULES_BY_CODE: dict[str, Rule] = {rule.code: rule for rule in RULES}
PARAMS: dict[str, Param] = {param.name: param for rule in RULES for param in rule.params}


def default_thresholds() -> dict[str, float]:
    return {name: param.default for name, param in PARAMS.items()}


def rule_named(code_or_name: str) -> Rule | None:
    """A rule by code (`BN004`, case-insensitive) or by name (`dead-channel`)."""
    key = code_or_name.strip()
    return RULES_BY_CODE.get(key.upper()) or next((r for r in RULES if r.name == key.lower()), None)
