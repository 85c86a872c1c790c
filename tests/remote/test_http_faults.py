"""A server on a bad day: every fault is one line on stderr and exit code 2, in every
format, and no secret of the URL is ever printed."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from http_server import Server

Cli = Callable[..., object]
SECRET = "s3cr3t"


def _error_line(result: object) -> str:
    assert result.exit_code == 2  # type: ignore[attr-defined]
    lines = [line for line in result.stderr.splitlines() if line.startswith("bnstat: error")]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    return lines[0]


@pytest.mark.parametrize("fmt", ["table", "json", "sarif"])
def test_a_missing_file_is_one_line(http: Server, cli: Cli, fmt: str) -> None:
    line = _error_line(cli("check", http.url("nothing.pt"), "--format", fmt))
    assert line == f"bnstat: error: {http.url('nothing.pt')}: not found (HTTP 404)"


def test_a_refusal_names_the_missing_credentials(http: Server, cli: Cli) -> None:
    http.behaviour.forbidden = True
    line = _error_line(cli("check", http.url("healthy.pt")))
    assert "access denied (HTTP 403)" in line
    assert "the URL carries no credentials (user:password@ or a signed query string)" in line


def test_credentials_and_signatures_are_never_shown(http: Server, cli: Cli, tmp_path: Path) -> None:
    url = http.url("bn004_dead_channel.pt", auth=f"user:{SECRET}@", query=f"?sig={SECRET}")
    outputs = [cli("check", url, "--format", fmt) for fmt in ("table", "json", "sarif", "junit")]
    baseline = tmp_path / "baseline.json"
    outputs.append(cli("check", url, "--write-baseline", baseline))
    for result in outputs:
        assert result.exit_code == 0  # type: ignore[attr-defined]
        assert SECRET not in result.stdout + result.stderr  # type: ignore[attr-defined]
    assert SECRET not in baseline.read_text()
    entry = json.loads(outputs[1].stdout)["checkpoints"][0]  # type: ignore[attr-defined]
    assert entry["path"] == http.url("bn004_dead_channel.pt")
    signed_anew = http.url("bn004_dead_channel.pt", auth=f"user:{SECRET}@", query="?sig=other")
    known = cli("check", signed_anew, "--baseline", baseline, "--format", "json")
    assert json.loads(known.stdout)["checkpoints"][0]["findings"] == []  # type: ignore[attr-defined]
    assert "1 known finding not reported" in known.stderr  # type: ignore[attr-defined]


def test_refused_credentials_in_the_url_are_named_not_shown(http: Server, cli: Cli) -> None:
    http.files["locked.pt"] = http.files["healthy.pt"]
    http.behaviour.failures = [401]
    line = _error_line(cli("check", http.url("locked.pt", auth=f"user:{SECRET}@")))
    assert line.endswith("access denied (HTTP 401): the credentials in the URL were refused")
    assert SECRET not in line


def test_a_server_ignoring_ranges_is_read_whole_within_the_limit(http: Server, cli: Cli) -> None:
    http.behaviour.ignore_ranges = True
    result = cli("check", http.url("healthy.pt"), "--format", "json")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    entry = json.loads(result.stdout)["checkpoints"][0]  # type: ignore[attr-defined]
    assert entry["fetched_bytes"] == entry["file_size"] == len(http.files["healthy.pt"])


def test_a_server_ignoring_ranges_is_refused_beyond_max_download(http: Server, cli: Cli) -> None:
    http.files["big.pt"] = http.files["healthy.pt"] + bytes(2 * 2**20)
    http.behaviour.ignore_ranges = True
    line = _error_line(cli("check", http.url("big.pt"), "--max-download", "1"))
    assert "the server ignores range requests" in line
    assert "--max-download 1 MiB" in line


def test_a_truncated_body_is_one_line(http: Server, cli: Cli) -> None:
    http.behaviour.truncate = True
    assert "truncated" in _error_line(cli("check", http.url("healthy.pt")))


def test_a_longer_answer_than_asked_is_refused(http: Server, cli: Cli) -> None:
    http.behaviour.longer = True
    assert "answered" in _error_line(cli("check", http.url("healthy.pt")))


def test_a_server_that_stalls_times_out(http: Server, cli: Cli) -> None:
    http.behaviour.stall = 3.0
    line = _error_line(cli("check", http.url("healthy.pt"), "--timeout", "0.3"))
    assert line.endswith("no answer within 0.3 s (--timeout)")


def test_a_redirect_loop_ends(http: Server, cli: Cli) -> None:
    http.behaviour.redirect_loop = True
    assert "too many redirects" in _error_line(cli("check", http.url("healthy.pt")))


@pytest.mark.parametrize("validators", [(True, True), (False, True)])
def test_a_file_that_changes_while_read_is_refused(
    http: Server, cli: Cli, validators: tuple[bool, bool]
) -> None:
    http.behaviour.etag, http.behaviour.last_modified = validators
    http.files["moving.pt"] = http.files["healthy.pt"] + bytes(300_000)  # read in 2+ requests
    http.behaviour.change_after = 1
    assert "changed on the server" in _error_line(cli("check", http.url("moving.pt")))


def test_a_file_without_validators_is_read_as_it_is(http: Server, cli: Cli) -> None:
    http.behaviour.etag = http.behaviour.last_modified = False
    assert cli("check", http.url("healthy.pt")).exit_code == 0  # type: ignore[attr-defined]


def test_busy_answers_are_retried(http: Server, cli: Cli) -> None:
    http.behaviour.failures = [503, 429]
    http.behaviour.retry_after = "0"
    result = cli("check", http.url("healthy.pt"), "--format", "json")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    entry = json.loads(result.stdout)["checkpoints"][0]  # type: ignore[attr-defined]
    assert entry["requests"] == http.stats.requests == 3  # two refused, then the whole file


def test_retries_are_bounded(http: Server, cli: Cli) -> None:
    http.behaviour.failures = [503] * 10
    http.behaviour.retry_after = "0"
    line = _error_line(cli("check", http.url("healthy.pt")))
    assert "kept failing (HTTP 503)" in line
    assert http.stats.requests == 4


def test_another_scheme_is_a_usage_error(cli: Cli) -> None:
    line = _error_line(cli("check", "ftp://example.invalid/model.pt"))
    assert "bnstat reads paths and https://, http://, s3://, gs://, az://, hf:// URLs" in line


def test_recalibrate_writes_a_remote_checkpoint_locally(
    http: Server, cli: Cli, tmp_path: Path
) -> None:
    from zoo import SAMPLES

    common = ["--arch", SAMPLES / "digits_model.py:build_model", "--data", SAMPLES / "digits",
              "--max-samples", "64", "--device", "cpu"]  # fmt: skip
    remote = cli("recalibrate", http.url("stats_reset.safetensors"), *common, "--format", "json",
                 "--output", tmp_path / "remote.safetensors")  # fmt: skip
    local = cli("recalibrate", SAMPLES / "stats_reset.safetensors", *common,
                "--output", tmp_path / "local.safetensors")  # fmt: skip
    assert remote.exit_code == local.exit_code == 0  # type: ignore[attr-defined]
    assert (tmp_path / "remote.safetensors").read_bytes() == (
        tmp_path / "local.safetensors"
    ).read_bytes()
    report = json.loads(remote.stdout)  # type: ignore[attr-defined]
    assert report["checkpoint"] == http.url("stats_reset.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.safetensors", "remote.safetensors"]
    in_place = cli("recalibrate", http.url("stats_reset.safetensors"), *common, "--in-place")
    assert "is a URL; give --output FILE" in _error_line(in_place)


def test_without_the_extra_a_url_names_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    stub = tmp_path / "fsspec"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bnstat", "check", "s3://bucket/model.pt"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "bnstat: error: reading s3:// URLs needs fsspec, which is not installed: "
        "pip install 'bnstat[remote]'"
    ]
