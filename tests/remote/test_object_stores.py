"""s3:// against a local S3-compatible server (moto's server mode, started here on
127.0.0.1): folders, globs, range reads and the faults of an object store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from zoo import SAMPLES

Cli = Callable[..., object]
BUCKET = "models"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A bucket holding checkpoints, a shard index with its shards, and other files."""
    moto_server = pytest.importorskip("moto.server")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}  # fmt: skip
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    for key, data in _objects(tmp_path_factory.mktemp("s3")).items():
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
    yield env
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.update({key: value})
    server.stop()


def _objects(folder: Path) -> dict[str, bytes]:
    torch.manual_seed(0)
    spread = {}
    for i in range(4):
        spread[f"conv{i}.weight"] = torch.randn(2**18)  # 1 MiB between two layers
        spread |= {f"bn{i}.{leaf}": torch.rand(32) + 0.5 for leaf in
                   ("weight", "bias", "running_mean", "running_var")}  # fmt: skip
    save_file(spread, folder / "spread.safetensors")
    healthy = (SAMPLES / "healthy.safetensors").read_bytes()
    return {
        "zoo/healthy.pt": (SAMPLES / "healthy.pt").read_bytes(),
        "zoo/deep/dead.pt": (SAMPLES / "bn004_dead_channel.pt").read_bytes(),
        "zoo/big/spread.safetensors": (folder / "spread.safetensors").read_bytes(),
        "zoo/sharded/model.safetensors.index.json": json.dumps(
            {"weight_map": {"stem.bn.weight": "part.safetensors"}}
        ).encode(),
        "zoo/sharded/part.safetensors": healthy,
        "zoo/README.md": b"# models\n",
        "zoo/.cache/old.pt": (SAMPLES / "bn001_non_finite.pt").read_bytes(),
        "docs/notes.txt": b"nothing here\n",
    }


def _checkpoints(result: object) -> dict[str, dict]:
    assert result.exit_code in (0, 1), result.stderr  # type: ignore[attr-defined]
    report = json.loads(result.stdout)  # type: ignore[attr-defined]
    return {entry["path"]: entry for entry in report["checkpoints"]}


def test_a_folder_is_searched_like_a_local_one(s3: dict[str, str], cli: Cli) -> None:
    found = _checkpoints(cli("inspect", f"s3://{BUCKET}/zoo/", "--format", "json"))
    assert sorted(found) == [
        f"s3://{BUCKET}/zoo/big/spread.safetensors",
        f"s3://{BUCKET}/zoo/deep/dead.pt",
        f"s3://{BUCKET}/zoo/healthy.pt",
        f"s3://{BUCKET}/zoo/sharded/model.safetensors.index.json",
    ]
    local = _checkpoints(cli("inspect", SAMPLES / "healthy.pt", "--format", "json"))
    assert found[f"s3://{BUCKET}/zoo/healthy.pt"]["layers"] == next(iter(local.values()))["layers"]
    assert [f["rule"] for f in found[f"s3://{BUCKET}/zoo/deep/dead.pt"]["findings"]] == ["BN004"]


def test_a_glob_takes_what_it_matches(s3: dict[str, str], cli: Cli) -> None:
    found = _checkpoints(cli("check", f"s3://{BUCKET}/zoo/**/*.pt", "--format", "json"))
    assert sorted(found) == [f"s3://{BUCKET}/zoo/deep/dead.pt", f"s3://{BUCKET}/zoo/healthy.pt"]


def test_an_object_is_read_by_ranges(s3: dict[str, str], cli: Cli) -> None:
    url = f"s3://{BUCKET}/zoo/big/spread.safetensors"
    entry = _checkpoints(cli("inspect", url, "--format", "json"))[url]
    assert len(entry["layers"]) == 4
    assert entry["requests"] <= 4 + 8
    assert entry["fetched_bytes"] < entry["file_size"] / 10


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (f"s3://{BUCKET}/docs/", f"no checkpoints found at s3://{BUCKET}/docs/ (1 other file)"),
        (f"s3://{BUCKET}/zoo/*.onnx", f"no checkpoints found at s3://{BUCKET}/zoo/*.onnx"),
        (f"s3://{BUCKET}/zoo/missing.pt", f"s3://{BUCKET}/zoo/missing.pt: not found"),
    ],
)
def test_nothing_there_is_one_line(
    s3: dict[str, str], cli: Cli, argument: str, message: str
) -> None:
    result = cli("check", argument, "--format", "json")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    stderr = result.stderr.splitlines()  # type: ignore[attr-defined]
    errors = [line for line in stderr if line.startswith("bnstat: error")]
    assert len(errors) == 1 and message in errors[0]


def test_without_credentials_the_sources_are_named(s3: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"], "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none")}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "bnstat", "check", f"s3://{BUCKET}/zoo/healthy.pt"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"bnstat: error: s3://{BUCKET}/zoo/healthy.pt: access denied: bnstat uses AWS "
        "credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE or "
        "~/.aws/credentials (none of them is set)"
    ]
