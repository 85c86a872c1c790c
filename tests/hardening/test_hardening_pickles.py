"""Malicious pickles: no payload ever runs, and bnstat names what it refused.

The corpus in `tests/data/hostile/` (written by its `make_hostile.py`) holds torch zip and
legacy checkpoints whose pickles try to run code by every classic route; each payload
would create a marker file in the working directory. Every file goes through `inspect`
and `check`, representative ones through `recalibrate` (built around the healthy sample's
state dict, so the refusal happens in the reader or the model building), and no marker
may appear. A positive control proves that the same bytes do create their marker when
loaded the usual way, so the corpus cannot rot into harmless files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hardening_helpers import HOSTILE, SAMPLES, files_in, manifest, snapshot

MANIFEST = manifest()
HOSTILE_ENTRIES = [entry for entry in MANIFEST if entry["control"]]
RECALIBRATED_ROUTES = (
    "os.system",
    "subprocess.run",
    "builtins.eval",
    "getattr-chain",
    "getattr-called",
    "compile+FunctionType",
    "setstate-gadget",
    "STACK_GLOBAL",
    "nested-pickle",
)


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["file"].removesuffix(".pt") for entry in entries]


def _slug(route: str) -> str:
    return route.replace(".", "_").replace("+", "_")


def test_the_corpus_is_what_its_generator_writes(make_hostile: ModuleType, tmp_path: Path) -> None:
    make_hostile.main(tmp_path)
    written = files_in(tmp_path)
    committed = files_in(HOSTILE) - {"make_hostile.py", "__pycache__"}
    assert written == committed, "rerun tests/data/hostile/make_hostile.py"
    for name in written:
        assert (tmp_path / name).read_bytes() == (HOSTILE / name).read_bytes(), name
    assert sum((HOSTILE / name).stat().st_size for name in committed) < 2**20


_CONTROL = r"""
import json, os, pickle, sys, warnings, zipfile
from pathlib import Path
import torch
warnings.simplefilter("ignore")
folder, work = Path(sys.argv[1]), Path(sys.argv[2])
live = {}
for entry in json.loads(sys.stdin.read()):
    cwd = work / entry["file"]
    cwd.mkdir(parents=True)
    os.chdir(cwd)
    path, control = folder / entry["file"], entry["control"]
    try:
        if control == "torch.load":
            torch.load(path, weights_only=False)
        elif control.startswith("member:"):
            name, offset = control.removeprefix("member:").rsplit("@", 1)
            with zipfile.ZipFile(path) as archive:
                pickle.loads(archive.read(name)[int(offset):])
        else:
            pickle.loads(path.read_bytes()[int(control.removeprefix("offset:")):])
    except Exception:
        pass  # many payloads leave a value the loader then chokes on: the marker is made
    live[entry["file"]] = (cwd / entry["marker"]).exists()
