"""Time whole child processes: wall clock and peak RSS, page cache warmed first.

Benchmarks of a command-line tool have to include everything a user waits for
(interpreter start, imports, reading the file), so each measurement is a fresh
process. Peak RSS comes from ``os.wait4``, which reports the child's own
``ru_maxrss`` rather than the parent's.

Caveat: Linux carries the high-water RSS across ``exec``, and the child starts
as a (v)fork of this process, so a child's peak RSS is never below this
process's own peak (``own_peak_rss_bytes``). Keep the measuring process small:
build large inputs in another process, and do not import torch here.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_RSS_UNIT_BYTES = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux


@dataclass(frozen=True)
class Run:
    """One finished child process."""

    wall_s: float
    peak_rss_bytes: int
    returncode: int
    stdout: bytes
    stderr: bytes


@dataclass
class Measurement:
    """Timed runs of one command, after one untimed warm-up run."""

    warmup: Run
    runs: list[Run] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs)

    @property
    def best_s(self) -> float:
        return min(run.wall_s for run in self.runs)

    @property
    def median_s(self) -> float:
        return statistics.median(run.wall_s for run in self.runs)

    @property
    def peak_rss_bytes(self) -> int:
        return max(run.peak_rss_bytes for run in self.runs)

    @property
    def error(self) -> str:
        """The warm-up's stderr when the command failed, else an empty string."""
        return "" if self.ok else self.warmup.stderr.decode(errors="replace").strip()


def own_peak_rss_bytes() -> int:
    """This process's peak RSS: the floor under every peak RSS measured from it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT_BYTES


def run_once(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    capture_stdout: bool = False,
) -> Run:
    """Run ``cmd`` to completion; stdout goes to /dev/null unless captured."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out if capture_stdout else subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall_s = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Run(
            wall_s=wall_s,
            peak_rss_bytes=usage.ru_maxrss * _RSS_UNIT_BYTES,
            returncode=proc.returncode,
            stdout=out.read(),
            stderr=err.read(),
        )


def measure(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    repeat: int,
    cwd: Path | None = None,
    ok_returncodes: Sequence[int] = (0,),
) -> Measurement:
    """Warm up once (untimed), then time ``repeat`` runs; no timed runs if the warm-up fails."""
    measurement = Measurement(warmup=run_once(cmd, cwd=cwd))
    if measurement.warmup.returncode in ok_returncodes:
        measurement.runs = [run_once(cmd, cwd=cwd) for _ in range(repeat)]
    return measurement
