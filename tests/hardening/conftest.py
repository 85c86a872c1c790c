"""Fixtures of the hardening tests (helpers live in `hardening_helpers`)."""

from __future__ import annotations

from types import ModuleType

import pytest
from hardening_helpers import load_make_hostile


@pytest.fixture(scope="session")
def make_hostile() -> ModuleType:
    """The hostile corpus generator (`tests/data/hostile/make_hostile.py`)."""
    return load_make_hostile()
