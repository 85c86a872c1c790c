"""The `browser` marker and the headless Chromium the HTML report's browser tests drive."""

from __future__ import annotations

import shutil

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives a headless Chromium (skipped when `chromium` is not installed)"
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's `chromium`; the test is skipped without it."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    return path
