"""Effective settings: defaults, then `[tool.bnstat]` in pyproject.toml, then flags.

Every key is validated: an unknown key, rule code or threshold, or a value of the wrong
type is a `ConfigError` naming the file and the key, so a typo never silently disables a
check in CI.
"""

from __future__ import annotations

import fnmatch
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bnstat.errors import ConfigError
from bnstat.report.severity import FailOn
from bnstat.rules import PARAMS, RULES, default_thresholds
from bnstat.wording import plural

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_EPS = 1e-5
CONFIG_KEYS = (
    "select", "ignore", "fail-on", "eps", "thresholds", "per-layer-ignores", "exclude"
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Which rules run, their thresholds, which layers are shown and when a run fails."""

    select: tuple[str, ...] = ()  # rule code prefixes; empty selects every rule
    ignore: tuple[str, ...] = ()
    fail_on: FailOn = FailOn.ERROR
    eps: float = DEFAULT_EPS
    thresholds: Mapping[str, float] = field(default_factory=default_thresholds)
    layers: tuple[str, ...] = ()  # globs; empty shows every layer
    per_layer_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    source: str | None = None  # the config file the settings came from
    exclude: tuple[str, ...] = ()  # globs of files left out of folders (`stages.exclude`)

    def rule_enabled(self, code: str) -> bool:
        selected = not self.select or any(code.startswith(p) for p in self.select)
        return selected and not any(code.startswith(p) for p in self.ignore)

    def shows_layer(self, layer: str | None) -> bool:
        return (
            layer is None
            or not self.layers
            or any(fnmatch.fnmatchcase(layer, g) for g in self.layers)
        )

    def globs_matching_none(self, layers: Iterable[str]) -> list[str]:
        """The `--layers` globs that select none of these layer names."""
        names = list(layers)
        return [g for g in self.layers if not any(fnmatch.fnmatchcase(n, g) for n in names)]

    def ignored_at(self, code: str, layer: str | None) -> bool:
        return layer is not None and any(
            fnmatch.fnmatchcase(layer, glob) and any(code.startswith(c) for c in codes)
            for glob, codes in self.per_layer_ignores
        )


def known_codes() -> str:
    return f"BN001..{RULES[-1].code}"


def known_thresholds() -> str:
    return ", ".join(sorted(PARAMS))


def unknown_codes(codes: Iterable[str]) -> list[str]:
    """The codes that are neither a rule's code nor the start of one."""
    known = [r.code for r in RULES]
    return [code for code in codes if not any(k.startswith(code) for k in known)]


def valid_threshold(value: Any) -> bool:
    """A threshold is a finite number >= 0 (not a bool)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value >= 0


def rule_codes(values: Sequence[str], where: str) -> tuple[str, ...]:
    """Validate rule code prefixes such as `BN004` or `BN00` (case-insensitive)."""
    codes = tuple(v.strip().upper() for v in values if v.strip())
    for code in unknown_codes(codes):
        raise ConfigError(f"{where}: unknown rule code {code!r} (known: {known_codes()})")
    return codes


def threshold_value(name: str, value: Any, where: str) -> float:
    if name not in PARAMS:
        raise ConfigError(f"{where}: unknown threshold {name!r} (known: {known_thresholds()})")
    if not valid_threshold(value):
        raise ConfigError(f"{where}: threshold {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def parse_threshold_flag(text: str) -> tuple[str, float]:
    """`NAME=VALUE` from `--threshold`."""
    name, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"--threshold {text!r}: expected NAME=VALUE")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"--threshold {text!r}: {value!r} is not a number") from None
    return name.strip(), threshold_value(name.strip(), number, "--threshold")


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.bnstat] table."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "bnstat" in _read_toml(candidate).get("tool", {}):
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err


def load_config(path: Path) -> Settings:
    """Settings from `[tool.bnstat]` of a pyproject.toml, or the top level of another file."""
    data = _read_toml(path)
    table = data.get("tool", {}).get("bnstat") if path.name == "pyproject.toml" else data
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: no [tool.bnstat] table")
    return _settings_from_table(table, str(path))


def _settings_from_table(table: dict[str, Any], where: str) -> Settings:
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown {plural('key', len(unknown))} {', '.join(unknown)} "
            f"(known: {', '.join(CONFIG_KEYS)})"
        )
    settings = Settings(source=where)
    if "select" in table:
        settings = replace(settings, select=rule_codes(_strings(table, "select", where), where))
    if "ignore" in table:
        settings = replace(settings, ignore=rule_codes(_strings(table, "ignore", where), where))
    if "fail-on" in table:
        settings = replace(settings, fail_on=_fail_on(table["fail-on"], where))
    if "eps" in table:
        settings = replace(settings, eps=_eps(table["eps"], where))
    if "exclude" in table:
        settings = replace(settings, exclude=_globs(table["exclude"], where))
    thresholds = dict(settings.thresholds)
    for name, value in _table(table, "thresholds", where).items():
        thresholds[name] = threshold_value(name, value, where)
    ignores = tuple(
        (glob, rule_codes(_strings({glob: codes}, glob, where), where))
        for glob, codes in _table(table, "per-layer-ignores", where).items()
    )
    return replace(settings, thresholds=thresholds, per_layer_ignores=ignores)


def _strings(table: dict[str, Any], key: str, where: str) -> list[str]:
    value = table[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of rule codes")
    return value


def _globs(value: Any, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{where}: exclude must be a list of glob patterns, got {value!r}")
    return tuple(values)


def _table(table: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table")
    return value


def _fail_on(value: Any, where: str) -> FailOn:
    try:
        return FailOn(str(value).lower())
    except ValueError:
        raise ConfigError(
            f"{where}: fail-on must be error, warning, info or never, got {value!r}"
        ) from None


def _eps(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(f"{where}: eps must be a number between 0 and 1, got {value!r}")
    return float(value)


def with_overrides(
    settings: Settings,
    *,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    fail_on: str | None = None,
    eps: float | None = None,
    thresholds: Sequence[str] = (),
    layers: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Settings:
    """Apply command-line flags on top of file settings (flags win; excludes add up)."""
    merged = dict(settings.thresholds)
    merged.update(parse_threshold_flag(t) for t in thresholds)
    return replace(
        settings,
        select=rule_codes(_split_codes(select), "--select") or settings.select,
        ignore=settings.ignore + rule_codes(_split_codes(ignore), "--ignore"),
        fail_on=_fail_on(fail_on, "--fail-on") if fail_on else settings.fail_on,
        eps=_eps(eps, "--eps") if eps is not None else settings.eps,
        thresholds=merged,
        layers=tuple(layers) or settings.layers,
        exclude=settings.exclude + _globs(list(exclude), "--exclude"),
    )


def _split_codes(values: Sequence[str]) -> list[str]:
    return [code for value in values for code in value.split(",")]
