"""Fixtures for reading checkpoints over real protocols on the loopback interface: an HTTP
server that serves the sample checkpoints (and whatever a test adds), reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from http_server import SAMPLE_FILES, Server


@pytest.fixture(scope="session")
def http_server() -> Iterator[Server]:
    server = Server()
    server.files.update((path.name, path.read_bytes()) for path in SAMPLE_FILES)
    yield server
    server.close()


@pytest.fixture
def http(http_server: Server) -> Server:
    """The server, behaving well, its counts at zero."""
    http_server.reset()
    http_server.version = 0
    return http_server
