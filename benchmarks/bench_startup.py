"""Benchmark what bnstat costs before it does any work: start-up and imports.

Why: a CI gate runs `bnstat check` on every exported model, often on small files, so
start-up is most of its time. bnstat imports what a command uses when it uses it (a
format's emitter, a checkpoint format's reader, rich only for terminal output, torch
never for inspection); this script measures the result against a bare interpreter that
only imports numpy, which every inspection needs:

* `python -c pass` and `python -c "import numpy"`: the floor and the baseline;
* `bnstat --version`: the command line alone;
* `bnstat check` of a small `.safetensors` and a small `.pt` (the sample model), as a
  table and as JSON.

Each command is a fresh process, once untimed (page cache), then --repeat times; the
table gives the median and the ratio to `import numpy`. One run of each bnstat command
under `python -X importtime` then says which packages it loaded and what their imports
cost, and the targets check that `--version` loads neither numpy nor rich, that JSON
output loads no rich, and that no command loads torch.

Usage, from the repository root:

    python benchmarks/bench_startup.py [--repeat 20]

Targets are reported as PASS/FAIL; the exit status does not depend on them.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from _measure import Measurement, measure, run_once
from _report import bnstat_entry, machine_summary, print_table

REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL_SAFETENSORS = "sample_checkpoints/healthy.safetensors"
SMALL_PT = "sample_checkpoints/healthy.pt"
BASELINE = "import numpy"
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    BASELINE: [sys.executable, "-c", "import numpy"],
    "bnstat --version": ["--version"],
    "check .safetensors (table)": ["check", SMALL_SAFETENSORS],
    "check .safetensors --format json": ["check", SMALL_SAFETENSORS, "--format", "json"],
    "check .pt (table)": ["check", SMALL_PT],
}


def command(args: list[str]) -> list[str]:
    return args if args[0] == sys.executable else [*bnstat_entry(), *args]


def imported(args: list[str]) -> dict[str, float]:
    """Milliseconds of import time per top-level package, from `python -X importtime`."""
    entry = bnstat_entry()
    python_args = entry[1:] if entry[0] == sys.executable else entry
    run = run_once([sys.executable, "-X", "importtime", *python_args, *args], cwd=REPO_ROOT)
    packages: dict[str, float] = defaultdict(float)
    for line in run.stderr.decode(errors="replace").splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            own, _, name = line.removeprefix("import time:").split("|")
            packages[name.strip().split(".")[0]] += int(own) / 1000
    return dict(packages)


def timing_rows(results: dict[str, Measurement]) -> list[list[str]]:
    base = results[BASELINE]
    rows = [["command", "median ms", "best ms", "vs import numpy"]]
    for label, m in results.items():
        if not m.ok:
            rows.append([label, "error", "", ""])
            continue
        ratio = f"{m.median_s / base.median_s:.2f}x" if base.ok else ""
        rows.append([label, f"{m.median_s * 1000:.0f}", f"{m.best_s * 1000:.0f}", ratio])
    return rows


def import_rows(imports: dict[str, dict[str, float]]) -> list[list[str]]:
    rows = [["command", "imports ms", "largest packages (ms of import time)"]]
    for label, packages in imports.items():
        top = sorted(packages.items(), key=lambda item: -item[1])[:6]
        listed = ", ".join(f"{name} {ms:.0f}" for name, ms in top)
        rows.append([label, f"{sum(packages.values()):.0f}", listed])
    return rows


def targets(imports: dict[str, dict[str, float]]) -> list[tuple[bool, str]]:
    version = imports["bnstat --version"]
    json_check = imports["check .safetensors --format json"]
    found = [
        (
            "numpy" not in version and "rich" not in version,
            "--version loads neither numpy nor rich",
        ),
        ("rich" not in json_check, "check --format json loads no rich"),
    ]
    for label, packages in imports.items():
        found.append(("torch" not in packages, f"{label}: torch not imported"))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per command")
    args = parser.parse_args(argv)
    print(machine_summary(), flush=True)
    results = {
        label: measure(command(cmd), repeat=args.repeat, cwd=REPO_ROOT, ok_returncodes=(0,))
        for label, cmd in COMMANDS.items()
    }
    bnstat_commands = {label: cmd for label, cmd in COMMANDS.items() if cmd[0] != sys.executable}
    imports = {label: imported(cmd) for label, cmd in bnstat_commands.items()}
    print(f"\nwall clock of whole processes, median of {args.repeat} runs after one warm-up")
    print_table(timing_rows(results), left=1)
    print("\nimports, one run under python -X importtime (which slows them down)")
    print_table(import_rows(imports), left=1)
    print("\ntargets:")
    for passed, line in targets(imports):
        print(f"  {'PASS' if passed else 'FAIL'}  {line}")
    for label, m in results.items():
        if not m.ok:
            print(f"\nerror from {label} (exit {m.warmup.returncode}):\n{m.error}")


if __name__ == "__main__":
    main()
