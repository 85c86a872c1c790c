"""Acceptance: the real CLI over folders of checkpoints whose names say what they must
produce (see README.md beside this file), with torch and without; and the findings table
of sample_checkpoints/README.md checked against the same folders."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from zoo import REPO, SAMPLES

from bnstat.report.severity import Severity
from bnstat.rules import RULES_BY_CODE

HERE = Path(__file__).resolve().parent
ON_DATA = HERE / "on-data"
STATIC = sorted(p for p in HERE.iterdir() if p.is_dir() and p != ON_DATA and p.name[0] != "_")
DATA_FOLDERS = sorted(p for p in ON_DATA.iterdir() if p.is_dir())
DATA_ARGS = ["--data", "sample_checkpoints/digits", "--workers", "0",
             "--arch", "sample_checkpoints/digits_model.py:build_model"]  # fmt: skip
EXTRAS = {"onnx": "onnx", "torch": "torch"}  # module -> extra: the cases read ONNX, run models
Found = set[tuple[str, str | None]]  # (rule, layer or source:layer)


def expected(folder: Path) -> set[str] | None:
    """The rules every file of the folder must produce (None: it must be unreadable)."""
    if folder.name == "unreadable":
        return None
    return set() if folder.name == "clean" else set(folder.name.split("+"))


def expected_exit(rules: set[str] | None) -> int:
    if rules is None:
        return 2
    return 1 if any(RULES_BY_CODE[code].severity is Severity.ERROR for code in rules) else 0


def run_cli(*args: str, block_torch: bool = False) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter, from the repository's root; stderr's last line says
    whether torch got imported."""
    prelude = "import sys\n" + ("sys.modules['torch'] = None\n" if block_torch else "")
    code = prelude + (
        "from bnstat.cli import main\n"
        f"sys.argv = ['bnstat', *{list(args)!r}]\n"
        "try:\n    main()\n"
        "finally:\n"
        "    imported = sys.modules.get('torch') is not None\n"
        "    print('torch imported:', imported, file=sys.stderr)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)


def observed(report: dict) -> dict[Path, Found | None]:
    """Per file: its findings (a file with several models names the model), or None when
    it could not be read."""
    entries: dict[Path, list[dict]] = {}
    for entry in report["checkpoints"]:
        entries.setdefault(REPO / entry["path"], []).append(entry)
    found: dict[Path, Found | None] = {}
    for path, models in entries.items():
        several = len(models) > 1
        found[path] = None if models[0]["error"] is not None else {
            (f["rule"], None if f["layer"] is None
             else f"{m['source']}:{f['layer']}" if several else f["layer"])
            for m in models for f in m["findings"]
        }  # fmt: skip
    return found


def rules_of(found: Found | None) -> set[str] | None:
    return None if found is None else {rule for rule, _ in found}


def _relative(folder: Path) -> str:
    return str(folder.relative_to(REPO))


@pytest.fixture(scope="module", params=[False, True], ids=["with-torch", "without-torch"])
def static_run(request: pytest.FixtureRequest) -> dict[Path, Found | None]:
    result = run_cli("check", *map(_relative, STATIC), "--format", "json",
                     block_torch=request.param)  # fmt: skip
    assert result.stderr.splitlines()[-1] == "torch imported: False"
    assert result.returncode == 2, result.stderr  # the unreadable folder is part of the run
    return observed(json.loads(result.stdout))


@pytest.mark.parametrize("folder", STATIC, ids=lambda folder: folder.name)
def test_every_file_produces_exactly_what_its_folder_says(static_run, folder):
    files = {
        path: found for path, found in static_run.items() if path.parent.is_relative_to(folder)
    }
    assert files, f"nothing read in {folder}"
    assert {path.name: rules_of(found) for path, found in files.items()} == {
        path.name: expected(folder) for path in files
    }


def test_every_rule_has_a_folder_of_its_own():
    """A folder of files that produce that rule alone (folders of several rules may add)."""
    alone = {
        folder.name for folder in [*STATIC, *DATA_FOLDERS] if re.fullmatch(r"BN\d+", folder.name)
    }
    assert alone == set(RULES_BY_CODE)


@pytest.mark.parametrize("module", list(EXTRAS))
def test_the_extras_the_cases_need_are_installed(module):
    """Without them the ONNX cases, or the runs on data, would fail: say why, loudly."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"the acceptance cases need {module}: pip install -e '.[{EXTRAS[module]},dev]'")


def test_the_cases_on_data_produce_what_their_folders_say():
    result = run_cli("check", *map(_relative, DATA_FOLDERS), *DATA_ARGS, "--format", "json")
    assert result.returncode == 0, result.stderr
    found = observed(json.loads(result.stdout))
    for folder in DATA_FOLDERS:
        files = {p.name: rules_of(f) for p, f in found.items() if p.parent == folder}
        assert files and files == dict.fromkeys(files, expected(folder)), folder.name


def test_without_torch_the_cases_on_data_fail_naming_the_extra():
    result = run_cli("check", *map(_relative, DATA_FOLDERS), *DATA_ARGS, block_torch=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[0] == (
        "bnstat: error: --data needs torch, which is not installed: pip install 'bnstat[torch]'"
    )


# ------------------------------------------------------------------ the samples' README

ROW = re.compile(r"^\| `(?P<file>[^`]+)` \| .*? \| (?P<findings>[^|]*) \| (?P<exit>\d) \|$")
ITEM = re.compile(r"(BN\d{3})(?: at `([^`]+)`)?")


def readme_rows() -> dict[str, tuple[Found | None, int]]:
    """file -> (the (rule, location) pairs it lists, or None for an error; check's exit)."""
    rows = {}
    for line in (SAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            cell = match["findings"].strip()
            pairs = None if cell == "error" else {(c, w or None) for c, w in ITEM.findall(cell)}
            rows[match["file"]] = (pairs, int(match["exit"]))
    return rows


def linked_samples() -> dict[str, Path]:
    """Each sample a static folder links to (by its name in sample_checkpoints/) -> the
    folder; shards count through their index."""
    links = {}
    for folder in STATIC:
        for link in (path for path in folder.rglob("*") if path.is_symlink()):
            name = str(link.resolve().relative_to(SAMPLES))
            if not re.search(r"-0000\d-of-", name):
                assert name not in links, f"{name} is in {links.get(name)} and {folder}"
                links[name] = folder
    return links


def test_the_readme_lists_every_case_and_no_other_sample():
    assert set(readme_rows()) == set(linked_samples())


def test_the_readme_says_what_the_folders_say():
    links = linked_samples()
    for name, (pairs, exit_code) in readme_rows().items():
        rules = expected(links[name])
        assert rules_of(pairs) == rules, name
        assert exit_code == expected_exit(rules), name


def test_the_readme_names_the_layers_the_cli_reports(static_run):
    by_sample = {
        str(path.resolve().relative_to(SAMPLES)): found for path, found in static_run.items()
    }
    assert {name: by_sample[name] for name in readme_rows()} == {
        name: pairs for name, (pairs, _) in readme_rows().items()
    }


@pytest.mark.parametrize("name", sorted(linked_samples()))
def test_the_exit_code_of_each_case(cli, name):
    assert cli("check", SAMPLES / name).exit_code == expected_exit(expected(linked_samples()[name]))


def test_a_scan_of_the_samples_folder_finds_every_case():
    result = run_cli("check", "sample_checkpoints", "--format", "json")
    assert result.returncode == 2
    found = observed(json.loads(result.stdout))
    links = linked_samples()
    got = {str(p.relative_to(SAMPLES)): rules_of(f) for p, f in found.items()}
    assert got == {name: expected(folder) for name, folder in links.items()}
