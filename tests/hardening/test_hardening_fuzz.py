"""Property: a mutated checkpoint gives a report or a clean error, never a crash or a hang.

Hypothesis picks a sample checkpoint and a short list of mutations from `fuzz/mutators.py`
(truncate, flip bytes, overwrite with boundary values, insert, delete, duplicate, splice
from another file, rewrite a pickle inside its archive, mutate zip directory fields, a
safetensors header field, an ONNX protobuf field, a `.pt2` JSON field, a line of
TorchScript code or a plain pickle and its nested torch streams). The file then goes
through what `bnstat check` runs, with the JSON and table renderers; the outcome must be
exit 0/1 (a report) or 2 with an expected error, never an unexpected exception, and
within a time limit. CI runs a
bounded, derandomized number of examples (BNSTAT_FUZZ_EXAMPLES overrides it) with the
slow tests; the long run is `fuzz/fuzz_readers.py`.
"""

from __future__ import annotations

import io
import os
import pickletools
import random
import signal
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hardening_helpers import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnstat.errors import CheckpointError
from bnstat.readers.pickle_scan import PickleBudget, PickleScanner

sys.path.insert(0, str(REPO / "fuzz"))
import mutators

EXAMPLES = int(os.environ.get("BNSTAT_FUZZ_EXAMPLES", "250"))
SECONDS_PER_INPUT = 20
SEEDS = mutators.seeds()
OTHERS = list(SEEDS.values())


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"an input took over {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    names=st.lists(st.sampled_from([*mutators.MUTATIONS, "splice"]), min_size=1, max_size=4),
    rng_seed=st.integers(0, 2**32 - 1),
)
def test_mutated_checkpoint_gives_a_report_or_a_clean_error(
    seed: str, names: list[str], rng_seed: int
) -> None:
    data = mutators.mutate(SEEDS[seed], random.Random(rng_seed), names, OTHERS)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"mutated{Path(seed).suffix}"
        path.write_bytes(data)
        with _time_limit(SECONDS_PER_INPUT):
            outcome = mutators.run_one(path)
    assert outcome.exit_code in (0, 1, 2)
    assert not outcome.bug, outcome.key


def _pickles() -> list[bytes]:
    """Every pickle member of the zip seeds, and the legacy seed's bytes from its first."""
    found = []
    for data in SEEDS.values():
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                found += [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
        except zipfile.BadZipFile:
            if data[:1] == b"\x80":
                found.append(data)
    return found


PICKLES = _pickles()


def _scan(data: bytes, naming: bool) -> tuple[object, ...]:
    scanner = PickleScanner(PickleBudget(), naming=naming)
    try:
        end = scanner.scan(data)
    except CheckpointError as err:
        end = str(err)
    return end, scanner.ops, scanner.budget.used, scanner.pos


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(
    index=st.integers(0, len(PICKLES) - 1),
    names=st.lists(st.sampled_from(["pickle_opcode", *mutators.BYTE_MUTATIONS]), max_size=3),
    rng_seed=st.integers(0, 2**32 - 1),
)
def test_the_scanner_fast_path_agrees_with_its_general_path(
    index: int, names: list[str], rng_seed: int
) -> None:
    """The scanner's fast path (common opcodes) must charge exactly what the general
    per-opcode path (used when naming globals) charges, on any bytes."""
    rng = random.Random(rng_seed)
    data = PICKLES[index]
    for name in names:
        mutation = mutators.pickle_opcode if name == "pickle_opcode" else mutators.MUTATIONS[name]
        data = mutation(data, rng)
    assert _scan(data, naming=False) == _scan(data, naming=True)


def test_a_get_with_an_invalid_index_is_scanned_alike_when_naming() -> None:
    """Found by the property test above: GET's decimal index line is not a number."""
    data = b"\x80\x02g_var\n."
    assert _scan(data, naming=False) == _scan(data, naming=True) == (len(data), 3, 8, len(data))


def test_the_scanner_finds_where_each_sample_pickle_ends() -> None:
    for data in PICKLES:
        stream = io.BytesIO(data)
        pickletools.dis(stream, out=io.StringIO())  # reads exactly one pickle
        assert PickleScanner().scan(data) == stream.tell()
