"""Reports, baselines and HTML pages get the permissions of any file a user writes.

They are written through a temporary file and a rename; the new file must honour the
umask (0644 under 022), not come out 0600 as a bare `tempfile.mkstemp` makes it. An
existing target keeps its own mode.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from zoo import SAMPLES

from bnstat.atomic import atomic_output


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """`os.umask` for one test; the process's umask is restored afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_reports_baselines_and_html_honour_the_umask(cli, tmp_path, umask, mask, expected):
    umask(mask)
    report, page, baseline = tmp_path / "r.json", tmp_path / "r.html", tmp_path / "b.json"
    sample = SAMPLES / "bn004_dead_channel.pt"
    assert cli("check", sample, "--format", "json", "--output", report).exit_code == 0
    assert cli("inspect", sample, "--format", "html", "--output", page).exit_code == 0
    assert cli("check", sample, "--write-baseline", baseline).exit_code == 0
    assert [mode(path) for path in (report, page, baseline)] == [expected] * 3


def test_an_existing_target_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "report.txt"
    target.write_text("old")
    target.chmod(0o600)
    with atomic_output(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new" and mode(target) == 0o600
