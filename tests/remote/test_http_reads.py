"""Checkpoints served over HTTP on 127.0.0.1 read like the same files on disk, for a few
requests and a small share of their bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from http_server import SAMPLE_FILES, Server
from safetensors.torch import save_file
from zoo import SAMPLES

LAYERS = 12
FILLER = 4 * 2**20  # bytes of other weights between two BatchNorm layers


def _without_cost(report: dict, base: str) -> dict:
    for entry in report["checkpoints"]:
        entry["path"] = entry["path"].replace(base, "")
        for key in ("file_size", "fetched_bytes", "requests"):
            entry.pop(key, None)
    return report


def test_every_sample_reads_as_its_file_does(http: Server, cli: Callable[..., object]) -> None:
    names = [path.name for path in SAMPLE_FILES]
    remote = cli("inspect", *(http.url(n) for n in names), "--format", "json", "--jobs", "1")
    local = cli("inspect", *(SAMPLES / n for n in names), "--format", "json", "--jobs", "1")
    assert remote.exit_code == local.exit_code  # type: ignore[attr-defined]
    base = http.url("")
    got = _without_cost(json.loads(remote.stdout), base)  # type: ignore[attr-defined]
    expected = _without_cost(json.loads(local.stdout), f"{SAMPLES}/")  # type: ignore[attr-defined]
    assert got == expected
    assert len(got["checkpoints"]) >= len(names)


@pytest.mark.parametrize("fmt", ["sarif", "junit", "github", "markdown"])
def test_every_format_says_the_same_of_a_url(
    http: Server, cli: Callable[..., object], fmt: str
) -> None:
    names = ["bn004_dead_channel.pt", "bn005_collapsed_variance.safetensors", "traced.pt"]
    remote = cli("check", *(http.url(n) for n in names), "--format", fmt)
    local = cli("check", *(SAMPLES / n for n in names), "--format", fmt)
    assert remote.exit_code == local.exit_code == 0  # type: ignore[attr-defined]
    base = http.url("")
    escaped = base.replace(":", "%3A")  # a GitHub annotation's file property
    text = remote.stdout.replace(base, "").replace(escaped, "")  # type: ignore[attr-defined]
    shown = local.stdout.replace(f"{SAMPLES}/", "")  # type: ignore[attr-defined]
    if fmt == "sarif":  # a URL is its own URI, a local file one relative to where bnstat ran
        text, shown = _located_by_name(text), _located_by_name(shown)
    assert text == shown


def _located_by_name(sarif: str) -> str:
    """SARIF with every artifact location reduced to its file name, and no fingerprints
    (they hash the location)."""

    def reduced(node: object) -> object:
        if isinstance(node, dict):
            if "artifactLocation" in node:
                uri = node["artifactLocation"]["uri"]
                node = {**node, "artifactLocation": {"uri": uri.rsplit("/", 1)[-1]}}
            dropped = ("originalUriBaseIds", "partialFingerprints")
            return {k: reduced(v) for k, v in node.items() if k not in dropped}
        return [reduced(item) for item in node] if isinstance(node, list) else node

    return json.dumps(reduced(json.loads(sarif)), indent=1)


def _spread_model() -> dict[str, torch.Tensor]:
    """BatchNorm layers of 64 channels with FILLER bytes of other weights between them."""
    torch.manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    for i in range(LAYERS):
        tensors[f"conv{i}.weight"] = torch.randn(FILLER // 4)
        tensors[f"bn{i}.weight"] = torch.rand(64) + 0.5
        tensors[f"bn{i}.bias"] = torch.randn(64)
        tensors[f"bn{i}.running_mean"] = torch.randn(64)
        tensors[f"bn{i}.running_var"] = torch.rand(64) + 0.1
        tensors[f"bn{i}.num_batches_tracked"] = torch.tensor(1000)
    return tensors


@pytest.fixture(scope="module")
def spread_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("spread")
    tensors = _spread_model()
    torch.save(tensors, folder / "spread.pt")
    torch.save(tensors, folder / "spread.legacy.pt", _use_new_zipfile_serialization=False)
    save_file(tensors, folder / "spread.safetensors")
    names = ("spread.pt", "spread.legacy.pt", "spread.safetensors")
    return {name: (folder / name).read_bytes() for name in names}


@pytest.mark.parametrize("name", ["spread.pt", "spread.legacy.pt", "spread.safetensors"])
@pytest.mark.parametrize("latency", [0.0, 0.05])
def test_a_big_file_costs_a_request_per_layer_and_a_sliver_of_its_bytes(
    http: Server, cli: Callable[..., object], spread_files: dict[str, bytes], name: str,
    latency: float,
) -> None:  # fmt: skip
    http.files.update(spread_files)
    http.behaviour.latency = latency
    result = cli("inspect", http.url(name), "--format", "json")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    entry = json.loads(result.stdout)["checkpoints"][0]  # type: ignore[attr-defined]
    assert len(entry["layers"]) == LAYERS
    assert entry["requests"] == http.stats.requests <= LAYERS + 8
    assert entry["fetched_bytes"] == http.stats.sent <= 300_000
    assert entry["file_size"] == len(spread_files[name]) > LAYERS * FILLER


def test_the_table_says_what_a_url_cost(http: Server, cli: Callable[..., object]) -> None:
    result = cli("inspect", http.url("healthy.pt"))
    size = len(http.files["healthy.pt"])
    assert f"fetched {size / 1024:.1f} KiB of {size / 1024:.1f} KiB (100%) in 1 request" in (
        result.stdout  # type: ignore[attr-defined]
    )


def test_diff_compares_a_url_with_a_file(http: Server, cli: Callable[..., object]) -> None:
    result = cli("diff", http.url("healthy.pt"), SAMPLES / "stats_reset.safetensors")
    local = cli("diff", SAMPLES / "healthy.pt", SAMPLES / "stats_reset.safetensors")
    assert result.exit_code == local.exit_code  # type: ignore[attr-defined]
    assert result.stdout.replace(http.url(""), str(SAMPLES) + "/") == local.stdout  # type: ignore[attr-defined]


def test_a_sharded_index_reads_its_shards_beside_it(
    http: Server, cli: Callable[..., object], state_dict: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    keys = sorted(state_dict)
    halves = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2 :]}
    weight_map = {}
    for shard, names in halves.items():
        save_file({k: state_dict[k].contiguous() for k in names}, tmp_path / shard)
        http.files[f"sharded/{shard}"] = (tmp_path / shard).read_bytes()
        weight_map |= dict.fromkeys(names, shard)
    index = json.dumps({"weight_map": weight_map}).encode()
    http.files["sharded/model.safetensors.index.json"] = index
    (tmp_path / "model.safetensors.index.json").write_bytes(index)
    remote = cli("inspect", http.url("sharded/model.safetensors.index.json"), "--format", "json")
    local = cli("inspect", tmp_path / "model.safetensors.index.json", "--format", "json")
    got = _without_cost(json.loads(remote.stdout), http.url("sharded/"))  # type: ignore[attr-defined]
    assert got == _without_cost(json.loads(local.stdout), f"{tmp_path}/")  # type: ignore[attr-defined]
    assert json.loads(remote.stdout)["checkpoints"][0]["requests"] == http.stats.requests  # type: ignore[attr-defined]


def test_check_on_data_runs_a_remote_model_from_a_local_copy(
    http: Server, cli: Callable[..., object]
) -> None:
    options = ["--arch", SAMPLES / "digits_model.py:build_model", "--data", SAMPLES / "digits",
               "--max-samples", "64", "--device", "cpu", "--format", "json",
               "--timeout", "5"]  # fmt: skip
    remote = cli("check", http.url("stats_inverted.safetensors"), *options)
    local = cli("check", SAMPLES / "stats_inverted.safetensors", *options)
    assert remote.exit_code == local.exit_code  # type: ignore[attr-defined]
    got = json.loads(remote.stdout)  # type: ignore[attr-defined]
    entry = got["checkpoints"][0]
    assert entry["fetched_bytes"] == entry["file_size"]  # fetched whole, to run the model
    assert http.url("stats_inverted.safetensors") in entry["findings"][0]["fix"]
    text = remote.stdout.replace(http.url(""), "")  # type: ignore[attr-defined]
    shown = json.loads(text.replace(f"{SAMPLES}/", ""))
    expected = json.loads(local.stdout.replace(f"{SAMPLES}/", ""))  # type: ignore[attr-defined]
    assert _without_cost(shown, "") == _without_cost(expected, "")
    # The model ran in forked data-loader workers. This process's connections must still
    # answer: a worker that closed the sockets it inherited takes them out of the epoll
    # set it shares with this process, whose next request would then wait forever.
    after = cli("inspect", http.url("healthy.pt"), "--timeout", "5")
    assert after.exit_code == 0, after.stderr  # type: ignore[attr-defined]