print(json.dumps(live))
"""


def _controls(folder: Path, entries: list[dict[str, Any]], work: Path) -> dict[str, bool]:
    """Load every file the usual way, each in its own folder: which payloads ran."""
    done = subprocess.run(
        [sys.executable, "-c", _CONTROL, str(folder), str(work)],
        input=json.dumps(entries),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    live: dict[str, bool] = json.loads(done.stdout.splitlines()[-1])
    return live


def test_every_payload_is_live(tmp_path: Path) -> None:
    """Positive control: torch.load(weights_only=False) or pickle.loads runs each payload."""
    pytest.importorskip("torch")
    live = _controls(HOSTILE, HOSTILE_ENTRIES, tmp_path)
    assert live == {entry["file"]: True for entry in HOSTILE_ENTRIES}


def _check_outcome(result: Any, entry: dict[str, Any]) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    for name in entry["names"]:
        assert name in output, f"{name} not named: {output[-2000:]}"
    if entry["expect"] == "error":
        assert result.exit_code == 2, output
        errors = [line for line in result.stderr.splitlines() if line.startswith("bnstat: error:")]
        assert len(errors) == 1, result.stderr
        assert all(name in errors[0] for name in entry["names"]), errors[0]
    else:
        assert result.exit_code == (1 if entry["control"] else 0), output


@pytest.mark.parametrize("command", ["inspect", "check"])
@pytest.mark.parametrize("entry", MANIFEST, ids=_ids(MANIFEST))
def test_reading_never_runs_the_payload(
    cli: Any, entry: dict[str, Any], command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = HOSTILE / entry["file"]
    before = snapshot(path)
    args = ("--format", "json") if command == "check" else ()
    result = cli(command, path, *args)
    assert files_in(tmp_path) == set(), "a payload ran"
    assert snapshot(path) == before
    _check_outcome(result, entry)
    if command == "check" and entry["expect"] == "report":
        (checkpoint,) = json.loads(result.stdout)["checkpoints"]
        rule, severity = ("BN011", "error") if entry["control"] else ("BN012", "info")
        (finding,) = [f for f in checkpoint["findings"] if f["rule"] == rule]
        assert finding["severity"] == severity
        assert all(name in finding["message"] for name in entry["names"])


def test_unknown_harmless_global_is_inspected_with_an_info_note(cli: Any) -> None:
    result = cli("check", HOSTILE / "zip_unknown_global.pt", "--format", "json")
    assert result.exit_code == 0
    (checkpoint,) = json.loads(result.stdout)["checkpoints"]
    assert checkpoint["error"] is None and checkpoint["layers"]
    assert [(f["rule"], f["severity"]) for f in checkpoint["findings"]] == [("BN012", "info")]
    assert "mypackage.config.TrainConfig" in checkpoint["findings"][0]["message"]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_marshal_code_object_payload(
    make_hostile: ModuleType,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    legacy: bool,
) -> None:
    """marshal bytes depend on the Python version: built here, not in the corpus."""
    mh = make_hostile
    payload = mh.marshal_payload("MARKER-marshal")
    if legacy:
        body = mh.dct(
            (mh.text("state_dict"), mh.tiny_state_dict(legacy=True)), (mh.text("hook"), payload)
        )
        data = mh.legacy_file(body)
    else:
        base = mh.tiny_base()
        body = mh.dct((mh.text("state_dict"), base.body), (mh.text("hook"), payload))
        data = mh.torch_zip(base, mh.pickle_of(body))
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "marshal.pt").write_bytes(data)
    entry = {"file": "marshal.pt", "marker": "MARKER-marshal", "control": "torch.load"}
    assert _controls(folder, [entry], tmp_path / "control") == {"marshal.pt": True}
    monkeypatch.chdir(tmp_path)
    result = cli("check", folder / "marshal.pt", "--format", "json")
    assert "MARKER-marshal" not in files_in(tmp_path)
    _check_outcome(result, {**entry, "expect": "report", "names": ["marshal.loads"]})


@pytest.fixture(scope="module")
def healthy_base(make_hostile: ModuleType) -> Any:
    return make_hostile.Base.from_torch_zip(SAMPLES / "healthy.pt")


def _recalibrate(cli: Any, path: Path, output: Path) -> Any:
    return cli(
        "recalibrate", path, "--arch", f"{SAMPLES / 'digits_model.py'}:build_model",
        "--data", SAMPLES / "digits", "--output", output, "--max-samples", "16", "--no-verify",
    )  # fmt: skip


RECALIBRATED = [
    (route, variant) for route in RECALIBRATED_ROUTES for variant in ("beside_tensors", "alone")
]


@pytest.mark.parametrize(
    ("route", "variant"), RECALIBRATED, ids=[f"{r}-{v}" for r, v in RECALIBRATED]
)
def test_recalibrate_never_runs_the_payload(
    make_hostile: ModuleType,
    healthy_base: Any,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    variant: str,
) -> None:
    pytest.importorskip("torch")
    name = f"zip_{_slug(route)}_{variant}"
    path = tmp_path / f"{name}.pt"
    path.write_bytes(make_hostile.build(name, "MARKER", healthy_base))
    before = snapshot(path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = _recalibrate(cli, path, tmp_path / "out.pt")
    assert files_in(work) == set(), "a payload ran"
    assert snapshot(path) == before
    assert "Traceback" not in result.stdout + result.stderr
    if variant == "alone":  # nothing to recalibrate: refused, naming what was refused
        assert result.exit_code == 2
        assert make_hostile.NAMED[route] in result.stderr
    else:
        assert result.exit_code in (0, 2), result.stderr


@pytest.mark.parametrize("route", ["os.system", "builtins.eval"])
def test_recalibrate_names_the_refused_globals(
    make_hostile: ModuleType, healthy_base: Any, cli: Any, tmp_path: Path, route: str
) -> None:
    name = f"zip_{_slug(route)}_beside_tensors"
    path = tmp_path / f"{name}.pt"
    path.write_bytes(make_hostile.build(name, str(tmp_path / "MARKER"), healthy_base))
    result = _recalibrate(cli, path, tmp_path / "out.pt")
    assert not (tmp_path / "MARKER").exists()
    assert make_hostile.NAMED[route] in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "code", "errors"),
    [("os", 2, 1), ("os\x1b[2J\x1b]0;pwned\x07", 0, 0)],
    ids=["refused-as-code", "named-in-a-note"],
)
def test_names_from_the_file_cannot_forge_output_lines(
    make_hostile: ModuleType, tmp_path: Path, module: str, code: int, errors: int
) -> None:
    """A global named with escape sequences and newlines is printed escaped, on one line:
    in the error of a file whose pickle calls `os` and holds no tensors, or in the note
    on one that holds none and calls a module no import can find."""
    mh = make_hostile
    name = "system\n::error file=x.py::forged\x1b[2J"
    payload = mh.text(module) + mh.text(name) + b"\x93" + mh.tup(mh.text("true")) + b"R"
    path = tmp_path / "forged.pt"
    path.write_bytes(mh.torch_zip(mh.tiny_base(), mh.pickle_of(mh.dct((mh.text("x"), payload)))))
    for args in (["check", path], ["check", path, "--format", "github"]):
        done = subprocess.run(
            [sys.executable, "-m", "bnstat", *map(str, args)], capture_output=True, text=True
        )
        assert done.returncode == code
        assert "\x1b" not in done.stdout + done.stderr
        assert "system\\n::error file=x.py::forged" in done.stdout + done.stderr
        lines = (done.stdout + done.stderr).splitlines()
        assert not any(line.startswith("::error file=x.py") for line in lines)
        assert sum(line.startswith("bnstat: error:") for line in lines) == errors


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "sarif", "junit", "github", "html"])
def test_layer_names_from_the_file_are_printed_escaped(cli: Any, tmp_path: Path, fmt: str) -> None:
    """A layer named with an escape sequence and a newline cannot forge terminal output
    or CI annotation lines, whatever the format."""
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    name = "evil\n::error file=x.py::forged\x1b[2J.bn"
    tensors = {f"{name}.running_mean": np.zeros(4, np.float32)}
    tensors[f"{name}.running_var"] = -np.ones(4, np.float32)
    save_file(tensors, tmp_path / "forged.safetensors")
    result = cli("check", tmp_path / "forged.safetensors", "--format", fmt)
    output = result.stdout + result.stderr
    assert result.exit_code == 1
    assert "\x1b" not in output
    assert not any(line.startswith("::error file=x.py") for line in output.splitlines())
