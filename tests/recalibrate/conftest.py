"""Fixtures for the recalibration tests."""

from __future__ import annotations

import pytest
import torch
from digits_support import digits_tensor


@pytest.fixture(scope="session")
def digits() -> torch.Tensor:
    return digits_tensor()
