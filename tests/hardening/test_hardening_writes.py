"""The write path: a target is the old file or the complete new one, never partial.

`bnstat.atomic.atomic_output` writes a temporary file in the target's folder, fsyncs it
and renames it over the target. These tests break writes every way a CI machine can:
an exception, SIGINT, SIGTERM and SIGKILL in the middle of the write, and a full disk
(a file-size limit, RLIMIT_FSIZE, with SIGXFSZ ignored so that writes fail with EFBIG);
first through `atomic_output` in a child process, then through a real `bnstat
recalibrate`. Afterwards the target holds its old bytes (or is absent), no temporary file
is left (except after SIGKILL, which no process can clean up after), and the input
checkpoint's bytes and mtime are unchanged.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hardening_helpers import SAMPLES, files_in, snapshot

from bnstat.atomic import atomic_output
from bnstat.errors import OutputError

OLD = b"the old target\n"
TEMPORARY_SUFFIX = ".bnstat-tmp"


def _state(folder: Path, target: Path) -> tuple[bytes | None, set[str]]:
    """The target's bytes (None when absent) and the names of the other files."""
    content = target.read_bytes() if target.exists() else None
    return content, files_in(folder) - {target.name}


def _prepare(folder: Path, old: bool) -> Path:
    folder.mkdir(exist_ok=True)
    target = folder / "out.pt"
    if old:
        target.write_bytes(OLD)
    return target


@pytest.mark.parametrize("old", [True, False], ids=["old-target", "no-target"])
def test_an_exception_while_writing_leaves_the_target_alone(tmp_path: Path, old: bool) -> None:
    target = _prepare(tmp_path / "out", old)
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert _state(target.parent, target) == ((OLD if old else None), set())


def test_an_os_error_becomes_an_output_error(tmp_path: Path) -> None:
    target = _prepare(tmp_path / "out", True)
    with pytest.raises(OutputError, match="cannot write"), atomic_output(target) as temporary:
        temporary.write_bytes(b"partial")
        raise OSError(28, "No space left on device")
    assert _state(target.parent, target) == (OLD, set())


def test_a_missing_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write in"), atomic_output(tmp_path / "no" / "x"):
        pass


# A program using the library: SIGTERM reaches it as `Terminated`, after the cleanup, and
# the program ends as the CLI does, with 143. Half way through its write it says so and
# waits for the signal: however slow the machine, the signal lands mid-write.
_SLOW_WRITER = r"""
import sys, time
from pathlib import Path
from bnstat.atomic import atomic_output
from bnstat.termination import Terminated
try:
    with atomic_output(Path(sys.argv[1])) as temporary:
        with open(temporary, "wb") as handle:
            for chunk in range(8):
                handle.write(b"x" * 65536)
            handle.flush()
            print("bnstat-test: writing", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
except Terminated:
    sys.exit(143)
"""


