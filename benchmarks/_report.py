"""What every benchmark prints: the machine it ran on, aligned tables, how bnstat is run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path


def bnstat_entry() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m bnstat``."""
    script = Path(sys.executable).parent / "bnstat"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bnstat"]


def machine_summary() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    mem_kib = _proc_field("/proc/meminfo", "MemTotal").removesuffix("kB")
    memory = f", {int(mem_kib) / 1024**2:.0f} GiB RAM" if mem_kib else ""
    packages = ("torch", "safetensors", "numpy", "bnstat")
    versions = ", ".join(f"{name} {_version(name)}" for name in packages)
    return (
        f"machine: {cpus} CPUs ({model}){memory}, {platform.system()} {platform.release()}\n"
        f"python {platform.python_version()}, {versions}\n"
        f"bnstat runs as: {' '.join(bnstat_entry())}"
    )


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _proc_field(path: str, name: str) -> str:
    """The value of ``name: value`` in a /proc file, or an empty string."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ""
    values = (line.split(":", 1)[1].strip() for line in lines if line.startswith(name))
    return next(values, "")


def print_table(rows: list[list[str]], left: int = 3) -> None:
    """Aligned columns under a ruled header; the first `left` are text, the rest numbers."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * w for w in widths))
