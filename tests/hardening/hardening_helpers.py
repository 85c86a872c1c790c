"""Shared helpers of the hardening tests: the hostile corpus, measured processes, snapshots.

`measure()` runs bnstat as a grandchild of a small helper process, so that `os.wait4`'s
peak RSS is the command's own: Linux carries the high-water RSS of a process across
`exec`, and the pytest process (torch imported) is far bigger than bnstat should ever be.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HOSTILE = REPO / "tests" / "data" / "hostile"
SAMPLES = REPO / "sample_checkpoints"
MEMORY_CEILING = 4 * 2**30  # address space a measured command may map: a safety net only

_HELPER = r"""
import json, os, resource, signal, sys, time
out, err, ceiling, timeout, *argv = sys.argv[1:]
start = time.monotonic()
pid = os.fork()
if pid == 0:
    for path, fd in ((out, 1), (err, 2)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    resource.setrlimit(resource.RLIMIT_AS, (int(ceiling), int(ceiling)))
    os.execv(argv[0], argv)
killed = []
def kill(*_):
    killed.append(True)
    os.kill(pid, signal.SIGKILL)
signal.signal(signal.SIGALRM, kill)
signal.setitimer(signal.ITIMER_REAL, float(timeout))
_, status, usage = os.wait4(pid, 0)
signal.setitimer(signal.ITIMER_REAL, 0)
print(json.dumps({"status": status, "maxrss_kib": usage.ru_maxrss,
                  "seconds": time.monotonic() - start, "killed": bool(killed)}))
"""


@dataclass(frozen=True)
class Measured:
    """A finished bnstat process: exit code, output, peak RSS and wall time."""

    exit_code: int
    stdout: str
    stderr: str
    peak_mib: float
    seconds: float
    timed_out: bool

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("bnstat: error:")]


def measure(args: list[str | os.PathLike[str]], cwd: Path, timeout: float = 60) -> Measured:
    """Run `python -m bnstat ARGS` in `cwd`; never longer than `timeout` seconds."""
    out, err = cwd / ".measure-stdout", cwd / ".measure-stderr"
    argv = [sys.executable, "-m", "bnstat", *map(str, args)]
    helper = [sys.executable, "-c", _HELPER, out, err, str(MEMORY_CEILING), str(timeout), *argv]
    done = subprocess.run(helper, cwd=cwd, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    status = report["status"]
    result = Measured(
        exit_code=os.waitstatus_to_exitcode(status),
        stdout=out.read_text(errors="replace"),
        stderr=err.read_text(errors="replace"),
        peak_mib=report["maxrss_kib"] / 1024,
        seconds=report["seconds"],
        timed_out=report["killed"],
    )
    out.unlink()
    err.unlink()
    return result


def load_make_hostile() -> ModuleType:
    """The corpus generator, imported from its file (tests folders are not packages)."""
    spec = importlib.util.spec_from_file_location("make_hostile", HOSTILE / "make_hostile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_hostile", module)
    spec.loader.exec_module(module)
    return module


def manifest() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((HOSTILE / "manifest.json").read_text())
    return entries


def snapshot(path: Path) -> tuple[str, int]:
    """A file's content hash and modification time, to prove a command left it alone."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}