def _start(
    argv: list[str], folder: Path, preexec: Callable[[], None] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:  # fmt: skip
    errors = folder.parent / f"{folder.name}.stderr"
    with errors.open("wb") as stderr:
        process = subprocess.Popen(
            argv, cwd=folder, stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=preexec,
            env=None if env is None else {**os.environ, **env},
        )  # fmt: skip
    return process, errors


def _wait_for(
    errors: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while text not in errors.read_text(errors="replace"):
        assert process.poll() is None, errors.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {text!r} in time"
        time.sleep(0.05)


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL}


@pytest.mark.parametrize("old", [True, False], ids=["old-target", "no-target"])
@pytest.mark.parametrize("name", list(SIGNALS))
def test_a_signal_mid_write_leaves_the_old_target(tmp_path: Path, name: str, old: bool) -> None:
    target = _prepare(tmp_path / "out", old)
    process, errors = _start([sys.executable, "-c", _SLOW_WRITER, str(target)], target.parent)
    _wait_for(errors, "bnstat-test: writing", process)
    process.send_signal(SIGNALS[name])
    status = process.wait(timeout=30)
    content, others = _state(target.parent, target)
    assert content == (OLD if old else None)
    if name == "SIGKILL":  # nothing runs after SIGKILL: at most the temporary file stays
        assert status == -signal.SIGKILL
        assert all(n.startswith(".out.pt.") and n.endswith(TEMPORARY_SUFFIX) for n in others)
    else:
        assert others == set()
        if name == "SIGTERM":
            assert status == 128 + signal.SIGTERM
            assert "Traceback" not in errors.read_text()


def _file_size_limit(limit: int) -> Callable[[], None]:
    """For a child: writes past `limit` bytes fail with EFBIG, as on a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


_FULL_DISK_WRITER = r"""
import sys
from pathlib import Path
from bnstat.atomic import atomic_output
from bnstat.errors import OutputError
try:
    with atomic_output(Path(sys.argv[1])) as temporary:
        with open(temporary, "wb") as handle:
            for _ in range(64):
                handle.write(b"x" * 65536)
except OutputError as err:
    print(f"bnstat-test: {err}", file=sys.stderr)
"""


@pytest.mark.parametrize("old", [True, False], ids=["old-target", "no-target"])
def test_a_full_disk_mid_write_is_an_output_error(tmp_path: Path, old: bool) -> None:
    target = _prepare(tmp_path / "out", old)
    argv = [sys.executable, "-c", _FULL_DISK_WRITER, str(target)]
    process, errors = _start(argv, target.parent, _file_size_limit(2**20))
    assert process.wait(timeout=60) == 0, errors.read_text()
    assert "bnstat-test: cannot write" in errors.read_text()
    assert _state(target.parent, target) == ((OLD if old else None), set())


# ------------------------------------------------------------------ real recalibrate runs


def _recalibrate_argv(checkpoint: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "bnstat", "recalibrate", str(checkpoint),
        "--arch", f"{SAMPLES / 'digits_model.py'}:build_model", "--data", str(SAMPLES / "digits"),
        "--max-samples", "16", "--no-verify", "--workers", "0", *extra,
    ]  # fmt: skip


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A private copy of the healthy sample (its mtime checked after each command)."""
    path = tmp_path / "input" / "healthy.pt"
    path.parent.mkdir()
    shutil.copy2(SAMPLES / "healthy.pt", path)
    return path


@pytest.mark.parametrize(
    ("name", "old"),
    [("SIGTERM", True), ("SIGINT", False), ("SIGKILL", True)],
    ids=["SIGTERM", "SIGINT", "SIGKILL"],
)
@pytest.mark.slow
def test_recalibrate_killed_mid_write(
    tmp_path: Path, checkpoint: Path, name: str, old: bool
) -> None:
    pytest.importorskip("torch")
    before = snapshot(checkpoint)
    target = _prepare(tmp_path / "out", old)
    argv = _recalibrate_argv(checkpoint, "--output", str(target))
    process, errors = _start(argv, target.parent, env={"BNSTAT_PAUSE_AT": "writing"})
    _wait_for(errors, "bnstat: paused at writing", process)
    process.send_signal(SIGNALS[name])
    status = process.wait(timeout=30)
    content, others = _state(target.parent, target)
    assert content == (OLD if old else None)
    assert snapshot(checkpoint) == before
    stderr = errors.read_text()
    if name == "SIGKILL":
        assert status == -signal.SIGKILL
        assert all(n.endswith(TEMPORARY_SUFFIX) for n in others)
    else:
        assert others == set()
        assert "Traceback" not in stderr
        assert status == {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 130}[name], stderr


@pytest.mark.slow
@pytest.mark.parametrize("in_place", [False, True], ids=["output", "in-place"])
def test_recalibrate_on_a_full_disk(tmp_path: Path, checkpoint: Path, in_place: bool) -> None:
    pytest.importorskip("torch")
    before = snapshot(checkpoint)
    target = checkpoint if in_place else _prepare(tmp_path / "out", True)
    old = target.read_bytes()
    extra = ["--in-place"] if in_place else ["--output", str(target)]
    process, errors = _start(
        _recalibrate_argv(checkpoint, *extra), target.parent, _file_size_limit(40_000)
    )
    assert process.wait(timeout=120) == 2
    lines = [line for line in errors.read_text().splitlines() if line.startswith("bnstat: error:")]
    assert len(lines) == 1 and "cannot write" in lines[0], errors.read_text()
    assert "Traceback" not in errors.read_text()
    assert _state(target.parent, target) == (old, set())
    assert snapshot(checkpoint) == before


@pytest.mark.slow
def test_recalibrate_killed_at_random_moments_never_leaves_a_partial_target(
    tmp_path: Path, checkpoint: Path
) -> None:
    """SIGKILL anywhere in a real run: the target is the old bytes or the complete output."""
    pytest.importorskip("torch")
    before = snapshot(checkpoint)
    reference = tmp_path / "reference.pt"
    done = subprocess.run(
        _recalibrate_argv(checkpoint, "--output", str(reference)), capture_output=True
    )
    assert done.returncode == 0, done.stderr
    complete = reference.read_bytes()
    rng = random.Random(0)
    for attempt in range(4):
        target = _prepare(tmp_path / f"out{attempt}", True)
        argv = _recalibrate_argv(checkpoint, "--output", str(target))
        process, _ = _start(argv, target.parent)
        time.sleep(rng.uniform(0.5, 3.0))
        process.kill()
        process.wait(timeout=30)
        content, others = _state(target.parent, target)
        assert content in (OLD, complete)
        assert all(n.endswith(TEMPORARY_SUFFIX) for n in others)
    assert snapshot(checkpoint) == before


def test_every_read_only_command_leaves_the_input_alone(tmp_path: Path, checkpoint: Path) -> None:
    before = snapshot(checkpoint)
    for args in (["inspect", checkpoint], ["check", checkpoint, "--format", "json"]):
        argv = [sys.executable, "-m", "bnstat", *map(str, args)]
        subprocess.run(argv, capture_output=True, cwd=tmp_path, check=False)
    assert snapshot(checkpoint) == before
    assert files_in(checkpoint.parent) == {"healthy.pt"}
