"""Faults of real machines, met by a real `bnstat recalibrate` and reported for what they are.

Signals at every phase of a run (start-up, a pass over the data with decoding workers
alive and activations spilled to disk, the verification, the final write before and
after its rename), each phase reached for certain through `BNSTAT_PAUSE_AT` rather than
by sleeping; leftovers of a SIGKILL found and removed by the next run, and those of a
live run left alone; an output folder that cannot be written, refused before any pass;
a full temporary folder, on a real size-limited tmpfs. After each: the exit code, what
stderr says, the target, the input, the temporary folder and the worker processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hardening_helpers import SAMPLES, files_in, snapshot
from privileges import unprivileged

from bnstat.phases import MARK, VARIABLE

pytest.importorskip("torch")

ARCH = f"{SAMPLES / 'digits_model.py'}:build_model"
OLD = b"the old target\n"
TOKEN = "BNSTAT_TEST_TOKEN"


class Run:
    """A folder for one recalibration: its input, its output folder, its own TMPDIR."""

    def __init__(self, root: Path) -> None:
        self.input = root / "input" / "healthy.pt"
        self.input.parent.mkdir(parents=True)
        shutil.copy2(SAMPLES / "healthy.pt", self.input)
        self.before = snapshot(self.input)
        self.target = root / "out" / "fixed.pt"
        self.target.parent.mkdir()
        self.target.write_bytes(OLD)
        self.tmp = root / "tmp"
        self.tmp.mkdir()
        self.token = uuid.uuid4().hex

    def argv(self, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "bnstat", "recalibrate", str(self.input), "--arch", ARCH,
            "--data", str(SAMPLES / "digits"), "--max-samples", "64", "--batch-size", "16",
            "--workers", "2", "--cache-mb", "0", "--output", str(self.target), *extra,
        ]  # fmt: skip

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "TMPDIR": str(self.tmp), TOKEN: self.token, **extra}

    def paused(self, phase: str, *extra: str) -> subprocess.Popen[str]:
        """A run stopped at `phase`, waiting for a signal."""
        process = subprocess.Popen(
            self.argv(*extra), env=self.env(**{VARIABLE: phase}), text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert process.stderr is not None
        said = []
        for line in process.stderr:  # blocks until the process says where it is
            if line.startswith(MARK):
                return process
            said.append(line)
        raise AssertionError(f"ended without reaching {phase}: {''.join(said)}")

    def finish(self, process: subprocess.Popen[str]) -> tuple[int, str]:
        assert process.stderr is not None
        rest = process.stderr.read()
        return process.wait(timeout=120), rest

    def complete(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*extra), env=self.env(), capture_output=True, text=True, timeout=300
        )

    def workers_left(self) -> list[int]:
        """Processes still running with this run's token in their environment."""
        needle = f"{TOKEN}={self.token}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


EXIT = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 130}
STOPPED = {"SIGTERM": "terminated", "SIGINT": "interrupted"}
PHASES = ["start", "sweep 1", "verify", "writing", "written"]
QUICK = {("SIGINT", "writing"), ("SIGINT", "written"), ("SIGTERM", "sweep 1")}


def _cases() -> Iterator[object]:
    for name in EXIT:
        for phase in PHASES:
            marks = [] if (name, phase) in QUICK else [pytest.mark.slow]
            yield pytest.param(name, phase, marks=marks, id=f"{name}-{phase}")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
@pytest.mark.parametrize(("name", "phase"), list(_cases()))
def test_a_signal_at_every_phase_is_reported_truly_and_leaves_nothing(
    run: Run, name: str, phase: str
) -> None:
    process = run.paused(phase)
    process.send_signal(getattr(signal, name))
    status, stderr = run.finish(process)
    assert status == EXIT[name], stderr
    assert "Traceback" not in stderr and "Warning" not in stderr
    written = phase == "written"
    state = "written, complete" if written else "not written, the input is unchanged"
    if phase in ("writing", "written"):
        assert stderr == f"bnstat: {STOPPED[name]}: {run.target} {state}\n"
    else:
        assert stderr == ("bnstat: interrupted\n" if name == "SIGINT" else "")
    content = run.target.read_bytes()
    assert (content != OLD) if written else (content == OLD)
    assert files_in(run.target.parent) == {"fixed.pt"}
    assert files_in(run.tmp) == set()  # no spill folder, no pymp-* of a worker
    assert snapshot(run.input) == run.before
    assert run.workers_left() == []


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_decoding_workers_die_with_a_killed_parent(run: Run) -> None:
    process = run.paused("sweep 1")
    workers = [pid for pid in run.workers_left() if pid != process.pid]
    assert len(workers) == 2
    for pid in workers:  # stopped, a worker cannot notice by itself that its parent died
        os.kill(pid, signal.SIGSTOP)
    process.kill()
    process.wait(timeout=60)
    deadline = time.monotonic() + 30  # the kernel kills them at once; they take a moment
    while run.workers_left() and time.monotonic() < deadline:
        time.sleep(0.01)
    left = run.workers_left()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


