"""The library's arguments, checked as the command line checks its flags.

A value of the wrong type raises `TypeError`; a value the argument cannot take raises
`bnstat.errors.ArgumentError`, a `ValueError` whose message names the argument where the
command line names its flag. Settings are the built-in defaults (a library reads no file
it was not given), then the `config` file when one is given, then the arguments given
(not None); thresholds merge with the defaults. Nothing heavy is imported before a function runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnstat.errors import ArgumentError

if TYPE_CHECKING:
    from bnstat.report.severity import FailOn
    from bnstat.settings import Settings

Codes = str | Sequence[str] | None
PathArgument = str | os.PathLike[str]


def require(argument: str, value: Any, kind: type | tuple[type, ...], expected: str) -> None:
    """`TypeError` unless `value` is of `kind` (a bool is not a number here)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
        raise TypeError(f"{argument} must be {expected}, not {type(value).__name__}")


def at_least(argument: str, value: int | None, minimum: int) -> int | None:
    """An optional whole number of at least `minimum`."""
    if value is None:
        return None
    require(argument, value, int, "an int or None")
    if value < minimum:
        raise ArgumentError(argument, f"must be at least {minimum}")
    return value


def rule_codes(argument: str, value: Codes) -> tuple[str, ...]:
    """Rule codes or prefixes: one string (comma-separated, as `--select BN00,BN01`) or
    a sequence of them."""
    from bnstat.settings import known_codes, unknown_codes

    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(item, str) for item in items):
        raise TypeError(f"{argument} must be a rule code, a list of them or None")
    codes = tuple(c.strip().upper() for item in items for c in item.split(",") if c.strip())
    for code in unknown_codes(codes):
        raise ArgumentError(argument, f"has an unknown rule code {code!r} (known: {known_codes()})")
    return codes


def thresholds(value: Mapping[str, float] | None) -> dict[str, float]:
    """Threshold overrides by name (`dead-weight-abs` or `dead_weight_abs`)."""
    from bnstat.rules import PARAMS
    from bnstat.settings import known_thresholds, valid_threshold

    if value is None:
        return {}
    require("thresholds", value, Mapping, "a mapping of names to numbers, or None")
    given = {}
    for key, number in value.items():
        require("a threshold name", key, str, "a str")
        name = key.replace("_", "-")
        if name not in PARAMS:
            raise ArgumentError(
                "thresholds", f"has an unknown name {key!r} (known: {known_thresholds()})"
            )
        require(f"thresholds[{key!r}]", number, (int, float), "a number")
        if not valid_threshold(number):
            raise ArgumentError(f"thresholds[{key!r}]", f"must be finite and >= 0, not {number!r}")
        given[name] = float(number)
    return given


def fail_on(value: str | FailOn | None) -> FailOn | None:
    from bnstat.report.severity import FailOn

    if value is None:
        return None
    require("fail_on", value, str, "'error', 'warning', 'info', 'never' or None")
    try:
        return FailOn(value.lower())
    except ValueError:
        raise ArgumentError(
            "fail_on", f"must be error, warning, info or never, not {value!r}"
        ) from None


def eps(value: float | None) -> float | None:
    if value is None:
        return None
    require("eps", value, (int, float), "a number or None")
    if not 0 < value < 1:
        raise ArgumentError("eps", f"must be between 0 and 1, not {value!r}")
    return float(value)


def config(value: PathArgument | None) -> Path | None:
    if value is None:
        return None
    require("config", value, (str, os.PathLike), "a path (str or os.PathLike) or None")
    path = Path(value)
    if not path.is_file():
        raise ArgumentError("config", f"{str(path)!r} is not a file")
    return path


def settings(
    select: Codes,
    ignore: Codes,
    failing: str | FailOn | None,
    overrides: Mapping[str, float] | None,
    assumed_eps: float | None,
    config_file: PathArgument | None,
) -> Settings:
    """The defaults, then the config file (if given), then the arguments (see above)."""
    from dataclasses import replace

    from bnstat.settings import Settings, load_config

    chosen, ignored = rule_codes("select", select), rule_codes("ignore", ignore)
    given_eps, merged, level = eps(assumed_eps), thresholds(overrides), fail_on(failing)
    path = config(config_file)
    base = load_config(path) if path is not None else Settings()
    return replace(
        base,
        select=chosen or base.select,
        ignore=base.ignore + ignored,
        fail_on=level or base.fail_on,
        eps=given_eps if given_eps is not None else base.eps,
        thresholds={**base.thresholds, **merged},
    )
