"""Benchmark `bnstat inspect` of a URL against the same file on disk and a full download.

Why: PRODUCT.md (Where checkpoints live) promises that a big checkpoint on a server costs
a few requests and a few hundred KB. This script serves the 2 GiB `.pt` and
`.safetensors` of the inspect benchmark (ResNet-50's 53 BatchNorm layers with 64 MiB
fillers between them; built by `bench_inspect.py`'s code, or reused from `--keep DIR`)
over HTTP on 127.0.0.1 with the tests' Range server, and measures per file, as whole
processes (median of --repeat after a warm-up):

* `bnstat inspect FILE --format json` on the local file;
* `bnstat inspect URL --format json`: wall time, requests and bytes (from the server's
  own counts, checked against the report's `requests` and `fetched_bytes`);
* the same with --latency-ms of delay before every answer (a round trip to a distant
  server; requests in flight together overlap);
* a full download of the file (`curl -o /dev/null`, else `fsspec.get`), what CI does
  without bnstat.

The machine's load average is printed before and after: other jobs slow every row.

Targets (PASS/FAIL): at most 0.1% of the bytes, at most one request per BatchNorm layer
plus 8, and within 2x the local time without latency. Usage, from the repository root:

    python benchmarks/bench_remote.py [--size-gib 2] [--repeat 3] [--latency-ms 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _measure import run_once
from _report import bnstat_entry, machine_summary, print_table
from bench_inspect import RESNET50_BN_LAYERS, write_checkpoints_in_child

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "remote"))
from http_server import Server  # noqa: E402  (the tests' Range server)


def _inspect(target: str, repeat: int) -> tuple[float, dict]:
    """Median wall seconds of `bnstat inspect TARGET --format json`, and its report."""
    cmd = [*bnstat_entry(), "inspect", target, "--format", "json"]
    warm = run_once(cmd, capture_stdout=True)
    if warm.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed: {warm.stderr.decode()[-500:]}")
    times = [run_once(cmd).wall_s for _ in range(repeat)]
    return statistics.median(times), json.loads(warm.stdout)["checkpoints"][0]


def _download(url: str, repeat: int) -> float:
    """Median wall seconds of fetching the whole file and throwing it away."""
    if shutil.which("curl"):
        cmd = ["curl", "-sf", "-o", "/dev/null", url]
    else:
        script = "import fsspec, sys; fsspec.filesystem('http').get(sys.argv[1], '/dev/null')"
        cmd = [sys.executable, "-c", script, url]
    return statistics.median(run_once(cmd).wall_s for _ in range(repeat))


def _rows(server: Server, folder: Path, stem: str, args: argparse.Namespace) -> list[list[str]]:
    rows = []
    for suffix in (".pt", ".safetensors"):
        path = folder / f"{stem}{suffix}"
        server.files[path.name] = path
        url = server.url(path.name)
        size = path.stat().st_size
        local, _ = _inspect(str(path), args.repeat)
        download = _download(url, args.repeat)
        for latency in (0.0, args.latency_ms / 1000):
            server.reset()
            server.behaviour.latency = latency
            wall, entry = _inspect(url, args.repeat)
            runs = args.repeat + 1
            requests, sent = server.stats.requests // runs, server.stats.sent // runs
            assert (requests, sent) == (entry["requests"], entry["fetched_bytes"])
            how = "bnstat URL" + (f" +{args.latency_ms:g} ms" if latency else "")
            ratios = [f"{wall / local:.2f}x", f"{wall / download:.2f}x"]
            cost = [str(requests), f"{sent:,}", f"{sent / size:.4%}"]
            rows.append([path.name, how, f"{wall:.3f}", *cost, *ratios])
        rows.append([path.name, "bnstat file", f"{local:.3f}", "-", "-", "-", "1.00x", "-"])
        whole = ["1", f"{size:,}", "100%", "-", "1.00x"]
        rows.append([path.name, "full download", f"{download:.3f}", *whole])
    return rows


def _targets(rows: list[list[str]]) -> list[str]:
    lines = []
    for row in rows:
        if row[1] == "bnstat URL":
            fraction = float(row[5].rstrip("%")) / 100
            ok = fraction <= 0.001 and int(row[3]) <= RESNET50_BN_LAYERS + 8
            ok = ok and float(row[6].rstrip("x")) <= 2.0
            limit = RESNET50_BN_LAYERS + 8
            lines.append(
                f"{'PASS' if ok else 'FAIL'} {row[0]}: {row[5]} of the bytes (<= 0.1%), "
                f"{row[3]} requests (<= {limit}), {row[6]} the local time (<= 2x)"
            )
    return lines


def _load() -> str:
    """The machine's load: on a shared machine, what the times were measured under."""
    return "load average (1, 5, 15 min): " + ", ".join(f"{n:.2f}" for n in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--keep", type=Path, help="build the checkpoints here and keep them")
    args = parser.parse_args(argv)
    print(machine_summary())
    print(_load())
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bnstat-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_checkpoints_in_child(folder, args.size_gib, 100, ())
    print(f"checkpoints ready in {time.perf_counter() - start:.0f} s: {folder}")
    server = Server()
    try:
        rows = _rows(server, folder, f"resnet50-{args.size_gib:g}gib", args)
    finally:
        server.close()
        if args.keep is None:
            shutil.rmtree(folder)
    header = ["file", "how", "wall s", "requests", "bytes", "of file", "vs local", "vs download"]
    print_table([header, *rows], left=2)
    print("\n".join(_targets(rows)))
    print(_load())


if __name__ == "__main__":
    main()
