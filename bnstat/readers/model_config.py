"""The BatchNorm eps a model's `config.json` states, where it states it unambiguously.

A state dict does not record eps, but a model hub folder's `config.json` often does:
`batch_norm_eps` (EfficientNet, SwiftFormer, EfficientFormer ... ported from TensorFlow
with 1e-3), and, for a few architectures known to pass it to their BatchNorm layers,
`layer_norm_eps` (`ARCHITECTURE_KEYS`). Any other key, a value that is not a number
between 0 and 1, or a file that is not a JSON object is no statement about BatchNorm,
and is ignored. Only the top level of the file counts: a nested backbone configuration
describes a model the weights may or may not contain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeGuard

from bnstat.errors import CheckpointError
from bnstat.location import Location, open_bytes
from bnstat.remote.url import RemoteUrl
from bnstat.report.inspection import EpsConfig

CONFIG_NAME = "config.json"
HUB = "hf"  # the scheme of model hub repositories, where a config.json sits beside weights
MAX_CONFIG_BYTES = 4 * 2**20
BATCH_NORM_KEY = "batch_norm_eps"
ARCHITECTURE_KEYS = {  # model_type: the key its BatchNorm layers take eps from
    "mobilenet_v1": "layer_norm_eps",
    "mobilenet_v2": "layer_norm_eps",
}
OTHER_EPS = ("Segmentation",)  # architectures whose head's BatchNorm keeps another eps


def config_eps(weights: Location) -> EpsConfig | None:
    """The eps stated by the `config.json` beside `weights`, with where it came from: a
    local file, or a model hub repository's (other URLs are not asked for one, which
    would cost a request that rarely finds anything)."""
    if isinstance(weights, RemoteUrl) and weights.scheme != HUB:
        return None
    path = weights.parent / CONFIG_NAME
    config = _json_object(path)
    if config is None:
        return None
    key = BATCH_NORM_KEY if BATCH_NORM_KEY in config else _architecture_key(config)
    value = config.get(key) if key is not None else None
    if key is None or not _is_eps(value):
        return None
    return EpsConfig(str(path), key, value)


def _json_object(path: Location) -> dict[str, Any] | None:
    try:
        text = _small_file(path)
        config = json.loads(text) if text is not None else None
    except (OSError, CheckpointError, ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


def _small_file(path: Location) -> bytes | None:
    """The file's bytes, if it exists and is small enough to be a configuration."""
    if isinstance(path, Path):
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        return path.read_bytes()
    opened = open_bytes(path)  # a URL beside a URL, read through the same limits
    try:
        return opened.pread(0, opened.size) if opened.size <= MAX_CONFIG_BYTES else None
    finally:
        opened.close()


def _architecture_key(config: dict[str, Any]) -> str | None:
    key = ARCHITECTURE_KEYS.get(str(config.get("model_type")))
    architectures = config.get("architectures") or []
    names = [str(name) for name in architectures] if isinstance(architectures, list) else []
    return None if any(word in name for name in names for word in OTHER_EPS) else key


def _is_eps(value: Any) -> TypeGuard[float]:
    return isinstance(value, float) and 0 < value < 1
