"""The fsspec filesystem for an object store's or a hub's URL, with bnstat's timeouts.

Each scheme is read by its own package (aiohttp for HTTP, driven by `remote.http`
without fsspec; s3fs, gcsfs, adlfs, huggingface_hub through fsspec), installed with the
extra `bnstat[remote]` or one by one; credentials come from each package's usual
sources (environment, profiles, `HF_TOKEN`), never from bnstat. `require` says which
package is missing before anything is read.
"""

from __future__ import annotations

import importlib
from typing import Any

from bnstat.errors import MissingDependencyError
from bnstat.remote.url import RemoteOptions

PACKAGES = {"http": ("aiohttp",), "https": ("aiohttp",), "s3": ("fsspec", "s3fs"),
            "gs": ("fsspec", "gcsfs"), "az": ("fsspec", "adlfs"),
            "hf": ("fsspec", "huggingface_hub")}  # fmt: skip


def require(scheme: str) -> None:
    """A `MissingDependencyError` naming `bnstat[remote]` when the scheme cannot be read."""
    for package in PACKAGES[scheme]:
        try:
            importlib.import_module(package)
        except ImportError:
            raise MissingDependencyError(package, "remote", f"reading {scheme}:// URLs") from None


def filesystem(scheme: str, options: RemoteOptions) -> Any:
    """The filesystem that reads `scheme` URLs, its requests bounded by `options`."""
    require(scheme)
    import fsspec

    return fsspec.filesystem(scheme, **_settings(scheme, options.timeout))


def _settings(scheme: str, timeout: float) -> dict[str, Any]:
    """Each package's own names for a per-request timeout (and its retries)."""
    if scheme == "s3":
        retries = {"max_attempts": 4, "mode": "standard"}
        config = {"connect_timeout": timeout, "read_timeout": timeout, "retries": retries}
        return {"config_kwargs": config}
    if scheme == "gs":
        return {"requests_timeout": timeout}
    if scheme == "az":
        return {"connection_timeout": timeout, "read_timeout": timeout}
    from huggingface_hub import constants  # hf: read from the module at every request

    constants.HF_HUB_DOWNLOAD_TIMEOUT = constants.HF_HUB_ETAG_TIMEOUT = timeout  # type: ignore[assignment]
    return {}
