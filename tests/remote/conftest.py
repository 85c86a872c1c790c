"""Fixtures for reading checkpoints over real protocols on the loopback interface: an HTTP
server that serves the sample checkpoints (and whatever a test adds), reset per test, and
the real CLI run in a process of its own, isolated from the machine's credentials."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from http_server import SAMPLE_FILES, Server
from stores import Run, isolated


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


@pytest.fixture(scope="session")
def run_bnstat(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`run(env, *args)`: `python -m bnstat ARGS` as a user runs it, in its own process (the
    scheme's package reads its settings when imported), with `env` added to `isolated`."""
    home = tmp_path_factory.mktemp("home")

    def run(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bnstat", *map(str, args)],
            capture_output=True, text=True, env=isolated(home) | env, timeout=300,
        )  # fmt: skip

    return run