@pytest.mark.parametrize(
    ("phase", "left"),
    [("sweep 1", "spilled activations"), ("writing", "a temporary checkpoint")],
)
def test_the_next_run_removes_what_a_killed_run_left_and_says_so(
    run: Run, phase: str, left: str
) -> None:
    process = run.paused(phase)
    process.kill()
    process.wait(timeout=60)
    spilled = [p for p in run.tmp.iterdir() if p.name.startswith("bnstat-cache-")]
    temporary = [p for p in run.target.parent.iterdir() if p.name.endswith(".bnstat-tmp")]
    leftovers = spilled if left == "spilled activations" else temporary
    assert len(leftovers) == 1 and len(spilled + temporary) == 1
    done = run.complete("--format", "json")
    assert done.returncode == 0, done.stderr
    [note] = json.loads(done.stdout)["notes"]
    assert note.startswith(f"removed what killed runs had left: {leftovers[0]} (")
    assert files_in(run.tmp) == set() and files_in(run.target.parent) == {"fixed.pt"}
    again = run.complete("--format", "json")
    assert json.loads(again.stdout)["notes"] == []  # nothing left: nothing said


@pytest.mark.slow
def test_the_spill_folder_of_a_live_run_is_left_alone(run: Run) -> None:
    live = run.paused("sweep 1")
    try:
        [held] = [p for p in run.tmp.iterdir() if p.name.startswith("bnstat-cache-")]
        done = run.complete("--format", "json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["notes"] == []
        assert held.exists()
    finally:
        live.kill()
        live.wait(timeout=60)


# --- an output that cannot be written ---------------------------------------------------


@pytest.mark.parametrize(
    ("command", "option"),
    [("recalibrate", "--output"), ("recalibrate", "--report"), ("check", "--output")],
)
@pytest.mark.parametrize("writable", [False, True], ids=["read-only", "writable"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_pass(
    run: Run, command: str, option: str, writable: bool
) -> None:
    folder = run.target.parent.parent / "locked"
    folder.mkdir()
    folder.chmod(0o755 if writable else 0o555)
    path = folder / ("report.json" if option == "--report" else "out.pt")
    argv = run.argv(option, str(path)) if command == "recalibrate" else [
        sys.executable, "-m", "bnstat", "check", str(run.input), "--arch", ARCH,
        "--data", str(SAMPLES / "digits"), "--workers", "0", option, str(path),
    ]  # fmt: skip
    pause = "" if writable else "start"  # a run that got as far as the data would stop
    try:
        done = subprocess.run(
            argv, env=run.env(**{VARIABLE: pause}), capture_output=True, text=True,
            timeout=300, preexec_fn=unprivileged,
        )  # fmt: skip
    finally:
        folder.chmod(0o755)
    if writable:
        assert done.returncode == 0, done.stderr
        assert path.exists()
        return
    assert done.returncode == 2
    assert done.stderr == f"bnstat: error: cannot write in {folder}: Permission denied\n"
    assert files_in(folder) == set() and run.target.read_bytes() == OLD


# --- a full temporary folder ------------------------------------------------------------


def _mount_tmpfs(folder: Path, size: str) -> bool:
    """A size-limited tmpfs at `folder` (needs root, as CI has); False where impossible."""
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"size={size},mode=0777".encode()
    return libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs", 0, options) == 0


@pytest.fixture
def small_tmpdir(run: Run) -> Iterator[Path]:
    """`run.tmp` as a 4 MiB tmpfs: room for what the run plans to spill, and no more."""
    if not _mount_tmpfs(run.tmp, "4m"):
        pytest.skip("cannot mount a tmpfs here (needs root); spill_failed's words are unit-tested")
    try:
        yield run.tmp
    finally:
        ctypes.CDLL(None, use_errno=True).umount(str(run.tmp).encode())


@pytest.mark.parametrize("cache_mb", ["0", "2048"], ids=["spilling", "in-memory"])
def test_a_full_temporary_folder_is_named_with_what_to_do(
    run: Run, small_tmpdir: Path, cache_mb: str
) -> None:
    """The plan fits the folder when the run starts; something else fills it mid-run."""
    process = run.paused("sweep 1", "--cache-mb", cache_mb, "--workers", "0")
    filler = small_tmpdir / "someone-else"
    with contextlib.suppress(OSError), filler.open("wb") as handle:  # until the disk is full
        while True:
            handle.write(b"\0" * 65536)
    process.send_signal(signal.SIGUSR1)
    code, stderr = run.finish(process)
    filler.unlink()
    assert files_in(small_tmpdir) == set()
    if cache_mb == "2048":  # nothing spilled: the full folder does not matter
        assert code == 0, stderr
        return
    assert code == 2
    assert stderr == (
        f"bnstat: error: the temporary folder {small_tmpdir} is full (No space left on "
        "device) while spilling activations: keep more in memory before spilling "
        "(--cache-mb), point TMPDIR at a folder with more room, or use fewer samples "
        "(--max-samples)\n"
    )
    assert run.target.read_bytes() == OLD and snapshot(run.input) == run.before
