"""Acceptance: the real CLI over sample_checkpoints/ does what its README promises.

The README's table lists every sample with the findings it must produce and the exit
code of `bnstat check`. The same run is repeated in a process where torch cannot be
imported, as on a CI machine that gates exported models without installing torch.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from zoo import SAMPLES

ROW = re.compile(r"^\| `(?P<file>[^`]+)` \| .*? \| (?P<findings>[^|]*) \| (?P<exit>\d) \|$")
ITEM = re.compile(r"(BN\d{3})(?: at `([^`]+)`)?")


def promised() -> dict[str, tuple[set[tuple[str, str | None]] | None, int]]:
    """file -> (expected (rule, location) pairs or None for an error, exit code)."""
    rows = {}
    for line in (SAMPLES / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            cell = match["findings"].strip()
            items = (
                None
                if cell == "error"
                else {(code, where or None) for code, where in ITEM.findall(cell)}
            )
            rows[match["file"]] = (items, int(match["exit"]))
    return rows


HAVE_ONNX = importlib.util.find_spec("onnx") is not None  # ONNX samples need bnstat[onnx]


def readable_here(name: str) -> bool:
    return HAVE_ONNX or not name.endswith(".onnx")


PROMISED = {name: row for name, row in promised().items() if readable_here(name)}


def run_cli(*args: str, block_torch: bool = False) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter; prints whether torch got imported on stderr's last line."""
    prelude = "import sys\n" + ("sys.modules['torch'] = None\n" if block_torch else "")
    code = prelude + (
        "from bnstat.cli import main\n"
        f"sys.argv = ['bnstat', *{list(args)!r}]\n"
        "try:\n    main()\n"
        "finally:\n"
        "    imported = sys.modules.get('torch') is not None\n"
        "    print('torch imported:', imported, file=sys.stderr)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=SAMPLES.parent
    )


def observed(report: dict) -> dict[str, set[tuple[str, str | None]] | None]:
    found: dict[str, set[tuple[str, str | None]] | None] = {}
    by_path: dict[str, list[dict]] = {}
    for entry in report["checkpoints"]:
        by_path.setdefault(entry["path"], []).append(entry)
    for path, entries in by_path.items():
        name = str(Path(path).relative_to("sample_checkpoints"))
        if entries[0]["error"] is not None:
            found[name] = None
            continue
        several = len(entries) > 1
        found[name] = {
            (
                f["rule"],
                None
                if f["layer"] is None
                else (f"{e['source']}:{f['layer']}" if several else f["layer"]),
            )
            for e in entries
            for f in e["findings"]
        }
    return found


def test_readme_lists_every_sample_checkpoint():
    assert len(PROMISED) >= 25
    for name in PROMISED:
        assert (SAMPLES / name).exists(), name


@pytest.mark.parametrize("block_torch", [False, True], ids=["with-torch", "without-torch"])
def test_findings_match_the_readme(block_torch):
    files = [f"sample_checkpoints/{name}" for name in PROMISED]
    result = run_cli("check", *files, "--format", "json", block_torch=block_torch)
    assert result.returncode == 2  # the unreadable samples are part of the run
    assert result.stderr.splitlines()[-1] == "torch imported: False"
    got = observed(json.loads(result.stdout))
    assert got == {name: items for name, (items, _) in PROMISED.items()}


@pytest.mark.parametrize("name", list(PROMISED))
def test_exit_code_matches_the_readme(cli, name):
    assert cli("check", SAMPLES / name).exit_code == PROMISED[name][1]


def test_directory_run_covers_every_sample():
    result = run_cli("check", "sample_checkpoints", "--format", "json")
    report = json.loads(result.stdout)
    got = {name: items for name, items in observed(report).items() if readable_here(name)}
    assert got == {name: items for name, (items, _) in PROMISED.items()}
    assert result.returncode == 2
