"""Long fuzz run of bnstat's readers: mutated checkpoints in worker processes.

    python fuzz/fuzz_readers.py --minutes 10 [--workers 2] [--seed 0] [--out fuzz/findings]

Each worker loops until the time is up: it picks a sample checkpoint, applies one to four
mutations from `mutators.py` (seeded, so every input can be rebuilt from its number),
runs the `bnstat check` library path and both renderers on it under an address-space
limit (RLIMIT_AS) and a per-input alarm, and classifies the outcome (exit code and error
message with numbers masked). An internal error (a bug), a MemoryError (the input asked
for more than the limit), a timeout or a crashed worker is a finding: its input is
saved in `--out` with the outcome, to become a test. The summary gives the number of
inputs, the distinct outcomes with their counts and every finding.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mutators

MEMORY_LIMIT = 2 * 2**30  # bytes of address space per worker
SECONDS_PER_INPUT = 20


class _Timeout(Exception):
    pass


def _expire(signum: int, frame: object) -> None:
    raise _Timeout


def _input(
    seed: int, index: int, names: list[str], seeds: dict[str, bytes]
) -> tuple[str, list[str], bytes]:
    rng = random.Random(f"{seed}:{index}")
    base = rng.choice(names)
    steps = [rng.choice([*mutators.MUTATIONS, "splice"]) for _ in range(rng.randint(1, 4))]
    return base, steps, mutators.mutate(seeds[base], rng, steps, list(seeds.values()))


def _worker(
    worker: int, workers: int, seed: int, deadline: float, out: str, queue: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGALRM, _expire)
    import numpy as np

    np.seterr(all="ignore")
    seeds = mutators.seeds()
    names = sorted(seeds)
    outcomes: collections.Counter[str] = collections.Counter()
    findings = []
    slowest = (0.0, "")
    folder = Path(tempfile.mkdtemp(prefix=f"bnstat-fuzz-{worker}-"))
    index = worker
    count = 0
    current = Path(out) / f"current-{worker}.json"
    while time.time() < deadline:
        base, steps, data = _input(seed, index, names, seeds)
        path = folder / f"input{Path(base).suffix}"
        path.write_bytes(data)
        current.write_text(
            json.dumps({"seed": seed, "index": index, "base": base, "mutations": steps})
        )
        start = time.perf_counter()
        try:
            signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_INPUT)
            outcome = mutators.run_one(path)
            key, bug = outcome.key, outcome.bug
        except _Timeout:
            key, bug = "timeout", True
        except MemoryError:
            key, bug = "MemoryError escaped", True
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - start
        slowest = max(slowest, (elapsed, f"#{index} {base} {steps}"))
        outcomes[key] += 1
        if bug or "MemoryError" in key:
            name = f"finding-{seed}-{index}{Path(base).suffix}"
            (Path(out) / name).write_bytes(data)
            findings.append({"input": name, "base": base, "mutations": steps, "outcome": key})
        count += 1
        index += workers
    current.unlink(missing_ok=True)
    shutil.rmtree(folder)
    queue.put(
        {"inputs": count, "outcomes": dict(outcomes), "findings": findings, "slowest": slowest}
    )


def _read_json(path: Path) -> object:
    return json.loads(path.read_text()) if path.exists() else None


def rebuild(seed: int, index: int) -> bytes:
    """The bytes of input `index` of a run with `seed` (to reproduce a finding)."""
    seeds = mutators.seeds()
    return _input(seed, index, sorted(seeds), seeds)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 0))
    parser.add_argument("--seed", type=int, default=0)
    default_out = Path(tempfile.gettempdir()) / "bnstat-fuzz-findings"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + 60 * args.minutes
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    processes = [
        multiprocessing.Process(
            target=_worker, args=(w, args.workers, args.seed, deadline, str(args.out), queue)
        )
        for w in range(args.workers)
    ]
    started = time.time()
    for process in processes:
        process.start()
    results = []
    while len(results) < len(processes):
        try:
            results.append(queue.get(timeout=5))
        except Exception:  # queue.Empty: a worker may have died without reporting
            if all(not p.is_alive() for p in processes) and queue.empty():
                break
    for process in processes:
        process.join()
    crashed = [
        {"exit": p.exitcode, "input": _read_json(args.out / f"current-{w}.json")}
        for w, p in enumerate(processes)
        if p.exitcode != 0
    ]
    outcomes: collections.Counter[str] = collections.Counter()
    for result in results:
        outcomes.update(result["outcomes"])
    inputs = sum(r["inputs"] for r in results)
    findings = [f for r in results for f in r["findings"]]
    summary = {
        "seconds": round(time.time() - started),
        "workers": args.workers,
        "seed": args.seed,
        "inputs": inputs,
        "distinct_outcomes": len(outcomes),
        "outcomes": dict(outcomes.most_common()),
        "findings": findings,
        "crashed_workers": crashed,
        "slowest": max((r["slowest"] for r in results), default=(0.0, "")),
    }
    print(f"{inputs} inputs in {summary['seconds']} s, {len(outcomes)} distinct outcomes, "
          f"{len(findings)} findings, {len(crashed)} crashed workers")  # fmt: skip
    for key, number in outcomes.most_common():
        print(f"{number:8d}  {key}")
    for finding in findings:
        print("FINDING", json.dumps(finding))
    for crash in crashed:
        print("CRASHED WORKER", json.dumps(crash))
    print(f"slowest input: {summary['slowest'][0]:.2f} s ({summary['slowest'][1]})")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    sys.exit(1 if findings or crashed else 0)


if __name__ == "__main__":
    main()
